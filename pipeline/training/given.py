"""Checkpoints trained elsewhere (``train.checkpoint``, ``train_normal.checkpoint``,
``pifu.checkpoints``).

A checkpoint given by path replaces the training rule, so it is checked when the workflow is
planned, before any job runs: it must be a checkpoint of this format, hold the right kind of
network, and have been trained with the config's model settings. A mismatch names the file
and every differing key. On a cluster every job parses the Snakefile again, so the check reads
the checkpoint's header, not its weights: from the sidecar ``<checkpoint>.meta.json`` when it
matches the file, else from the checkpoint memory-mapped, with a warning
(pipeline/training/checkpoint.py, :func:`checkpoint_header`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from models.pifu.config import PifuConfig
from models.pixel2isdf.config import NormalNetConfig, Pixel2ISDFConfig, from_mapping
from pipeline.errors import PipelineError
from pipeline.training.checkpoint import checkpoint_header, model_config

PIFU_KINDS = ("pifu", "temporal_pifu")


def differing_keys(cls: type, found: Mapping[str, Any], expected: Mapping[str, Any],
                   path: Path, section: str) -> list[str]:
    """``key: checkpoint X, config Y`` for every setting of the dataclass ``cls`` on which the
    checkpoint's model config and the config's ``section`` differ (missing keys take the
    dataclass defaults on both sides)."""
    try:
        want = from_mapping(cls, expected).__dict__
        have = from_mapping(cls, found).__dict__
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"checkpoint {path}: cannot compare its model config with "
                            f"{section} ({exc})") from exc
    return [f"{k}: checkpoint {have.get(k)!r}, config {want[k]!r}" for k in sorted(want)
            if want[k] != have.get(k)]


def check_given(path: str | Path, kind: str, cls: type, expected: Mapping[str, Any],
                section: str, setting: str) -> None:
    """PipelineError unless ``path`` (the config's ``setting``) holds a ``kind`` network
    trained with ``expected`` (the config's ``section``) model settings."""
    path = Path(path)
    config = model_config(checkpoint_header(path, kind=kind), path)
    found = config.get("model", {}) if kind in ("pixel2isdf", *PIFU_KINDS) else config
    differ = differing_keys(cls, found, expected, path, section)
    if differ:
        raise PipelineError(f"checkpoint {path} was trained with other {section} settings "
                            f"({'; '.join(differ)}); set {section} to match it, or leave "
                            f"{setting} empty to train here")


def check_given_checkpoints(config: Mapping[str, Any]) -> None:
    """Check ``train.checkpoint``, ``train_normal.checkpoint`` and ``pifu.checkpoints``
    when set (a validated config)."""
    if config["train"].get("checkpoint"):
        check_given(config["train"]["checkpoint"], "pixel2isdf", Pixel2ISDFConfig,
                    config["train"]["model"], "train.model", "train.checkpoint")
    if config["train_normal"].get("checkpoint"):
        check_given(config["train_normal"]["checkpoint"], "normal_net", NormalNetConfig,
                    config["train_normal"]["model"], "train_normal.model",
                    "train_normal.checkpoint")
    for kind, path in config["pifu"]["checkpoints"].items():
        if path:
            model = {**config["pifu"]["train"]["model"], "temporal": kind == "temporal_pifu"}
            check_given(path, kind, PifuConfig, model, "pifu.train.model",
                        f"pifu.checkpoints.{kind}")

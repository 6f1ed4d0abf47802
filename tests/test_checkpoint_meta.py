"""Checkpoint sidecars (pipeline/training/checkpoint.py): a given checkpoint is checked at every
Snakefile parse from ``<checkpoint>.meta.json`` without loading its weights; a missing, stale
or broken sidecar falls back to reading the checkpoint itself, with a warning."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from models.cache_io import SCHEMA_VERSION
from pipeline.cli import main
from pipeline.config import validate_config
from pipeline.errors import PipelineError
from pipeline.training.checkpoint import (
    HEADER_KEYS,
    SIDECAR,
    fingerprint,
    save_checkpoint,
    sidecar_path,
    write_sidecar,
)
from pipeline.training.given import check_given_checkpoints
from tests.test_train import TINY_MODEL, TINY_NORMAL

NORMAL = TINY_NORMAL["model"]
# The model config a trainer saves: every setting, the schema's defaults filled in.
_FULL = validate_config({"train": {"model": TINY_MODEL}, "train_normal": {"model": NORMAL}})


def payload(kind: str, model: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """What the trainer saves, with a tiny state dict in place of the network's."""
    gen = torch.Generator().manual_seed(seed)
    config = {"model": {**_FULL["train"]["model"], **model}} if kind == "pixel2isdf" else \
        {**_FULL["train_normal"]["model"], **model}
    return {"kind": kind, "step": 1, "model": {"w": torch.randn(64, 64, generator=gen)},
            "model_config": json.dumps(config), "config_hash": "x",
            "cache_schema": SCHEMA_VERSION, "history": "[]"}


def given(normal: Path | None = None, pixel2isdf: Path | None = None,
          normal_model: dict | None = None) -> dict:
    """A validated config giving these checkpoints."""
    return validate_config({
        "train": {"model": TINY_MODEL, "checkpoint": str(pixel2isdf) if pixel2isdf else None},
        "train_normal": {"model": normal_model or NORMAL,
                         "checkpoint": str(normal) if normal else None}})


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``torch.load`` call's keyword arguments (the loads still happen)."""
    calls: list[dict[str, Any]] = []
    real = torch.load

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return calls


@pytest.fixture
def no_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.load`` fails the test if called."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", refuse)


def test_save_writes_the_header_and_fingerprint_beside_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, payload("normal_net", NORMAL))
    meta = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path).name == "checkpoint.pt.meta.json"
    assert set(meta) == {"sidecar", *HEADER_KEYS, "checkpoint"} and meta["sidecar"] == SIDECAR
    assert meta["kind"] == "normal_net" and json.loads(meta["model_config"])["ngf"] == 4
    assert meta["checkpoint"] == fingerprint(path)
    assert meta["checkpoint"]["bytes"] == path.stat().st_size
    # A rerun writing the checkpoint again rewrites the sidecar.
    save_checkpoint(path, payload("normal_net", {**NORMAL, "ngf": 8}, seed=1))
    meta = json.loads(sidecar_path(path).read_text())
    assert json.loads(meta["model_config"])["ngf"] == 8
    assert meta["checkpoint"] == fingerprint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt",
                                                          "checkpoint.pt.meta.json"]


def test_the_check_passes_and_refuses_from_the_sidecar_without_torch_load(
        tmp_path: Path, no_load: None, caplog: pytest.LogCaptureFixture) -> None:
    normal, p2i = tmp_path / "n.pt", tmp_path / "p.pt"
    save_checkpoint(normal, payload("normal_net", NORMAL))
    save_checkpoint(p2i, payload("pixel2isdf", TINY_MODEL))
    with caplog.at_level(logging.WARNING):
        check_given_checkpoints(given(normal, p2i))
    assert not caplog.records
    with pytest.raises(PipelineError, match=r"n\.pt was trained with other train_normal\.model "
                                            r"settings \(ngf: checkpoint 4, config 8\)"):
        check_given_checkpoints(given(normal, normal_model={**NORMAL, "ngf": 8}))
    with pytest.raises(PipelineError, match=r"p\.pt was trained with other train\.model settings "
                                            r"\(latent_dim: checkpoint 4, config 8\)"):
        check_given_checkpoints(validate_config({"train": {
            "model": {**TINY_MODEL, "latent_dim": 8}, "checkpoint": str(p2i)}}))
    with pytest.raises(PipelineError, match=r"n\.pt holds a 'normal_net' model, expected "
                                            r"'pixel2isdf'"):
        check_given_checkpoints(given(pixel2isdf=normal))
    normal.unlink()  # a sidecar without its checkpoint is no checkpoint
    with pytest.raises(PipelineError, match=r"checkpoint .*n\.pt does not exist"):
        check_given_checkpoints(given(normal))


def test_a_stale_sidecar_is_detected_and_the_checkpoint_read(
        tmp_path: Path, loads: list, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "n.pt"
    save_checkpoint(path, payload("normal_net", NORMAL))
    old = sidecar_path(path).read_bytes()
    # The checkpoint replaced by another of the same size (other weights and settings), its
    # sidecar left over from the first.
    save_checkpoint(path, payload("normal_net", {**NORMAL, "ngf": 5}, seed=1))
    sidecar_path(path).write_bytes(old)
    assert json.loads(old)["checkpoint"]["bytes"] == path.stat().st_size
    loads.clear()
    with caplog.at_level(logging.WARNING):
        check_given_checkpoints(given(path, normal_model={**NORMAL, "ngf": 5}))
    assert len(loads) == 1 and loads[0]["mmap"] is True  # read once, weights mapped not read
    assert "n.pt.meta.json is stale" in caplog.text
    assert f"python -m pipeline checkpoint-meta --checkpoints {path}" in caplog.text
    with pytest.raises(PipelineError, match=r"\(ngf: checkpoint 5, config 4\)"):
        check_given_checkpoints(given(path))


def test_a_missing_sidecar_falls_back_to_the_checkpoint(
        tmp_path: Path, loads: list, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "copied.pt"
    save_checkpoint(tmp_path / "orig.pt", payload("normal_net", NORMAL))
    path.write_bytes((tmp_path / "orig.pt").read_bytes())  # copied without its sidecar
    loads.clear()
    with caplog.at_level(logging.WARNING):
        check_given_checkpoints(given(path))
    assert len(loads) == 1
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert f"checkpoint {path}: it has no sidecar copied.pt.meta.json" in caplog.text
    with pytest.raises(PipelineError, match=r"copied\.pt was trained with other"):
        check_given_checkpoints(given(path, normal_model={**NORMAL, "ngf": 8}))
    assert not sidecar_path(path).exists()  # the check writes nothing


@pytest.mark.parametrize("broken, why", [
    ("{not json", "is unreadable"),
    ("[1, 2]", "is 'list', not"),
    (json.dumps({"sidecar": "other/9"}), "is 'other/9', not"),
    (None, "lacks model_config"),
])
def test_a_broken_sidecar_falls_back_to_the_checkpoint(
        tmp_path: Path, broken: str | None, why: str, loads: list,
        caplog: pytest.LogCaptureFixture) -> None:
    """A sidecar is only a shortcut: one that cannot be used is a warning, never an error."""
    path = tmp_path / "n.pt"
    save_checkpoint(path, payload("normal_net", NORMAL))
    side = sidecar_path(path)
    if broken is None:
        meta = json.loads(side.read_text())
        del meta["model_config"]
        broken = json.dumps(meta)
    side.write_text(broken)
    loads.clear()
    with caplog.at_level(logging.WARNING):
        check_given_checkpoints(given(path))
    assert len(loads) == 1 and f"n.pt.meta.json {why}" in caplog.text


def test_fingerprint_sees_weights_changed_in_the_middle_of_a_large_file(
        tmp_path: Path) -> None:
    """Only the first and last MiB are hashed; the zip's central directory at the end holds
    every record's CRC-32, so other weights anywhere change it."""
    tensors = {f"t{i}": torch.zeros(256, 1024) for i in range(4)}  # 4 MiB
    save_checkpoint(tmp_path / "a.pt", {"model": tensors})
    tensors["t2"][100, 100] = 1.0
    save_checkpoint(tmp_path / "b.pt", {"model": tensors})
    a, b = fingerprint(tmp_path / "a.pt"), fingerprint(tmp_path / "b.pt")
    assert a["bytes"] == b["bytes"] > 4 << 20 and a != b


def test_write_sidecar_and_the_cli_for_an_existing_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "old.pt"
    torch.save({"format": "pixel2isdf.checkpoint/1", **payload("normal_net", NORMAL)}, old)
    assert not sidecar_path(old).exists()  # written before sidecars existed
    assert main(["checkpoint-meta", "--checkpoints", str(old)]) == 0
    assert json.loads(sidecar_path(old).read_text())["checkpoint"] == fingerprint(old)
    sidecar_path(old).unlink()
    assert write_sidecar(old) == sidecar_path(old)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    check_given_checkpoints(given(old))
    monkeypatch.undo()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["checkpoint-meta", "--checkpoints", str(junk)]) == 1
    assert not sidecar_path(junk).exists()
    with pytest.raises(PipelineError, match=r"absent\.pt does not exist"):
        write_sidecar(tmp_path / "absent.pt")

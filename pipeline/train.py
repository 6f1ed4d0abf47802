"""Training stages: ``train-normal`` (the normal network), ``train`` (Pixel2ISDF) and
``train-pifu`` (PIFu or Temporal PIFu).

Both read the per-subject caches (``cache/<subject>.h5``): the training subjects' for the
draws, the validation subjects' (``data.val_subjects``) for the validation metrics that choose
the checkpoint kept (``run.keep: best``). The test subjects are never read: every stage refuses
a cache of a subject named in ``held_out`` (the rules pass ``data.test_subjects``). The loop,
checkpoints, resume, DDP and logging are :mod:`pipeline.training.trainer`'s; the methods are in
:mod:`pipeline.training.tasks`. Outputs go to one folder per model
(``train/<model>/checkpoint.pt``, ``train.json``, ``tensorboard/``, ``last.pt`` while
running). docs/training.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py

from models.cache_io import open_cache, read_index, require_targets
from pipeline.errors import PipelineError
from pipeline.io import file_sha256
from pipeline.training.tasks import NormalTask, PifuTask, Pixel2ISDFTask
from pipeline.training.trainer import RunParams, train

log = logging.getLogger(__name__)


def _cache_identity(path: Path) -> dict[str, str]:
    """What a cache was built from (its parameters' hash and its sources' checksums)."""
    handle: h5py.File = open_cache(path)
    with handle:
        return {"file": path.name, "config_hash": str(handle.attrs.get("config_hash", "")),
                "sources": str(handle.attrs.get("source_checksums", ""))}


def run_hash(params: Mapping[str, Any], caches: Sequence[Path],
             extra: Sequence[Path] = ()) -> str:
    """Identity of a training run: its parameters, its caches' identities and the sha256 of
    any other input file (the normal checkpoint). A resume needs the same hash; the process
    count is left out, so a run resumes on another number of processes (with a warning)."""
    params = {**params, "run": {k: v for k, v in params.get("run", {}).items()
                                if k != "processes"}}  # resuming may change the world size
    record = {"params": params, "caches": [_cache_identity(p) for p in caches],
              "files": {p.name: file_sha256(p) for p in extra}}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


LEFT_OUT = "left out"
"""How a cache's ``targets`` attribute starts when its subject's scan failed registration
(``register.on_fail: skip``)."""


def drop_left_out(caches: Sequence[Path], stage: str) -> list[Path]:
    """The caches whose subject was not left out of training by the register stage
    (``register.on_fail: skip``); each one dropped is named in a warning, never silently."""
    kept = []
    for path in caches:
        with open_cache(path) as handle:
            targets = str(handle.attrs.get("targets", ""))
        if targets.startswith(LEFT_OUT):
            log.warning("%s: %s is not trained on: %s", stage, path, targets)
        else:
            kept.append(Path(path))
    return kept


def check_training_caches(train_caches: Sequence[Path], stage: str,
                          val_caches: Sequence[Path] = (), held_out: Sequence[str] = (),
                          keep: str = "last") -> None:
    """Before any work: at least one training subject, no held-out (test) subject among the
    caches trained or validated on, validation caches when the checkpoint is chosen by them,
    and targets in every cache."""
    if not train_caches:
        raise PipelineError(f"{stage}: no training subject (every subject in data.subjects is "
                            "also in data.val_subjects, data.test_subjects or "
                            "data.predict_subjects); leave at least one out, or give a "
                            "trained model by path")
    for role, caches in (("training", train_caches), ("validation", val_caches)):
        leaked = sorted({p.stem for p in caches} & set(held_out))
        if leaked:
            raise PipelineError(
                f"{stage}: test subject(s) {leaked} given as {role} caches; a test subject "
                "is never read by training nor by any choice (data.test_subjects); move them "
                "to data.val_subjects or out of data.test_subjects")
    overlap = sorted({p.stem for p in train_caches} & {p.stem for p in val_caches})
    if overlap:
        raise PipelineError(f"{stage}: subject(s) {overlap} are both trained on and validated "
                            "on; data.val_subjects must be disjoint from the training subjects")
    if keep == "best" and not val_caches:
        raise PipelineError(
            f"{stage}: {stage}.run.keep is best (the checkpoint is chosen on the validation "
            "subjects) but there is no validation subject; list one in data.val_subjects, or set "
            f"{stage}.run.keep: last")
    for path in [*train_caches, *val_caches]:
        with open_cache(path) as handle:
            require_targets(read_index(handle), stage)


def _meta(params: Mapping[str, Any], train_caches: Sequence[Path],
          val_caches: Sequence[Path], held_out: Sequence[str]) -> dict[str, Any]:
    return {"seed": int(params["seed"]),
            "train_subjects": [p.stem for p in train_caches],
            "val_subjects": [p.stem for p in val_caches],
            "held_out_subjects": sorted(held_out)}


def run_normal(*, train_caches: list[Path], val_caches: Sequence[Path] = (),
               held_out: Sequence[str] = (), output: Path, summary: Path,
               params: dict[str, Any]) -> dict[str, Any]:
    """Train the normal network on the truth normal maps of the training subjects."""
    val_caches = list(val_caches)
    run = RunParams(**params["run"])
    train_caches = drop_left_out(train_caches, "train_normal")
    val_caches = drop_left_out(val_caches, "train_normal")
    check_training_caches(train_caches, "train_normal", val_caches, held_out, run.keep)
    task = NormalTask(params, train_caches, val_caches)
    return train(task, run, output=output, summary=summary,
                 config_hash=run_hash(params, train_caches + val_caches),
                 meta=_meta(params, train_caches, val_caches, held_out))


def run(*, train_caches: list[Path], val_caches: Sequence[Path] = (),
        held_out: Sequence[str] = (), normal: Path | None = None, output: Path, summary: Path,
        params: dict[str, Any]) -> dict[str, Any]:
    """Train Pixel2ISDF (with the normal network's checkpoint ``normal`` when its input
    uses predicted normals)."""
    train_caches = drop_left_out(train_caches, "train")
    val_caches = drop_left_out(val_caches, "train")
    run_params = RunParams(**params["run"])
    check_training_caches(train_caches, "train", val_caches, held_out, run_params.keep)
    task = Pixel2ISDFTask(params, train_caches, val_caches, normal)
    extra = [normal] if normal is not None and task.cfg.uses_normal_net else []
    meta = _meta(params, train_caches, val_caches, held_out)
    meta["normal_checkpoint"] = str(normal) if extra else None
    return train(task, run_params, output=output, summary=summary,
                 config_hash=run_hash(params, train_caches + val_caches, extra), meta=meta)


PIFU_MODELS = ("pifu", "temporal_pifu")


def pifu_params(params: Mapping[str, Any], model: str) -> dict[str, Any]:
    """One PIFu model's training parameters from the ``pifu.train`` section: its ``model``
    sizes with ``temporal`` set by the model's name."""
    if model not in PIFU_MODELS:
        raise PipelineError(f"unknown PIFu model {model!r}; expected one of {PIFU_MODELS}")
    return {**params, "model": {**params["model"], "temporal": model == "temporal_pifu"}}


def run_pifu(*, model: str, train_caches: list[Path], val_caches: Sequence[Path] = (),
             held_out: Sequence[str] = (), output: Path, summary: Path,
             params: dict[str, Any]) -> dict[str, Any]:
    """Train ``model`` (``pifu`` or ``temporal_pifu``) on the training subjects' frames."""
    val_caches = list(val_caches)
    run = RunParams(**params["run"])
    train_caches = drop_left_out(train_caches, "pifu.train")
    val_caches = drop_left_out(val_caches, "pifu.train")
    check_training_caches(train_caches, "pifu.train", val_caches, held_out, run.keep)
    train_params = pifu_params(params, model)
    task = PifuTask(train_params, train_caches, val_caches)
    return train(task, run, output=output, summary=summary,
                 config_hash=run_hash(train_params, train_caches + val_caches),
                 meta=_meta(params, train_caches, val_caches, held_out))

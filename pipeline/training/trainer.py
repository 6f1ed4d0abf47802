"""One training loop for every network of the pipeline (docs/training.md).

A :class:`Task` says what to train (network, datasets, loss, validation metrics, a picture);
:func:`train` does the rest, the same way for all of them:

* **draws**: the global batch of step ``s`` is ``task.draw(s, batch_size)``, a function of the
  seed and the step only; under ``torchrun`` each rank takes ``items[rank::world]``;
* **model selection**: every ``val_every`` steps the validation subjects' metrics are
  computed; with ``keep: best`` the output is the checkpoint of the step whose
  ``task.selection`` metric was best (ties: the earlier step), kept in ``best.pt`` while the
  run goes on; with ``keep: last``, the last step's; with ``keep: best`` and ``patience`` P the run
  stops after P validations in a row that did not beat the best (early stopping: the step
  kept is the one the full run would keep unless a later step would have beaten it);
* **checkpoints** every ``checkpoint_every`` steps to ``last.pt`` and at the end to the
  output, atomically, with model, optimiser, scaler and RNG states; a rerun resumes from
  ``last.pt`` when its config hash matches, so a killed run and an uninterrupted one end with
  the same weights (``last.pt`` is removed once the run has finished);
* **precision**: bf16 autocast on CUDA (``precision: auto``), fp32 on CPU; ``torch.compile``
  as an option;
* **logging**: TensorBoard scalars (each loss term, lr, gradient norm, seconds per section)
  and images, ``train.json``, a progress bar.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models.cache_io import SCHEMA_VERSION
from models.cpu import use_cpu
from models.timing import SectionTimer
from pipeline.errors import PipelineError
from pipeline.training.checkpoint import (
    load_checkpoint,
    load_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
    sidecar_path,
)
from pipeline.training.distributed import World, all_mean, close_world, init_world, resolve_device
from pipeline.training.logger import RunLogger, write_summary

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class RunParams:
    """How to run (the ``run`` part of a training section; defaults in the config schema)."""

    steps: int
    batch_size: int
    lr: float
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    checkpoint_every: int = 100
    log_every: int = 10
    val_every: int = 100
    image_every: int = 100
    val_batches: int = 1
    num_workers: int = 0
    threads: int = 2
    grad_clip: float = 0.0
    processes: int = 1  # read by the rule's launcher (torchrun); the loop reads the world
    keep: str = "best"
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.keep not in ("best", "last"):
            raise PipelineError(f"run.keep must be best or last, got {self.keep!r}")
        if self.patience is not None and self.patience < 1:
            raise PipelineError(f"run.patience must be at least 1 or null, got {self.patience}")


class Task(Protocol):
    """What :func:`train` needs to know about one method."""

    kind: str
    train_set: Dataset
    val_set: Dataset | None
    selection: tuple[str, str]
    """The validation metric that chooses the checkpoint kept and ``min`` or ``max``."""

    def build(self) -> nn.Module: ...
    def model_config(self) -> dict[str, Any]: ...
    def draw(self, step: int, batch_size: int) -> list[int]: ...
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor],
             timer: SectionTimer) -> dict[str, torch.Tensor]: ...
    def metrics(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]: ...
    def picture(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> np.ndarray | None: ...


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _loader(dataset: Dataset, batches: Sequence[list[int]], workers: int) -> Iterator[dict]:
    """Batches of the given item lists, in order (``num_workers`` processes, or none)."""
    if not batches:
        return iter(())
    return iter(DataLoader(dataset, batch_sampler=list(batches), num_workers=workers,
                           persistent_workers=False))


def _autocast(device: torch.device, precision: str):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise PipelineError(f"train.run.precision must be auto, fp32, bf16 or fp16, got "
                            f"{precision!r}")
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def validate(task: Task, model: nn.Module, run: RunParams, device: torch.device,
             world: World) -> dict[str, float]:
    """Mean validation metrics over ``val_batches`` fixed batches (eval mode)."""
    if task.val_set is None:
        return {}
    n = min(len(task.val_set), run.val_batches * run.batch_size)
    batches = [list(range(i, min(i + run.batch_size, n))) for i in range(0, n, run.batch_size)]
    sums: dict[str, float] = defaultdict(float)
    net = _unwrap(model)
    net.eval()
    try:
        for batch in _loader(task.val_set, world.shard(batches) or batches[:1], 0):
            with _autocast(device, run.precision):
                for k, v in task.metrics(net, _to_device(batch, device)).items():
                    sums[k] += v
    finally:
        net.train()
    count = max(1, len(world.shard(batches) or batches[:1]))
    return all_mean({f"val/{k}": v / count for k, v in sums.items()}, world, device)


def _resume(path: Path, kind: str, config_hash: str, model: nn.Module,
            optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
            world: World) -> tuple[int, list[dict[str, Any]]]:
    """Restore ``last.pt`` when it belongs to this run; return (start step, history)."""
    if not path.is_file():
        return 0, []
    try:
        data = load_checkpoint(path, kind=kind)
    except PipelineError as exc:  # a leftover that cannot be resumed: train afresh
        log.warning("not resuming: %s; starting afresh", exc)
        return 0, []
    if data.get("config_hash") != config_hash:
        log.warning("%s was written with other parameters (config hash %s, now %s): starting "
                    "afresh", path, str(data.get("config_hash"))[:12], config_hash[:12])
        return 0, []
    load_state(model, data["model"], path)
    optimizer.load_state_dict(data["optimizer"])
    scaler.load_state_dict(data["scaler"])
    set_rng_state(data["rng"])
    if int(data.get("world_size", 1)) != world.size:
        log.warning("%s was written by %s processes, this run has %s: resuming (the draws do "
                    "not depend on the process count; batch-norm statistics do, slightly)",
                    path, data.get("world_size"), world.size)
    log.info("resuming from %s at step %d", path, data["step"])
    return int(data["step"]), json.loads(data.get("history", "[]"))


@dataclass
class Best:
    """The best validation so far (``keep: best``): its step, metric value and weights."""

    metric: str
    mode: str
    step: int = 0
    value: float = float("nan")
    state: dict[str, torch.Tensor] | None = None

    def better(self, value: float) -> bool:
        """Whether ``value`` beats the best so far (a NaN never does; ties keep the earlier)."""
        if value != value:  # NaN
            return False
        if self.state is None:
            return True
        return value < self.value if self.mode == "min" else value > self.value

    def record(self, step: int, value: float, model: nn.Module) -> None:
        self.step, self.value = step, value
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    @classmethod
    def resume(cls, path: Path, kind: str, config_hash: str, metric: str,
               mode: str) -> Best:
        """The best of a run being resumed (``best.pt`` of the same run), or an empty one."""
        best = cls(metric, mode)
        if not path.is_file():
            return best
        try:
            data = load_checkpoint(path, kind=kind)
        except PipelineError as exc:
            log.warning("ignoring %s: %s", path, exc)
            return best
        if data.get("config_hash") == config_hash:
            best.step, best.value = int(data["step"]), float(data["selection"]["value"])
            best.state = data["model"]
        return best


def stale_validations(history: Sequence[dict[str, Any]], key: str, best_step: int) -> int:
    """How many validations in ``history`` (rows holding ``key``) came after ``best_step``:
    those that did not beat the best, what ``run.patience`` counts (also across a resume)."""
    return sum(1 for row in history if key in row and row["step"] > best_step)


def _selection(best: Best) -> dict[str, Any]:
    """What ``train.json`` and the checkpoint say about the step kept."""
    return {"keep": "best", "step": best.step, "metric": f"val/{best.metric}",
            "mode": best.mode, "value": best.value}


def train(task: Task, run: RunParams, *, output: Path, summary: Path, config_hash: str,
          meta: dict[str, Any]) -> dict[str, Any]:
    """Train ``task`` for ``run.steps`` steps; write the final checkpoint and ``train.json``.

    Args:
        output: the final checkpoint (its folder also gets ``last.pt`` and ``tensorboard/``).
        summary: ``train.json``. config_hash: identity of the run's parameters (resume key).
        meta: extra facts for ``train.json`` (subjects, inputs).

    Returns:
        the summary written to ``summary``.
    """
    world = init_world()
    ended_well = False
    try:
        result = _train(task, run, world, output=output, summary=summary,
                        config_hash=config_hash, meta=meta)
        ended_well = True
        return result
    finally:
        close_world(world, wait=ended_well)


def _train(task: Task, run: RunParams, world: World, *, output: Path, summary: Path,
           config_hash: str, meta: dict[str, Any]) -> dict[str, Any]:
    if run.batch_size % world.size:
        raise PipelineError(f"batch_size {run.batch_size} is not divisible by the {world.size} "
                            "processes")
    use_cpu(run.threads)
    device = resolve_device(run.device, world)
    if device.type == "cpu":
        # Same config, same weights: without this, a CPU run differed from its repeat in about
        # 1 of 6 tries (ResNet encoder weights, ~1e-6) even with one thread.
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(int(meta.get("seed", 0)))
    model = task.build().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=run.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=run.precision == "fp16")
    folder = output.parent
    last = folder / "last.pt"
    start, history = _resume(last, task.kind, config_hash, model, optimizer, scaler, world)
    metric, mode = task.selection
    best_path = folder / "best.pt"
    best = Best.resume(best_path, task.kind, config_hash, metric, mode) if start else \
        Best(metric, mode)
    timer = SectionTimer(cuda=device.type == "cuda")
    _unwrap(model).timer = timer
    net: nn.Module = model
    if world.size > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if run.compile:
        net = torch.compile(net)
    logger = RunLogger(folder / "tensorboard", run.steps, start, world.is_main, history)

    def checkpoint(path: Path, step: int, state: dict[str, torch.Tensor] | None = None,
                   selection: dict[str, Any] | None = None) -> None:
        if world.is_main:
            save_checkpoint(path, {
                "kind": task.kind, "step": step,
                "model": _unwrap(model).state_dict() if state is None else state,
                "selection": selection or {"keep": "last", "step": step},
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "rng": rng_state(), "model_config": json.dumps(task.model_config()),
                "config_hash": config_hash, "cache_schema": SCHEMA_VERSION,
                "world_size": world.size, "history": json.dumps(logger.history)})

    steps = [world.shard(task.draw(s, run.batch_size)) for s in range(start, run.steps)]
    stale = stale_validations([r for r in history if r["step"] <= start], f"val/{metric}",
                              best.step)
    stopped: int | None = None
    timings: dict[str, list[float]] = defaultdict(list)
    wall = time.perf_counter()
    net.train()
    for step, batch in enumerate(_loader(task.train_set, steps, run.num_workers), start + 1):
        t0 = time.perf_counter()
        batch = _to_device(batch, device)
        with _autocast(device, run.precision):
            terms = task.loss(net, batch, timer)
        with timer("backward"):
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms["total"]).backward()
            scaler.unscale_(optimizer)
            grad_norm = nn.utils.clip_grad_norm_(
                params, run.grad_clip if run.grad_clip > 0 else float("inf"))
            scaler.step(optimizer)
            scaler.update()
        seconds = {f"time/{k}": v for k, v in timer.pop().items()}
        seconds["time/step"] = time.perf_counter() - t0
        for k, v in seconds.items():
            timings[k].append(v)
        values = {f"loss/{k}": float(v.detach()) for k, v in terms.items()}
        logger.advance(loss=values["loss/total"])
        if step % run.log_every == 0 or step == run.steps:
            values = all_mean(values, world, device)
            logger.scalars(step, {**values, **seconds, "lr": optimizer.param_groups[0]["lr"],
                                  "grad_norm": float(grad_norm)})
        if step % run.val_every == 0 or step == run.steps:
            scores = validate(task, net, run, device, world)
            logger.scalars(step, scores)
            timer.pop()  # validation time is not a training step's
            value = scores.get(f"val/{metric}", float("nan"))
            if run.keep == "best" and best.better(value):
                best.record(step, value, _unwrap(model))
                checkpoint(best_path, step, best.state, _selection(best))
                stale = 0
            else:
                stale += 1
            if run.keep == "best" and run.patience is not None and stale >= run.patience \
                    and step < run.steps:
                stopped = step
                log.info("stopping at step %d of %d: %d validations without a better val/%s "
                         "than step %d's", step, run.steps, stale, metric, best.step)
                break
        if world.is_main and task.val_set is not None and (
                step % run.image_every == 0 or step == run.steps):
            first = next(_loader(task.val_set, [[0]], 0))
            logger.image(step, "sdf_slice" if task.kind != "normal_net" else "normals",
                         task.picture(_unwrap(model), _to_device(first, device)))
            timer.pop()
        if step % run.checkpoint_every == 0 and step < run.steps:
            checkpoint(last, step)
    if start >= run.steps:
        log.info("%s already holds all %d steps", last, run.steps)
    last_step = stopped or run.steps
    if run.keep == "best" and best.state is not None:
        _unwrap(model).load_state_dict(best.state)
        log.info("keeping step %d of %d: best val/%s (%s) %.5g", best.step, run.steps,
                 metric, mode, best.value)
        checkpoint(output, best.step, best.state, _selection(best))
    else:
        if run.keep == "best":
            log.warning("keep is best but no validation gave a finite val/%s: writing the "
                        "last step (%d)", metric, last_step)
        checkpoint(output, last_step)
    final = validate(task, net, run, device, world)
    selection = _selection(best) if run.keep == "best" and best.state is not None else \
        {"keep": "last", "step": last_step}
    result = {
        "kind": task.kind, "steps": run.steps, "stopped_at": stopped, "selected": selection,
        "resumed_from_step": start or None,
        "world_size": world.size, "device": str(device), "config_hash": config_hash,
        "run": asdict(run), "wall_seconds_this_process": round(time.perf_counter() - wall, 2),
        "mean_seconds": {k: round(float(np.mean(v)), 5) for k, v in timings.items()},
        "final_validation": final, "history": logger.history, **meta}
    if world.is_main:
        write_summary(summary, result)
        for done in (last, best_path):  # done: a forced rerun trains afresh
            done.unlink(missing_ok=True)
            sidecar_path(done).unlink(missing_ok=True)
    logger.close()
    return result

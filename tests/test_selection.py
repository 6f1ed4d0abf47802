"""Which checkpoint a training run keeps (``run.keep``, pipeline/training/trainer.py): the
validation step with the best selection metric (``best``) or the last step (``last``), also
across a kill and a resume; early stopping (``run.patience``); and Pixel2ISDF's selection
metric, ``near_l1``.

The tiny runs train on one subject: then the draws of step ``s`` do not depend on the run's
length (with two, an item's index is ``subject · steps · batch + g``), so a run of ``k`` steps
is the first ``k`` steps of a longer one, which the weights test relies on and checks.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.cache_io import SCHEMA_VERSION
from models.pixel2isdf.losses import near_l1
from pipeline.errors import PipelineError
from pipeline.train import run
from pipeline.training import trainer
from pipeline.training.checkpoint import load_checkpoint, save_checkpoint
from pipeline.training.trainer import Best, RunParams, stale_validations
from tests.cache_fakes import build
from tests.test_train import REPO, TINY_TRAIN, params

METRIC = "val/sdf_l1_near_cm"
STEPS = 6
# lr 0.02 overshoots after a few steps: with seed 5 and these caches the metric falls until
# step 3 and then rises, so the best step is neither the first nor the last.
SELECTION_RUN = {**TINY_TRAIN["run"], "steps": STEPS, "lr": 0.02, "val_every": 1,
                 "checkpoint_every": 2, "image_every": 100, "log_every": 100, "keep": "best"}


def _params(**run_overrides) -> dict:
    return params("train", {"run": {**SELECTION_RUN, **run_overrides}})


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """One subject to train on, one to validate on (2 actions × 2 views of 64² crops)."""
    root = tmp_path_factory.mktemp("selection_caches")
    paths = {name: build(root / name, output=root / "cache" / f"{name}.h5", seed=seed)
             for name, seed in (("s0", 0), ("s2", 2))}
    return {"train": [paths["s0"]], "val": [paths["s2"]]}


def _train(caches, out: Path, p: dict) -> dict:
    return run(train_caches=caches["train"], val_caches=caches["val"], output=out,
               summary=out.parent / "train.json", params=p)


def _val_curve(summary: dict) -> dict[int, float]:
    return {r["step"]: r[METRIC] for r in summary["history"] if METRIC in r}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def best_run(caches, tmp_path_factory) -> Path:
    """A keep-best run of STEPS steps validated at every step; its checkpoint's path."""
    out = tmp_path_factory.mktemp("best") / "checkpoint.pt"
    _train(caches, out, _params())
    return out


# --- Best ---------------------------------------------------------------------------------


def _recorded(mode: str, value: float, step: int = 1) -> Best:
    best = Best("m", mode)
    best.record(step, value, torch.nn.Linear(2, 1))
    return best


def test_best_empty_takes_any_number_but_nan() -> None:
    assert Best("m", "min").better(5.0)
    assert Best("m", "max").better(-5.0)
    assert not Best("m", "min").better(float("nan"))


@pytest.mark.parametrize("mode, better, worse", [("min", 0.5, 2.0), ("max", 2.0, 0.5)])
def test_best_compares_by_mode(mode: str, better: float, worse: float) -> None:
    best = _recorded(mode, 1.0)
    assert best.better(better)
    assert not best.better(worse)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_tie_keeps_the_earlier_step(mode: str) -> None:
    assert not _recorded(mode, 1.0).better(1.0)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_nan_never_replaces(mode: str) -> None:
    assert not _recorded(mode, 1.0).better(float("nan"))


def test_best_record_copies_the_weights() -> None:
    model = torch.nn.Linear(2, 1)
    best = Best("m", "min")
    best.record(4, 0.25, model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)  # training goes on after the record
    assert (best.step, best.value) == (4, 0.25)
    _assert_same_weights(best.state, before)
    assert all(v.device.type == "cpu" for v in best.state.values())


def _best_pt(path: Path, config_hash: str, step: int, value: float) -> dict:
    model = torch.nn.Linear(2, 1)
    save_checkpoint(path, {"kind": "pixel2isdf", "step": step, "model": model.state_dict(),
                           "selection": {"keep": "best", "step": step, "value": value},
                           "config_hash": config_hash, "cache_schema": SCHEMA_VERSION})
    return model.state_dict()


def test_best_resume_reads_the_same_runs_best_pt(tmp_path: Path) -> None:
    state = _best_pt(tmp_path / "best.pt", "h", 3, 0.5)
    best = Best.resume(tmp_path / "best.pt", "pixel2isdf", "h", "m", "min")
    assert (best.step, best.value) == (3, 0.5)
    _assert_same_weights(best.state, state)
    assert best.better(0.4) and not best.better(0.5)


@pytest.mark.parametrize("case", ["missing", "other_run", "corrupt"])
def test_best_resume_starts_empty_without_a_usable_best_pt(tmp_path: Path, case: str) -> None:
    path = tmp_path / "best.pt"
    if case == "other_run":
        _best_pt(path, "other", 3, 0.5)
    elif case == "corrupt":
        path.write_bytes(b"PK\x03\x04 truncated")
    best = Best.resume(path, "pixel2isdf", "h", "m", "min")
    assert best.state is None and math.isnan(best.value)
    assert best.better(100.0)


def test_stale_validations_counts_the_validations_after_the_best_step() -> None:
    history = [{"step": 10, "loss/total": 1.0}, {"step": 50, METRIC: 2.0},
               {"step": 100, METRIC: 1.5}, {"step": 100, "loss/total": 0.5},
               {"step": 150, METRIC: 1.7}, {"step": 200, METRIC: 1.9}]
    assert stale_validations(history, METRIC, 100) == 2
    assert stale_validations(history, METRIC, 200) == 0
    assert stale_validations(history, METRIC, 0) == 4  # no best yet: every validation


def test_patience_below_one_is_refused() -> None:
    with pytest.raises(PipelineError, match="patience"):
        RunParams(steps=10, batch_size=1, lr=1e-3, patience=0)


def _expected_stop(curve: dict[int, float], patience: int) -> tuple[int, int]:
    """(step the run stops at, step it keeps) of ``curve`` under ``patience``."""
    best_step, stale = None, 0
    for step in sorted(curve):
        if best_step is None or curve[step] < curve[best_step]:
            best_step, stale = step, 0
        else:
            stale += 1
            if stale >= patience and step < STEPS:
                return step, best_step
    return STEPS, best_step


# --- keep: best / last, end to end -----------------------------------------------------------


def test_keep_best_selects_the_step_of_the_lowest_validation_metric(best_run: Path) -> None:
    summary = json.loads((best_run.parent / "train.json").read_text())
    curve = _val_curve(summary)
    assert sorted(curve) == list(range(1, STEPS + 1))  # val_every 1
    argmin = min(curve, key=lambda s: (curve[s], s))  # the earlier of equal values
    selected = summary["selected"]
    assert selected["step"] == argmin
    assert 1 < argmin < STEPS, f"the fixture should select an inner step: {curve}"
    assert selected["keep"] == "best" and selected["metric"] == METRIC
    assert selected["mode"] == "min"
    assert selected["value"] == pytest.approx(curve[argmin], abs=1e-6)  # history: 6 decimals
    data = load_checkpoint(best_run, kind="pixel2isdf")
    assert data["step"] == argmin and data["selection"] == selected
    # the final validation scores the weights kept
    assert summary["final_validation"][METRIC] == pytest.approx(selected["value"], rel=1e-6)
    assert not (best_run.parent / "last.pt").exists()
    assert not (best_run.parent / "best.pt").exists()


def test_keep_best_writes_the_selected_steps_weights(caches, best_run: Path,
                                                     tmp_path: Path) -> None:
    """The same seed for exactly selected.step steps (keep: last) gives the same weights."""
    summary = json.loads((best_run.parent / "train.json").read_text())
    k = summary["selected"]["step"]
    out = tmp_path / "short" / "checkpoint.pt"
    short = _train(caches, out, _params(steps=k, keep="last"))
    # the claim the comparison rests on: the short run's steps are the long run's first k
    assert _val_curve(short) == {s: v for s, v in _val_curve(summary).items() if s <= k}
    assert load_checkpoint(out)["step"] == k
    _assert_same_weights(load_checkpoint(best_run)["model"], load_checkpoint(out)["model"])


def test_keep_last_writes_the_last_step(caches, best_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "last" / "checkpoint.pt"
    summary = _train(caches, out, _params(keep="last"))
    assert summary["selected"] == {"keep": "last", "step": STEPS}
    data = load_checkpoint(out, kind="pixel2isdf")
    assert data["step"] == STEPS and data["selection"] == {"keep": "last", "step": STEPS}
    written = json.loads((out.parent / "train.json").read_text())
    assert written["selected"] == {"keep": "last", "step": STEPS}
    # the same training as best_run (keep changes no draw): the last step is not its best
    assert _val_curve(summary) == _val_curve(json.loads((best_run.parent / "train.json")
                                                        .read_text()))
    best_weights = load_checkpoint(best_run)["model"]
    assert any(not torch.equal(v, best_weights[k]) for k, v in data["model"].items())


def test_patience_stops_early_and_keeps_the_full_runs_step_and_weights(
        caches, best_run: Path, tmp_path: Path) -> None:
    """With patience 2 the run ends two validations after its best step, which it keeps: the
    same step and weights as the full run (no later step of which beat it)."""
    reference = json.loads((best_run.parent / "train.json").read_text())
    stop, kept = _expected_stop(_val_curve(reference), patience=2)
    assert stop < STEPS and kept == reference["selected"]["step"], "fixture: an early stop"
    out = tmp_path / "patient" / "checkpoint.pt"
    summary = _train(caches, out, _params(patience=2))
    assert summary["stopped_at"] == stop and summary["steps"] == STEPS
    assert summary["selected"] == reference["selected"]
    assert _val_curve(summary) == {s: v for s, v in _val_curve(reference).items() if s <= stop}
    assert max(r["step"] for r in summary["history"]) == stop
    _assert_same_weights(load_checkpoint(out)["model"], load_checkpoint(best_run)["model"])
    assert json.loads((out.parent / "train.json").read_text())["stopped_at"] == stop
    assert reference["stopped_at"] is None


def test_patience_does_not_stop_a_keep_last_run(caches, best_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "last" / "checkpoint.pt"
    summary = _train(caches, out, _params(keep="last", patience=1))
    assert summary["stopped_at"] is None and load_checkpoint(out)["step"] == STEPS


class Killed(Exception):
    """Stands for a SIGKILL right after a resume checkpoint was written."""


def _train_killed_at(caches, out: Path, p: dict, killed_at: int, monkeypatch) -> None:
    """Train with ``p`` until ``last.pt`` holds step ``killed_at``, then die (:class:`Killed`)."""
    save = trainer.save_checkpoint

    def save_then_die(path, payload):
        save(path, payload)
        if Path(path).name == "last.pt" and payload["step"] == killed_at:
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            _train(caches, out, p)


@pytest.mark.parametrize("killed_at", [2, 4], ids=["before_the_best", "after_the_best"])
def test_killed_and_resumed_keeps_the_same_step_and_weights(caches, best_run: Path,
                                                            tmp_path: Path, monkeypatch,
                                                            killed_at: int) -> None:
    """Killed once last.pt holds step ``killed_at``: before the best step (best.pt then holds
    a worse step the resumed run must replace), or after it (the resumed run must keep
    best.pt's step, which it does not see again)."""
    reference = json.loads((best_run.parent / "train.json").read_text())
    best_step = reference["selected"]["step"]
    assert killed_at < best_step < STEPS or best_step < killed_at < STEPS
    out = tmp_path / "run" / "checkpoint.pt"
    _train_killed_at(caches, out, _params(), killed_at, monkeypatch)
    assert not out.exists()
    assert load_checkpoint(out.parent / "last.pt")["step"] == killed_at
    partial_best = load_checkpoint(out.parent / "best.pt")["selection"]["step"]
    assert partial_best == min(killed_at, best_step)

    summary = _train(caches, out, _params())
    assert summary["resumed_from_step"] == killed_at
    assert summary["selected"] == reference["selected"]
    assert _val_curve(summary) == _val_curve(reference)
    assert load_checkpoint(out)["step"] == best_step
    _assert_same_weights(load_checkpoint(out)["model"], load_checkpoint(best_run)["model"])
    assert not (out.parent / "last.pt").exists() and not (out.parent / "best.pt").exists()


def test_patience_counts_the_validations_before_a_resume(caches, best_run: Path,
                                                         tmp_path: Path, monkeypatch) -> None:
    """Killed between its best step and its stop, the resumed run stops where the
    uninterrupted one does: the validations before the kill count (from last.pt's history)."""
    reference = json.loads((best_run.parent / "train.json").read_text())
    stop, kept = _expected_stop(_val_curve(reference), patience=2)
    killed_at = 4  # checkpoint_every 2
    assert kept < killed_at < stop, "fixture: best step, kill, stop in that order"
    out = tmp_path / "run" / "checkpoint.pt"
    _train_killed_at(caches, out, _params(patience=2), killed_at, monkeypatch)
    summary = _train(caches, out, _params(patience=2))
    assert summary["resumed_from_step"] == killed_at and summary["stopped_at"] == stop
    assert summary["selected"] == reference["selected"]
    _assert_same_weights(load_checkpoint(out)["model"], load_checkpoint(best_run)["model"])


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_to_the_same_step_and_weights(caches, best_run: Path,
                                                               tmp_path: Path) -> None:
    """The same through the CLI, killed by SIGKILL once last.pt exists (wherever it is)."""
    out = tmp_path / "killed" / "checkpoint.pt"
    last = out.parent / "last.pt"
    cmd = [sys.executable, "-m", "pipeline", "train", "--params", json.dumps(_params()),
           "--train-caches", *map(str, caches["train"]),
           "--val-caches", *map(str, caches["val"]), "--held-out", "s9",
           "--output", str(out), "--summary", str(out.parent / "train.json")]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists() and not out.exists(), proc.stderr.read().decode()[-2000:]
    killed_at = load_checkpoint(last)["step"]
    assert 0 < killed_at < STEPS

    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out.parent / "train.json").read_text())
    reference = json.loads((best_run.parent / "train.json").read_text())
    assert summary["resumed_from_step"] == killed_at
    assert summary["selected"] == reference["selected"]
    assert summary["held_out_subjects"] == ["s9"]
    _assert_same_weights(load_checkpoint(out)["model"], load_checkpoint(best_run)["model"])


# --- near_l1 --------------------------------------------------------------------------------


def test_near_l1_averages_the_error_within_the_band_only() -> None:
    target = torch.tensor([[0.0, 0.01, -0.015, 0.02, 0.03], [-0.5, 0.019, 0.5, -0.02, 0.0]])
    pred = torch.tensor([[0.005, 0.0, -0.02, 9.0, 9.0], [9.0, 0.009, -9.0, 9.0, -0.004]])
    # within |target| < 0.02 (strict): errors 0.005, 0.01, 0.005, 0.01, 0.004
    expected = torch.tensor((0.005 + 0.01 + 0.005 + 0.01 + 0.004) / 5)
    torch.testing.assert_close(near_l1(pred, target, 0.02), expected)


def test_near_l1_is_nan_when_no_point_is_within_the_band() -> None:
    target = torch.tensor([[0.05, -0.02, 0.3]])
    assert math.isnan(float(near_l1(torch.zeros_like(target), target, 0.02)))

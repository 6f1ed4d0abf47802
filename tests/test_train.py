"""The training stages (pipeline/train.py, pipeline/training/): checkpoints, resume, DDP,
logging and the bad inputs, on tiny caches made here (tests/cache_fakes.py)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.cache_io import SCHEMA_VERSION
from pipeline.config import validate_config
from pipeline.errors import PipelineError
from pipeline.train import run, run_normal
from pipeline.training.checkpoint import load_checkpoint, rng_state, save_checkpoint
from pipeline.training.distributed import World
from pipeline.training.trainer import _resume
from tests.cache_fakes import build

REPO = Path(__file__).resolve().parents[1]

TINY_NORMAL = {"model": {"ngf": 4, "n_downsample": 2, "n_blocks": 1, "input_size": 32},
               "run": {"steps": 4, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 2,
                       "log_every": 1, "val_every": 2, "image_every": 2, "val_batches": 1,
                       "device": "cpu", "threads": 1, "keep": "last"}}
TINY_MODEL = {"input": "image", "input_size": 32, "feature_channels": 4, "geometry_width": 0.125,
              "fusion_hidden": 8, "latent_dim": 4, "volume_resolution": 32,
              "diffusion_width": 0.25, "head_hidden": 16, "head_layers": 2, "head_skip": None,
              "n_freqs": 2, "sparse_backend": "torch"}
TINY_TRAIN = {"model": TINY_MODEL, "n_views": 2, "n_points": 64,
              "run": {"steps": 6, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 2,
                      "log_every": 1, "val_every": 3, "image_every": 3, "val_batches": 1,
                      "device": "cpu", "threads": 1, "keep": "last"}}


def params(section: str, overrides: dict | None = None) -> dict:
    """Validated stage parameters (schema defaults filled) for a tiny run."""
    base = TINY_NORMAL if section == "train_normal" else TINY_TRAIN
    config = validate_config({"seed": 5, section: {**base, **(overrides or {})}})
    return {"seed": config["seed"], **config[section]}


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Three tiny subjects (2 actions × 2 views of 64² crops): two to train, one to test."""
    root = tmp_path_factory.mktemp("train_caches")
    paths = [build(root / f"s{i}", output=root / "cache" / f"s{i}.h5", seed=i) for i in range(3)]
    return {"train": paths[:2], "test": paths[2:]}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_normal_net_trains_and_logs(caches, tmp_path: Path) -> None:
    out = tmp_path / "normal" / "checkpoint.pt"
    summary = run_normal(train_caches=caches["train"], val_caches=caches["test"], output=out,
                         summary=out.parent / "train.json", params=params("train_normal"))
    data = load_checkpoint(out, kind="normal_net")
    assert data["step"] == 4 and json.loads(data["model_config"])["ngf"] == 4
    written = json.loads((out.parent / "train.json").read_text())
    assert written["train_subjects"] == ["s0", "s1"] and written["val_subjects"] == ["s2"]
    assert [r["step"] for r in written["history"] if "loss/total" in r] == [1, 2, 3, 4]
    assert "val/angle_deg" in summary["final_validation"]
    assert list((out.parent / "tensorboard").glob("events.out.tfevents.*"))
    assert not (out.parent / "last.pt").exists()


@pytest.fixture(scope="module")
def normal_checkpoint(caches, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("normal") / "checkpoint.pt"
    run_normal(train_caches=caches["train"], val_caches=[], output=out,
               summary=out.parent / "train.json", params=params("train_normal"))
    return out


def test_pixel2isdf_trains_with_the_frozen_normal_net(caches, normal_checkpoint,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "p2i" / "checkpoint.pt"
    p = params("train", {"model": {**TINY_MODEL, "input": "normal"}})
    summary = run(train_caches=caches["train"], val_caches=caches["test"],
                  normal=normal_checkpoint, output=out, summary=out.parent / "train.json",
                  params=p)
    weights = _weights(out)
    normal = _weights(normal_checkpoint)
    for name, value in normal.items():  # frozen: unchanged after training
        torch.testing.assert_close(weights[f"normal_net.{name}"], value, rtol=0, atol=0)
    history = summary["history"]
    assert all(k in summary["mean_seconds"] for k in (
        "time/normal_net", "time/geometry_net", "time/projection_fusion", "time/diffusion",
        "time/sdf_head_loss", "time/backward"))
    logged = {k for r in history for k in r}
    assert {"loss/sdf", "loss/eikonal", "lr", "grad_norm", "val/sign_acc_near"} <= logged


def test_checkpoint_loads_with_weights_only(caches, tmp_path: Path) -> None:
    out = tmp_path / "ckpt.pt"
    run(train_caches=caches["train"], output=out, summary=tmp_path / "train.json",
        params=params("train", {"run": {**TINY_TRAIN["run"], "steps": 2}}))
    data = torch.load(out, weights_only=True)
    assert data["kind"] == "pixel2isdf" and data["step"] == 2
    assert {"model", "optimizer", "scaler", "rng", "config_hash", "cache_schema"} <= set(data)


def test_same_config_same_weights(caches, tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name / "checkpoint.pt"
        run(train_caches=caches["train"], output=out, summary=out.parent / "train.json",
            params=params("train", {"run": {**TINY_TRAIN["run"], "steps": 3}}))
        outs.append(_weights(out))
    for key, value in outs[0].items():
        torch.testing.assert_close(outs[1][key], value, rtol=0, atol=0)


def _cli(tmp_path: Path, caches, p: dict, out: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "train", "--params", json.dumps(p),
            "--train-caches", *map(str, caches["train"]), "--output", str(out),
            "--summary", str(out.parent / "train.json")]


@pytest.mark.slow
def test_killed_and_resumed_equals_uninterrupted(caches, tmp_path: Path) -> None:
    p = params("train", {"run": {**TINY_TRAIN["run"], "steps": 8, "checkpoint_every": 2}})
    reference = tmp_path / "ref" / "checkpoint.pt"
    run(train_caches=caches["train"], output=reference,
        summary=reference.parent / "train.json", params=p)

    out = tmp_path / "killed" / "checkpoint.pt"
    last = out.parent / "last.pt"
    proc = subprocess.Popen(_cli(tmp_path, caches, p, out), cwd=REPO, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # as a lost node or an OOM kill would
    proc.wait()
    assert last.exists() and not out.exists(), proc.stderr.read().decode()[-2000:]
    killed_at = load_checkpoint(last)["step"]
    assert 0 < killed_at < 8

    result = subprocess.run(_cli(tmp_path, caches, p, out), cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {last} at step {killed_at}" in result.stderr
    summary = json.loads((out.parent / "train.json").read_text())
    assert summary["resumed_from_step"] == killed_at
    assert [r["step"] for r in summary["history"] if "loss/total" in r] == list(range(1, 9))
    reference_weights = _weights(reference)
    for key, value in _weights(out).items():
        torch.testing.assert_close(value, reference_weights[key], rtol=0, atol=0)


DDP_ATOL = 1e-5
"""Largest |difference| allowed between a weight trained by 2 gloo processes (batch 1 each)
and by 1 process (batch 2): the same gradients summed in another order. Measured: 5.7e-7
after 4 Adam steps; without the gradient all-reduce the weights differ by 5.7e-3 to 7.7e-3."""

NO_SYNC_LAUNCHER = """\
# `python -m pipeline`, with DistributedDataParallel's gradient all-reduce switched off on
# every step (DDP.no_sync() around each forward): each process steps on its own gradient.
import sys

sys.path.insert(0, {repo!r})
from torch.nn.parallel import DistributedDataParallel

_forward = DistributedDataParallel.forward


def forward_without_sync(self, *args, **kwargs):
    with self.no_sync():
        return _forward(self, *args, **kwargs)


DistributedDataParallel.forward = forward_without_sync
from pipeline.cli import main

sys.exit(main(sys.argv[1:]))
"""


def _norm_cancelled_biases(model: torch.nn.Module) -> set[str]:
    """The biases of the (transposed) convolutions followed directly by an InstanceNorm2d:
    the norm takes each channel's mean away, so such a bias changes no output and its
    gradient is rounding noise, which Adam's step (gradient / its running RMS) turns into
    steps of about ``lr`` whose sign depends on the order of the sums. They differ between
    any two summation orders, all-reduce or not (measured: up to 5.4e-3 after 4 steps)."""
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, torch.nn.Sequential):
            for (name, first), (_, second) in itertools.pairwise(module.named_children()):
                if (isinstance(first, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
                        and first.bias is not None
                        and isinstance(second, torch.nn.InstanceNorm2d)):
                    names.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


@pytest.mark.slow
def test_ddp_two_processes_match_one_with_the_doubled_batch(caches, tmp_path: Path) -> None:
    """2 gloo processes × batch 1 = 1 process × batch 2, weight for weight, after 4 steps;
    with DDP's gradient all-reduce switched off, the same run ends elsewhere.

    The normal network is the one trained here because its step is exactly the same in both:
    instance norm (no batch statistics) and a loss whose mean over the batch equals the mean
    of the per-process means (every fake view has the same mask area), so only the order of
    the float sums differs. Pixel2ISDF's batch norms see 2 subjects in one process and 1 in
    each of two, so their batch statistics, hence every gradient, differ legitimately (its
    weights end ~5e-3 apart with or without the all-reduce); its 2-process run is covered by
    tests/test_workflow.py (train.run.processes: 2) and tests/test_slurm.py."""
    from torch.utils.data import default_collate

    from models.pixel2isdf import get_normal_net
    from pipeline.training.tasks import NormalTask

    p = params("train_normal", {"run": {**TINY_NORMAL["run"], "steps": 4, "batch_size": 2,
                                        "val_every": 100, "image_every": 100,
                                        "checkpoint_every": 100}})
    task = NormalTask(p, caches["train"], [])
    areas = {int(task._predict(lambda image, alpha: image,
                               default_collate([task.train_set[i]]))[2].sum())
             for i in range(len(task.train_set))}
    assert len(areas) == 1, f"the loss's mask areas differ between views: {areas}"
    single = tmp_path / "single" / "checkpoint.pt"
    run_normal(train_caches=caches["train"], output=single,
               summary=single.parent / "train.json", params=p)
    launcher = tmp_path / "no_sync.py"
    launcher.write_text(NO_SYNC_LAUNCHER.format(repo=str(REPO)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outputs = {}
    for name, program in (("ddp", ["-m", "pipeline"]), ("ddp_no_sync", [str(launcher)])):
        out = tmp_path / name / "checkpoint.pt"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", *program, "train-normal", "--params", json.dumps(p),
               "--train-caches", *map(str, caches["train"]), "--output", str(out),
               "--summary", str(out.parent / "train.json")]
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                                env=env)
        assert result.returncode == 0, result.stderr[-4000:]
        summary = json.loads((out.parent / "train.json").read_text())
        assert summary["world_size"] == 2 and summary["steps"] == 4
        outputs[name] = out

    reference = load_checkpoint(single, kind="normal_net")
    model = get_normal_net(json.loads(reference["model_config"]))
    skipped = _norm_cancelled_biases(model)
    compared = [k for k, _ in model.named_parameters() if k not in skipped]
    # here 7 biases skipped of 16 tensors: every weight and the output conv's bias compared
    assert skipped and len(compared) > len(skipped)
    assert set(reference["model"]) >= set(compared)

    def max_difference(path: Path) -> float:
        weights = load_checkpoint(path, kind="normal_net")["model"]
        return max(float((weights[k] - reference["model"][k]).abs().max()) for k in compared)

    synced, unsynced = max_difference(outputs["ddp"]), max_difference(outputs["ddp_no_sync"])
    print(f"max |weight difference| to 1 process: {synced:.3g} with the all-reduce, "
          f"{unsynced:.3g} without (tolerance {DDP_ATOL:g})")
    assert synced < DDP_ATOL
    assert unsynced > DDP_ATOL  # the tolerance would catch a missing all-reduce


def test_no_training_subject(caches, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="no training subject"):
        run(train_caches=[], val_caches=caches["test"], output=tmp_path / "c.pt",
            summary=tmp_path / "t.json", params=params("train"))


def test_cuda_asked_for_where_there_is_none(caches, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(PipelineError, match="sees no CUDA device"):
        run(train_caches=caches["train"], output=tmp_path / "c.pt", summary=tmp_path / "t.json",
            params=params("train", {"run": {**TINY_TRAIN["run"], "device": "cuda"}}))


def test_cache_without_truth_normals(tmp_path: Path) -> None:
    path = build(tmp_path / "s", params={"seed": 1, "n_sdf_points": 500, "n_surface_points": 50,
                                         "n_pifu_points": 0, "oracle_normals": False})
    with pytest.raises(PipelineError, match="no truth normal maps"):
        run_normal(train_caches=[path], output=tmp_path / "c.pt", summary=tmp_path / "t.json",
                   params=params("train_normal"))


@pytest.mark.parametrize("damage", ["missing", "corrupt", "wrong_kind", "mismatched",
                                    "cache_schema"])
def test_bad_normal_checkpoint(caches, normal_checkpoint, tmp_path: Path, damage: str) -> None:
    path = tmp_path / "normal.pt"
    p = params("train", {"model": {**TINY_MODEL, "input": "normal"}})
    expected = {"missing": "does not exist", "corrupt": "corrupt",
                "wrong_kind": "holds a 'pixel2isdf' model", "mismatched": "do not fit",
                "cache_schema": "caches of schema version 0"}[damage]
    if damage == "corrupt":
        path.write_bytes(normal_checkpoint.read_bytes()[:300])
    elif damage == "wrong_kind":
        run(train_caches=caches["train"], output=path, summary=tmp_path / "t.json",
            params=params("train", {"run": {**TINY_TRAIN["run"], "steps": 1}}))
    elif damage == "cache_schema":
        data = torch.load(normal_checkpoint, weights_only=True)
        torch.save({**data, "cache_schema": 0}, path)
    elif damage == "mismatched":
        data = torch.load(normal_checkpoint, weights_only=True)
        config = json.loads(data["model_config"])
        data["model_config"] = json.dumps({**config, "ngf": 8})
        torch.save(data, path)
    with pytest.raises(PipelineError, match=expected) as info:
        run(train_caches=caches["train"], normal=path, output=tmp_path / "c.pt",
            summary=tmp_path / "t2.json", params=p)
    assert str(path) in str(info.value)


def test_resume_checkpoint_of_other_parameters_is_not_used(caches, tmp_path: Path,
                                                           caplog) -> None:
    out = tmp_path / "x" / "checkpoint.pt"
    p = params("train", {"run": {**TINY_TRAIN["run"], "steps": 2}})
    run(train_caches=caches["train"], output=out.parent / "other.pt",
        summary=out.parent / "other.json", params={**p, "n_points": 32})
    (out.parent / "other.pt").rename(out.parent / "last.pt")
    summary = run(train_caches=caches["train"], output=out, summary=out.parent / "train.json",
                  params=p)
    assert summary["resumed_from_step"] is None
    assert "starting afresh" in caplog.text


def test_truncated_resume_checkpoint_is_not_used(caches, tmp_path: Path, caplog) -> None:
    out = tmp_path / "y" / "checkpoint.pt"
    out.parent.mkdir()
    (out.parent / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    summary = run(train_caches=caches["train"], output=out, summary=out.parent / "train.json",
                  params=params("train", {"run": {**TINY_TRAIN["run"], "steps": 1}}))
    assert summary["resumed_from_step"] is None
    assert "not resuming" in caplog.text and "corrupt" in caplog.text


def test_resume_with_another_world_size_warns_and_resumes(tmp_path: Path, caplog) -> None:
    """The documented policy (docs/training.md): a last.pt written by another number of
    processes is resumed, with a warning, because the draws do not depend on it."""
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters())
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    last = tmp_path / "last.pt"
    save_checkpoint(last, {"kind": "pixel2isdf", "step": 4, "model": model.state_dict(),
                           "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                           "rng": rng_state(), "config_hash": "h", "cache_schema": SCHEMA_VERSION,
                           "world_size": 2, "history": "[]", "model_config": "{}"})
    with caplog.at_level("WARNING"):
        step, _ = _resume(last, "pixel2isdf", "h", model, optimizer, scaler, World(size=1))
    assert step == 4
    assert "written by 2 processes, this run has 1: resuming" in caplog.text


def test_normal_net_trained_on_other_inputs_is_refused(caches, normal_checkpoint,
                                                       tmp_path: Path) -> None:
    """The w/o-mask variant needs a normal network that saw unmasked crops too."""
    out = tmp_path / "p2i" / "checkpoint.pt"
    p = params("train", {"model": {**TINY_MODEL, "input": "normal", "masked_input": False}})
    with pytest.raises(PipelineError, match=r"trained with masked_input True, "
                                            r"train\.model\.masked_input is False"):
        run(train_caches=caches["train"], val_caches=caches["test"],
            normal=normal_checkpoint, output=out, summary=out.parent / "train.json", params=p)
    assert not out.exists()


def test_more_processes_than_visible_gpus_is_refused(monkeypatch) -> None:
    """gpu=N with fewer visible devices: the second process on a one-GPU node stops, naming
    both counts (CUDA faked: this machine has none)."""
    from pipeline.training.distributed import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda", World(rank=0, size=2, local_rank=0)) == torch.device("cuda", 0)
    with pytest.raises(PipelineError, match="2 processes on this node but only 1 visible CUDA"):
        resolve_device("cuda", World(rank=1, size=2, local_rank=1))
    assert resolve_device("cpu", World(rank=1, size=2, local_rank=1)) == torch.device("cpu")


def test_a_subject_left_out_by_registration_is_not_trained_on(caches, tmp_path: Path) -> None:
    """register.on_fail: skip marks the cache; training names it and goes on without it."""
    import shutil

    import h5py

    from pipeline.train import drop_left_out

    marked = tmp_path / "s9.h5"
    shutil.copy(caches["train"][0], marked)
    with h5py.File(marked, "a") as handle:
        handle.attrs["targets"] = "left out: the scan's registration failed"
    kept = drop_left_out([marked, caches["train"][1]], "train")
    assert kept == [caches["train"][1]]

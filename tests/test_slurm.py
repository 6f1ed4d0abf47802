"""The tiny workflow on a real one-node SLURM cluster through profiles/slurm."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests import slurm
from tests.cache_fakes import build
from tests.conftest import REPO, run_snakemake, tiny_config, write_config
from tests.test_train import TINY_TRAIN, params

# One worker (pytest-xdist) and one cluster for the module.
pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.xdist_group("slurm")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        running = slurm.start(tmp_path_factory.mktemp("slurm"))
    except slurm.SlurmUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"SLURM must run in CI but cannot: {exc}")
        pytest.skip(f"SLURM unavailable: {exc}")
    yield running
    running.stop()


def test_workflow_runs_through_sbatch(cluster, tiny_layout, monkeypatch):
    for key, value in cluster.env.items():
        monkeypatch.setenv(key, value)
    write_config(tiny_layout, tiny_config())
    result = run_snakemake(tiny_layout, "--profile", str(REPO / "profiles" / "slurm"),
                           "--slurm-init-seconds-before-status-checks", "2", timeout=600)
    text = result.stdout + result.stderr
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", text)
    assert len(submitted) == 2, text[-3000:]  # one ingest job per subject
    jobs = cluster.jobs()
    for job_id in submitted:
        block = jobs.split(f"JobId={job_id} ")[1].split("JobId=")[0]
        assert "JobState=COMPLETED" in block and "BatchFlag=1" in block
        # profiles/slurm's default runtime (120 min) reached sbatch --time
        assert "TimeLimit=02:00:00" in block, block
    for subject in ("s000", "s001"):
        manifest = tiny_layout / "results" / "tiny" / "manifest" / f"{subject}.json"
        assert json.loads(manifest.read_text())["n_views"] == 6
    print(f"SLURM run: jobs {submitted} went through sbatch and completed")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_training_job_resumes_after_scancel(cluster, tmp_path):
    """A 2-process (gloo) training job through sbatch is cancelled once it has written
    last.pt; the same job submitted again resumes from that step and finishes."""
    caches = [build(tmp_path / f"s{i}", output=tmp_path / "cache" / f"s{i}.h5", seed=i)
              for i in range(2)]
    p = params("train", {"run": {**TINY_TRAIN["run"], "steps": 400, "checkpoint_every": 5,
                                 "val_every": 1000, "image_every": 1000}})
    out = tmp_path / "train" / "checkpoint.pt"
    script = tmp_path / "train.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --time=10\n#SBATCH --cpus-per-task=2\n"
        f"cd {REPO}\nexport OMP_NUM_THREADS=1\n"
        f"exec {sys.executable} -m torch.distributed.run --standalone --nproc-per-node 2 "
        f"-m pipeline train --params '{json.dumps(p)}' --train-caches {caches[0]} "
        f"--val-caches {caches[1]} --output {out} --summary {out.parent / 'train.json'}\n")

    def submit() -> str:
        return subprocess.run(["sbatch", "--parsable", "-o", str(tmp_path / "%j.log"),
                               str(script)], env=cluster.env, capture_output=True, text=True,
                              check=True).stdout.strip().split(";")[0]

    first = submit()
    _wait(lambda: (out.parent / "last.pt").is_file(), 240, "the first last.pt")
    subprocess.run(["scancel", first], env=cluster.env, check=True)
    _wait(lambda: first not in cluster.squeue_ids(), 60, f"job {first} to leave the queue")
    assert not out.exists()  # cancelled before the end: no final checkpoint
    second = submit()
    _wait(lambda: second not in cluster.squeue_ids(), 480, f"job {second} to finish")
    log = (tmp_path / f"{second}.log").read_text()
    assert out.is_file(), log[-3000:]
    summary = json.loads((out.parent / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 400
    assert summary["resumed_from_step"] and summary["resumed_from_step"] > 0, log[-3000:]
    block = cluster.jobs().split(f"JobId={second} ")[1].split("JobId=")[0]
    assert "JobState=COMPLETED" in block and "TimeLimit=00:10:00" in block

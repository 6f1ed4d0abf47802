"""The tiny workflow on a real one-node SLURM cluster through profiles/slurm."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests import slurm
from tests.conftest import REPO, run_snakemake, tiny_config, write_config

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture
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

"""benchmarks/stage_costs.py: measured costs per stage and their linear scaling, on benchmark
files made here."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from pipeline.config import validate_config
from tests.conftest import load_benchmark


def stage_costs() -> ModuleType:
    return load_benchmark("stage_costs")


def _config(tmp_path: Path, subjects: int, actions: int) -> dict:
    names = [f"s{i:03d}" for i in range(subjects)]
    return validate_config({
        "results": str(tmp_path / "results"),
        "data": {"root": str(tmp_path / "data"), "dataset": "d", "subjects": names,
                 "test_subjects": names[-1:]},
        "synthesize": {"n_actions": actions, "n_views": 2, "width": 100, "height": 80}})


def _bench(path: Path, seconds: float, rss: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t{rss}\n")


def test_measured_costs_and_linear_estimate(tmp_path: Path) -> None:
    module = stage_costs()
    config = _config(tmp_path, subjects=2, actions=1)  # 4 photos, 1 test subject
    target = _config(tmp_path, subjects=4, actions=3)  # 24 photos: × 6
    bench = tmp_path / "results/d/benchmarks"
    _bench(bench / "preprocess/s000.tsv", 1800, 300)
    _bench(bench / "preprocess/s001.tsv", 1800, 500)
    _bench(bench / "ablation/preprocess/s000.tsv", 9999, 9999)  # an experiment's: not counted
    _bench(bench / "train.tsv", 3600, 700)
    for folder in ("crop", "overlay"):  # two of the stage's output folders
        (tmp_path / "results/d" / folder).mkdir(parents=True)
        (tmp_path / "results/d" / folder / "a.png").write_bytes(b"x" * 1_000_000)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")
            for line in module.stage_table(config, target).splitlines()[2:]}
    assert set(rows) == {"preprocess", "train", "**all**"}
    preprocess = rows["preprocess"]
    assert preprocess[1:7] == ["2", "1.000", "1800", "-", "500", "0.002"]
    assert preprocess[7:10] == ["× 6.0", "6.0", "0.01"]
    assert rows["train"][8:11] == ["not scaled", "not scaled", "yes |"]
    assert rows["**all**"][2] == "2.00"


def test_startup_share_from_the_job_logs(tmp_path: Path) -> None:
    module = stage_costs()
    config = _config(tmp_path, subjects=2, actions=1)
    bench, logs = tmp_path / "results/d/benchmarks", tmp_path / "logs/d"
    line = "2026-12-05 05:00:00,000 INFO pipeline.progress: startup: {} s from process start to {}"
    _bench(bench / "preprocess/s000.tsv", 20, 300)
    _bench(bench / "preprocess/s001.tsv", 20, 300)
    _bench(bench / "train.tsv", 100, 700)
    (logs / "preprocess").mkdir(parents=True)
    (logs / "preprocess/s000.log").write_text(
        line.format("1.50", "the stage 'preprocess' (its module imported)") + "\n"
        + line.format("4.00", "the first view of detect s000/act00") + "\n"
        + line.format("9.00", "the first view of mask s000/act00") + "\n")
    (logs / "train.log").write_text(line.format("10.00", "the stage 'train' (its module "
                                                          "imported)") + "\n")
    assert module.startup_seconds(logs / "preprocess/s000.log") == (1.5, 4.0)  # import, work
    assert module.startup_seconds(logs / "train.log") == (10.0, 10.0)  # no work logged
    assert module.startup_seconds(logs / "preprocess/s001.log") is None  # no log
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")
            for line in module.stage_table(config, None).splitlines()[2:]}
    assert rows["preprocess"][4] == "8-20 % (1 of 2 jobs)"  # 1.5 and 4 s of s000's 20
    assert rows["train"][4] == "10-10 % (1 of 1 jobs)"
    assert rows["**all**"][4] == "10-12 % (2 of 3 jobs)"  # 11.5 and 14 s of 120

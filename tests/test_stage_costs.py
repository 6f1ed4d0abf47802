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
    _bench(bench / "detect/s000/act00.tsv", 1800, 300)
    _bench(bench / "detect/s001/act00.tsv", 1800, 500)
    _bench(bench / "ablation/detect/s000.tsv", 9999, 9999)  # an experiment's: not counted
    _bench(bench / "train.tsv", 3600, 700)
    (tmp_path / "results/d/crop").mkdir(parents=True)
    (tmp_path / "results/d/crop/a.png").write_bytes(b"x" * 2_000_000)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")
            for line in module.stage_table(config, target).splitlines()[2:]}
    assert set(rows) == {"detect", "train", "**all**"}
    detect = rows["detect"]
    assert detect[1:6] == ["2", "1.000", "1800", "500", "0.002"]
    assert detect[6:9] == ["× 6.0", "6.0", "0.01"]
    assert rows["train"][7:10] == ["not scaled", "not scaled", "yes |"]
    assert rows["**all**"][2] == "2.00"

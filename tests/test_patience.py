"""benchmarks/patience.py: validation curves replayed under a patience, as the trainer stops,
on train.json files made here."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from tests.conftest import load_benchmark

METRIC = "val/sdf_l1_near_cm"


def patience() -> ModuleType:
    return load_benchmark("patience")


def _summary(path: Path, values: list[float], *, stopped_at: int | None = None,
             kind: str = "pixel2isdf", keep: str = "best", steps: int = 500) -> None:
    history = [{"step": 50 * (i + 1), METRIC: v} for i, v in enumerate(values)]
    history.insert(0, {"step": 10, "loss/total": 1.0})  # training rows carry no metric
    path.mkdir(parents=True)
    (path / "train.json").write_text(json.dumps({
        "kind": kind, "steps": steps, "stopped_at": stopped_at, "history": history,
        "selected": {"keep": keep, "metric": METRIC, "mode": "min", "step": 50}}))


def test_replay_stops_after_patience_validations_without_a_better_one() -> None:
    bench = patience()
    curve = bench.Curve("c", 500, "min", [(50, 2.0), (100, 1.5), (150, 1.6), (200, 1.4),
                                          (250, 1.7), (300, 1.8), (350, 1.9), (400, 1.0)])
    assert bench.replay(curve, None) == (400, 1.0, 500)  # the whole budget: the minimum
    assert bench.replay(curve, 1) == (100, 1.5, 150)
    assert bench.replay(curve, 2) == (200, 1.4, 300)
    assert bench.replay(curve, 3) == (200, 1.4, 350)
    assert bench.replay(curve, 4) == (400, 1.0, 500)  # never 4 in a row: trains every step


def test_replay_keeps_the_earlier_of_equal_values_and_follows_the_mode() -> None:
    bench = patience()
    assert bench.replay(bench.Curve("c", 200, "min", [(50, 1.0), (100, 1.0), (150, 0.5)]),
                        None)[0] == 150
    assert bench.replay(bench.Curve("c", 200, "min", [(50, 1.0), (100, 1.0), (150, 2.0)]),
                        None)[0] == 50
    iou = bench.Curve("c", 200, "max", [(50, 0.5), (100, 0.7), (150, 0.6), (200, 0.65)])
    assert bench.replay(iou, 2) == (100, 0.7, 200)


def test_read_curves_takes_only_finished_full_budget_keep_best_runs(tmp_path: Path) -> None:
    _summary(tmp_path / "full", [2.0, 1.5, 1.7])
    _summary(tmp_path / "stopped", [2.0, 1.5, 1.7, 1.8], stopped_at=200)
    _summary(tmp_path / "last", [2.0, 1.5, 1.7], keep="last")
    _summary(tmp_path / "short", [2.0, 1.5])
    _summary(tmp_path / "normals", [30.0, 28.0, 27.0], kind="normal_net")
    curves, skipped = patience().read_curves(tmp_path)
    assert [c.name for c in curves] == ["full"]
    assert curves[0].values == [(50, 2.0), (100, 1.5), (150, 1.7)]
    assert sorted(s.split(" ")[0] for s in skipped) == ["last", "short", "stopped"]


def test_table_picks_the_smallest_patience_within_the_tolerance() -> None:
    bench = patience()
    # patience 1 keeps step 100 (1.5 against the minimum 1.0: +50 %); 2 reaches step 300
    curves = [bench.Curve("c", 500, "min", [(50, 2.0), (100, 1.5), (150, 1.6), (200, 1.0),
                                            (250, 1.2), (300, 1.3)])]
    text, chosen = bench.table(curves, [1, 2, 3])
    assert chosen == 2
    assert "| 1 | 0/1 | +50.0 % (+0.500)" in text and "| 2 | 1/1 | +0.0 %" in text

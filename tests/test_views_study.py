"""The views study (pipeline/views_study.py) and the view selection it relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.views_study import count_name, parse_model, table
from tests.study_fakes import write_report


def test_parse_model() -> None:
    assert parse_model("views/one_action-4") == (("one_action", "4"), 0)
    assert parse_model("views/across-all") == (("across", "all"), 0)
    assert count_name(None) == "all" and count_name(8) == "8"
    for bad in ("views/both-4", "views/across-x", "ablation/full/seed1", "views"):
        with pytest.raises(PipelineError, match="not a views-study run"):
            parse_model(bad)


def test_table_grid_and_details(tmp_path: Path) -> None:
    reports = []
    for selection, views in (("one_action", {"1": 1, "4": 4, "all": 8}),
                             ("across", {"1": 1, "4": 4, "all": 32})):
        for count, n in views.items():
            chamfer = 20.0 / n + (1.0 if selection == "one_action" else 0.0)
            reports.append(write_report(tmp_path, f"views/{selection}-{count}", "s003",
                                        chamfer, n_views=n))
    out = {"csv_output": tmp_path / "v.csv", "markdown": tmp_path / "v.md",
           "html_output": tmp_path / "v.html"}
    summary = table(reports=reports[::-1], params={"seed": 7}, **out)
    assert summary["across-all"] == pytest.approx(20.0 / 32)
    text = out["markdown"].read_text()
    assert "| views | Chamfer (cm), one action | Chamfer (cm), across actions |" in text
    grid = [ln for ln in text.splitlines() if ln.startswith("| ") and "Chamfer" not in ln]
    assert grid[:3] == ["| 1 | 21.00 (1 views) | 20.00 (1 views) |",
                        "| 4 | 6.00 (4 views) | 5.00 (4 views) |",
                        "| all | 3.50 (8 views) | 0.62 (32 views) |"]
    assert "drawn with seed 7" in text
    csv_lines = out["csv_output"].read_text().splitlines()
    assert csv_lines[0].startswith("selection,count,seed,")
    assert csv_lines[1].startswith("one_action,1,0,s003,1,True,21,")

"""pipeline/assess.py: the five stages after a reconstruction in one process, in order, with
the files each writes alone (end to end: tests/test_workflow.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline import assess
from pipeline.cli import build_parser
from pipeline.errors import PipelineError

PARAMS = {s: {"seed": 1, "name": s} for s in assess.SECTIONS}


def _paths(tmp_path: Path) -> dict[str, Path]:
    names = ("mesh", "recon", "cache", "fit", "fit_report", "selfcheck", "reposed", "overlays",
             "coloured", "body_coloured", "colour_report", "colour_figure", "avatar")
    return {name: tmp_path / name for name in names}


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """Each stage's run function replaced by a recorder of its arguments."""
    made: list[tuple[str, dict[str, Any]]] = []
    stages = {"evaluate": (assess.evaluate_stage, "run"), "render": (assess.report_stage, "render"),
              "selfcheck": (assess.selfcheck_stage, "run"),
              "colour": (assess.colour_stage, "run"), "export": (assess.export_stage, "run")}
    for name, (module, attr) in stages.items():
        monkeypatch.setattr(module, attr, lambda _n=name, **kw: made.append((_n, kw)))
    return made


def test_with_truth_scores_first_then_the_rest(tmp_path, calls):
    paths = _paths(tmp_path)
    truth = tmp_path / "truth"
    seconds = assess.run(**paths, truth=truth, evaluation=tmp_path / "e.json",
                         render=tmp_path / "r.png", scans="{}", unit_m=0.01, params=PARAMS)
    assert [name for name, _ in calls] == ["evaluate", "render", "selfcheck", "colour", "export"]
    assert list(seconds) == ["evaluate", "render", "selfcheck", "colour", "export"]
    given = dict(calls)
    assert given["evaluate"]["truth"] == truth / "canonical_clothed.ply"
    assert given["evaluate"]["truth_body"] == truth / "canonical_body.ply"
    assert given["evaluate"]["output"] == tmp_path / "e.json"
    assert given["evaluate"]["unit_m"] == 0.01 and given["evaluate"]["params"] == PARAMS["evaluate"]
    assert given["render"]["truth"] == truth / "canonical_clothed.ply"
    assert given["render"]["params"] == PARAMS["report"]
    assert given["selfcheck"]["fit"] == paths["fit_report"]  # the fit's JSON: the body's size
    assert given["colour"]["truth"] == truth and given["colour"]["params"] == PARAMS["colour"]
    # The avatar is the coloured mesh, on the fit's bones.
    assert given["export"]["mesh"] == paths["coloured"] and given["export"]["fit"] == paths["fit"]
    assert given["export"]["params"] == {"fit": PARAMS["fit"], "export": PARAMS["export"]}


def test_without_truth_no_scores(tmp_path, calls):
    assess.run(**_paths(tmp_path), params=PARAMS)
    assert [name for name, _ in calls] == ["selfcheck", "colour", "export"]
    assert dict(calls)["colour"]["truth"] is None


@pytest.mark.parametrize("given", [{"evaluation": "e.json"}, {"render": "r.png"},
                                   {"evaluation": "e.json", "render": "r.png"},
                                   {"truth": "truth", "render": "r.png"}])
def test_scores_need_the_truth_and_both_files(tmp_path, calls, given):
    options = {k: tmp_path / v for k, v in given.items()}
    with pytest.raises(PipelineError, match="--evaluation and --render go together"):
        assess.run(**_paths(tmp_path), **options, params=PARAMS)
    assert calls == []  # refused before any work


def test_cli_options(tmp_path):
    argv = ["assess", "--params", "{}"]
    for name, path in _paths(tmp_path).items():
        argv += ["--" + name.replace("_", "-"), str(path)]
    args = build_parser("assess").parse_args(argv)
    assert args.fit_report == tmp_path / "fit_report" and args.truth is None
    assert args.evaluation is None and args.render is None and args.model == "pixel2isdf"

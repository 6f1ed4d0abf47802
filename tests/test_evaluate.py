"""The evaluate stage (pipeline/evaluate.py): per-subject scores beside the body baselines,
the summary tables, and the bad inputs (truth missing or open, no surface)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline import selfcheck
from pipeline.errors import PipelineError
from pipeline.evaluate import mean_metrics, run, summarize
from pipeline.meshio import write_ply
from pipeline.metrics import SurfaceMetrics
from tests.cache_fakes import BODY_R, CLOTHED_R, build, sphere

PARAMS = {"seed": 4, "n_samples": 4000, "n_iou": 4000, "iou_padding": 0.1, "mvp_samples": 2000}


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fake cache (fitted body: sphere of BODY_R), its truth clothed sphere (CLOTHED_R) and a
    truth naked sphere of BODY_R."""
    root = tmp_path_factory.mktemp("eval")
    cache = build(root / "s", output=root / "cache" / "s.h5")
    truth = root / "s" / "truth"
    write_ply(truth / "canonical_body.ply", *sphere(BODY_R, 4))
    return {"root": root, "cache": cache, "truth": truth}


def _recon(tmp_path: Path, name: str, radius: float | None, split: str = "test") -> dict:
    mesh, report = tmp_path / f"{name}.ply", tmp_path / f"{name}.json"
    if radius is None:
        write_ply(mesh, np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    else:
        write_ply(mesh, *sphere(radius, 4))
    report.write_text(json.dumps({"subject": name, "split": split, "surface": radius is not None,
                                  "n_views": 4}))
    return {"mesh": mesh, "recon": report}


def _evaluate(subject, tmp_path: Path, name: str, radius: float | None, split: str = "test",
              **paths) -> tuple[dict, Path]:
    output = tmp_path / "eval" / f"{name}.json"
    args = {**_recon(tmp_path, name, radius, split),
            "truth": subject["truth"] / "canonical_clothed.ply",
            "truth_body": subject["truth"] / "canonical_body.ply", "cache": subject["cache"],
            **paths}
    return run(**args, output=output, params=PARAMS), output


def test_scores_the_model_and_both_baselines(subject, tmp_path: Path) -> None:
    summary, output = _evaluate(subject, tmp_path, "near", CLOTHED_R - 0.01)
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(summary))
    metrics = written["metrics"]
    assert set(metrics) == {"model", "fitted_body", "truth_body"}
    gap_cm = 100 * (CLOTHED_R - BODY_R)
    assert metrics["model"]["chamfer_cm"] == pytest.approx(1.0, abs=0.3)
    assert metrics["fitted_body"]["chamfer_cm"] == pytest.approx(gap_cm, abs=0.5)
    assert metrics["truth_body"]["chamfer_cm"] == pytest.approx(gap_cm, abs=0.5)
    assert written["beats_fitted_body"] is True and written["split"] == "test"
    assert written["components"] == 1  # the scored mesh's connected components


def test_a_model_worse_than_the_body_is_reported_as_such(subject, tmp_path: Path) -> None:
    summary, _ = _evaluate(subject, tmp_path, "far", CLOTHED_R + 0.15)
    assert summary["metrics"]["model"]["chamfer_cm"] > summary["metrics"]["fitted_body"][
        "chamfer_cm"]
    assert summary["beats_fitted_body"] is False


def test_no_surface_is_reported_not_a_crash(subject, tmp_path: Path) -> None:
    summary, _ = _evaluate(subject, tmp_path, "empty", None)
    model = summary["metrics"]["model"]
    assert model["surface"] is False and model["chamfer_cm"] is None and model["iou"] == 0.0
    assert summary["beats_fitted_body"] is False


@pytest.mark.parametrize("problem", ["missing", "open"])
def test_bad_truth_names_the_file_and_writes_nothing(subject, tmp_path: Path,
                                                     problem: str) -> None:
    truth = tmp_path / "truth.ply"
    if problem == "open":
        v, f = sphere(CLOTHED_R)
        write_ply(truth, v, f[:-3])  # three faces gone: a hole
    closed_only = json.dumps({"open": False})  # data.scans.open: false
    with pytest.raises(PipelineError, match=str(truth)):
        _evaluate(subject, tmp_path, "bad", CLOTHED_R, truth=truth, scans=closed_only)
    assert not (tmp_path / "eval" / "bad.json").exists()


def test_a_truth_scan_with_a_hole_scores_as_its_closed_twin(subject, tmp_path: Path) -> None:
    closed, _ = _evaluate(subject, tmp_path, "closed", CLOTHED_R - 0.01)
    v, f = sphere(CLOTHED_R, 4)
    holed = tmp_path / "holed.ply"
    write_ply(holed, v, f[v[f].mean(axis=1)[:, 2] < 0.95 * CLOTHED_R])  # the crown cut off
    opened, _ = _evaluate(subject, tmp_path, "opened", CLOTHED_R - 0.01, truth=holed)
    assert opened["truth_sign"]["closed"] is False and closed["truth_sign"]["closed"] is True
    # the inside (volume IoU) is the closed twin's; distances see the hole (samples on the
    # model's crown find no truth surface there), so they only grow
    assert opened["metrics"]["model"]["iou"] == pytest.approx(
        closed["metrics"]["model"]["iou"], rel=0.02)
    assert opened["metrics"]["model"]["chamfer_cm"] >= closed["metrics"]["model"]["chamfer_cm"]


def test_without_a_truth_body_its_row_is_left_out(subject, tmp_path: Path) -> None:
    summary, output = _evaluate(subject, tmp_path, "nobody", CLOTHED_R - 0.01,
                                truth_body=tmp_path / "absent.ply")
    assert set(summary["metrics"]) == {"model", "fitted_body"}
    out = tmp_path / "summary"
    summarize(reports=[output], csv_output=out / "metrics.csv", markdown=out / "summary.md",
              html_output=out / "summary.html", params={})
    text = (out / "summary.md").read_text()
    assert "truth naked body" not in text and "baseline: fitted naked body" in text
    assert "MVP CD is the MVP-Human challenge's Chamfer" in text


def _metrics(chamfer: float, surface: bool = True, iou: float = 0.5) -> SurfaceMetrics:
    value = chamfer if surface else math.nan
    return SurfaceMetrics(chamfer_cm=value, p2s_cm=value, s2p_cm=value, normal_consistency=value,
                          fscore_1cm=value, fscore_2cm=value, iou=iou if surface else 0.0,
                          mvp_chamfer_cm=value, n_samples=10, surface=surface)


def test_mean_skips_no_surface_except_for_iou() -> None:
    mean = mean_metrics([_metrics(1.0), _metrics(3.0), _metrics(0.0, surface=False)])
    assert mean.chamfer_cm == pytest.approx(2.0) and mean.surface
    assert mean.iou == pytest.approx(1.0 / 3.0)
    assert not mean_metrics([_metrics(0.0, surface=False)]).surface


def test_summary_tables_per_split(subject, tmp_path: Path) -> None:
    reports = [_evaluate(subject, tmp_path, name, radius, split)[1] for name, radius, split in
               [("t1", CLOTHED_R - 0.01, "test"), ("t2", None, "test"),
                ("r1", CLOTHED_R + 0.15, "train")]]
    out = tmp_path / "summary"
    summarize(reports=reports, csv_output=out / "metrics.csv", markdown=out / "summary.md",
              html_output=out / "summary.html", params={})
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 3 * 3 + 2 * 3  # subjects × meshes, then means per split × meshes
    means = {(r["split"], r["mesh"]): r for r in rows if r["subject"] == "mean"}
    t1 = next(r for r in rows if r["subject"] == "t1" and r["mesh"] == "model")
    assert float(means["test", "model"]["chamfer_cm"]) == pytest.approx(float(t1["chamfer_cm"]))
    assert next(r for r in rows if r["subject"] == "t2" and r["mesh"] == "model")[
        "chamfer_cm"] == ""
    text = (out / "summary.md").read_text()
    assert "- test: pixel2isdf beats the fitted naked body" in text
    assert "1 had no surface" in text
    assert "- train: pixel2isdf **does not beat** the fitted naked body" in text
    assert "t2 (test, 4 views)" in text and "| pixel2isdf (no surface) |" in text
    page = (out / "summary.html").read_text()
    assert page.count("<table>") == 5 and "<td>baseline: truth naked body</td>" in page


def test_summary_lists_a_subject_without_truth(subject, tmp_path: Path) -> None:
    """The truth-free checks of every subject; "no truth" where there is no scan to score."""
    _, scored = _evaluate(subject, tmp_path, "t1", CLOTHED_R - 0.01, "test")
    checks = []
    for name, split in (("t1", "test"), ("p1", "predict")):
        paths = _recon(tmp_path, name, CLOTHED_R - 0.01, split) if name == "p1" else {
            "mesh": tmp_path / "t1.ply", "recon": tmp_path / "t1.json"}
        checks.append(tmp_path / f"{name}.selfcheck.json")
        selfcheck.run(**paths, cache=subject["cache"], output=checks[-1],
                      reposed=tmp_path / "reposed" / name)
    out = tmp_path / "summary"
    summarize(reports=[scored], selfchecks=checks, model="pixel2isdf",
              csv_output=out / "metrics.csv", markdown=out / "summary.md",
              html_output=out / "summary.html", params={})
    text = (out / "summary.md").read_text()
    chamfer = json.loads(scored.read_text())["metrics"]["model"]["chamfer_cm"]
    iou = json.loads(checks[1].read_text())["iou_mean"]
    assert f"| p1 | predict | {iou:.3f} |" in text and text.count("no truth |") == 1
    assert f"{chamfer:.3f} |" in text.split("Quality without truth")[1].split("| p1 |")[0]
    assert "p1" not in (out / "metrics.csv").read_text()

    summarize(selfchecks=checks[1:], model="pixel2isdf", csv_output=out / "only.csv",
              markdown=out / "only.md", html_output=out / "only.html", params={})
    assert "| p1 | predict |" in (out / "only.md").read_text()
    assert len((out / "only.csv").read_text().splitlines()) == 1  # the header: no scores
    with pytest.raises(PipelineError, match="models"):
        summarize(reports=[scored], selfchecks=checks, model="pifu", csv_output=out / "x.csv",
                  markdown=out / "x.md", html_output=out / "x.html", params={})


def test_summary_refuses_a_foreign_json(tmp_path: Path) -> None:
    other = tmp_path / "x.json"
    other.write_text(json.dumps({"subject": "s"}))
    with pytest.raises(PipelineError, match="not an evaluation report"):
        summarize(reports=[other], csv_output=tmp_path / "m.csv", markdown=tmp_path / "m.md",
                  html_output=tmp_path / "m.html", params={})
    assert not (tmp_path / "m.csv").exists()


def test_scores_in_the_data_set_frame(subject, tmp_path: Path) -> None:
    """The meshes written in the data set's frame against its own scan: its rotation file
    applied, its unit converted (centimetres here), the fitted body beside the model."""
    from pipeline.evaluate import dataset_frame_scores
    from pipeline.meshio import write_obj

    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    clothed, faces = sphere(CLOTHED_R, 4)
    body, body_faces = sphere(BODY_R, 4)
    offset = np.array([0.0, 0.9, 0.0])  # the data set's origin is elsewhere
    in_cm = 100.0 * (clothed + offset)
    write_obj(tmp_path / "scan.obj", in_cm @ rotation, faces)  # the file holds Rᵀ x
    np.savetxt(tmp_path / "R0.txt", rotation)
    write_obj(tmp_path / "model.obj", in_cm, faces)
    write_obj(tmp_path / "body.obj", 100.0 * (body + offset), body_faces)
    scores = dataset_frame_scores(mesh=tmp_path / "model.obj", body=tmp_path / "body.obj",
                                  scan=tmp_path / "scan.obj", rotation=tmp_path / "R0.txt",
                                  unit_m=0.01, params=PARAMS)
    assert scores["model"]["chamfer_cm"] < 0.05
    gap_cm = 100.0 * (CLOTHED_R - BODY_R)
    assert scores["fitted_body"]["chamfer_cm"] == pytest.approx(gap_cm, abs=0.5)
    assert scores["fitted_body"]["mvp_chamfer_cm"] >= scores["fitted_body"]["chamfer_cm"]
    unturned = dataset_frame_scores(mesh=tmp_path / "model.obj", body=tmp_path / "body.obj",
                                    scan=tmp_path / "scan.obj", rotation=None, unit_m=0.01,
                                    params=PARAMS)
    assert unturned["model"]["chamfer_cm"] > 10.0  # without its rotation the scan is elsewhere

"""Fit metrics against a truth made in the test (the metrics command's scoring)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.fit import fit_to_files
from pipeline.fit_quality import score_subject, summarise, table
from pipeline.meshio import write_ply
from tests.test_fit import ACTIONS, _truth, model, write_inputs  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def fitted(model, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("quality")
    truth = _truth(model)
    paths = write_inputs(root / "inputs", model, truth)
    truth_dir = root / "truth" / "s000"
    for a, action in enumerate(ACTIONS):
        write_ply(truth_dir / action / "body.ply", truth["vertices"][a], model.faces)
        (truth_dir / action / "body.json").write_text(json.dumps(
            {"keypoints_coco17_3d": truth["keypoints"][a].tolist()}))
    out = root / "fit"
    fit_to_files(subject="s000", manifest=paths["manifest"], crops=paths["crops"],
                 masks=paths["masks"], keypoints=paths["keypoints"], output=out / "s000.npz",
                 report=out / "s000.json", overlays=out / "s000",
                 params={"iterations": {"global": 30, "body": 120, "silhouette": 40}})
    return {"npz": out / "s000.npz", "crops": paths["crops"].parent, "truth": root / "truth",
            "vertices": truth["vertices"]}


def test_scores_match_an_independent_computation(fitted):
    # the scorer expects <crops>/<subject>/<action>/crop.json
    crops_root = fitted["crops"] / "by_subject"
    (crops_root).mkdir(exist_ok=True)
    (crops_root / "s000").symlink_to(fitted["crops"] / "crops")
    rows = score_subject(fitted["npz"], crops_root, fitted["truth"], "s000")
    assert len(rows) == 2 * 4
    with np.load(fitted["npz"]) as fit:
        expected = np.linalg.norm(fit["posed_vertices"] - fitted["vertices"], axis=-1).mean(-1)
    by_action = {r["action"]: r["pve_cm"] for r in rows}
    np.testing.assert_allclose([by_action[a] for a in ACTIONS], expected * 100, rtol=1e-5)
    assert all(0.5 < r["silhouette_iou_truth"] <= 1.0 for r in rows)
    assert all(r["keypoint_error_truth_px"] < 5.0 for r in rows)
    summary = summarise(rows)
    assert summary["actions"] == 2 and summary["pve_cm"]["max"] == pytest.approx(
        max(by_action.values()))
    assert "| default |" in table({"default": summary})

"""The default preprocessing end to end on synthetic photos, scored against their truth:
MediaPipe detection, MediaPipe segmentation matted by pymatting, and MediaPipe keypoints, run
as ``python -m pipeline synthesize/ingest/detect/mask/keypoints --config`` runs them, with
the config's default backends. And :func:`tests.conftest.require`, through which the tests
of a core package skip without it, except under ``CI=true``, where they fail."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.cli import main
from pipeline.imageio import read_gray
from pipeline.preprocess_quality import Scores, score_action
from tests.conftest import CORE_PACKAGES, require

SUBJECT, ACTION = "s000", "act00"
SYNTHETIC = {"n_actions": 1, "n_frames": 1, "n_views": 3, "width": 320, "height": 240,
             "voxel_size": 0.02}
"""One subject, one action, 3 views of 320×240 (the person is ~130 px tall): 12 to 25 s in
all (rendering most of it)."""

# Measured on seed 5 (mediapipe 0.10.21, pymatting 1.1.16): per view box IoU 1.000, 0.955,
# 1.000; matte IoU 0.974, 0.936, 0.973 (0.973, 0.938, 0.971 before matting); keypoints:
# every visible one found, median error 1.8, 2.8, 1.8 px, largest 4.2, 6.2, 4.1 px (PCK@0.1
# 1.0 everywhere; 0.1 × the box's longer side is 13 to 14 px).
MIN_BOX_IOU = 0.85
MIN_MATTE_IOU = 0.88
MAX_MEDIAN_KEYPOINT_PX = 6.0
MIN_PCK_01 = 0.9  # share of the visible keypoints within 0.1 × the truth box's longer side


def _stage(*args: str) -> None:
    """One stage through the CLI, in this process (``--traceback``: errors raise)."""
    assert main(["--traceback", "--log-level", "WARNING", *map(str, args)]) == 0


@pytest.mark.slow
def test_default_preprocessing_matches_the_synthetic_truth(tmp_path: Path) -> None:
    require("mediapipe")
    require("pymatting")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"seed": 5, "synthesize": SYNTHETIC,
                                      "ingest": {"min_views": 2}}))
    photos, truth = tmp_path / "data" / SUBJECT, tmp_path / "data" / "truth"
    results = tmp_path / "results"
    manifest = results / "manifest" / f"{SUBJECT}.json"
    crops = results / "crop" / SUBJECT / ACTION
    masks = results / "mask" / SUBJECT / ACTION
    keypoints = results / "keypoints" / SUBJECT / f"{ACTION}.json"
    _stage("synthesize", "--config", config, "--subject", SUBJECT, "--output", photos,
           "--truth", truth / SUBJECT)
    _stage("ingest", "--config", config, "--subject", SUBJECT, "--data-dir", photos.parent,
           "--output", manifest)
    # The truth the rules pass is only read by the oracle backends: give none to prove it.
    no_truth = tmp_path / "no_truth"
    common = ["--config", config, "--subject", SUBJECT, "--action", ACTION, "--truth", no_truth]
    _stage("detect", *common, "--manifest", manifest, "--output", crops)
    _stage("mask", *common, "--crops", crops, "--output", masks)
    _stage("keypoints", *common, "--crops", crops, "--output", keypoints)
    assert not no_truth.exists()

    detected = json.loads((crops / "crop.json").read_text())
    matted = json.loads((masks / "mask.json").read_text())
    found = json.loads(keypoints.read_text())
    assert (detected["backend"], matted["backend"], matted["matting"], found["backend"]) == (
        "mediapipe", "mediapipe", "pymatting", "mediapipe")  # the config's defaults
    views = json.loads((truth / SUBJECT / ACTION / "views.json").read_text())["views"]
    assert len(views) == SYNTHETIC["n_views"]
    for view in views:
        assert detected["views"][view]["status"] == "ok"
        assert detected["views"][view]["n_persons"] == 1
        assert found["views"][view]["status"] == "ok"

    scores = Scores()  # boxes and mattes as pipeline/preprocess_quality.py scores them
    score_action(scores, results, truth, SUBJECT, ACTION)
    assert not scores.missing and len(scores.box_iou) == len(views)
    measured = {"box IoU": np.round(scores.box_iou, 3).tolist(),
                "matte IoU": np.round(scores.mask_after, 3).tolist(),
                "mask IoU before matting": np.round(scores.mask_before, 3).tolist()}

    medians, pck = [], []
    for view, t in views.items():
        # the matte is pymatting's: soft values at the edge, not the thresholded mask
        alpha = read_gray(masks / f"{view}.png")
        assert ((alpha > 0) & (alpha < 255)).sum() > 0, view
        truth_points = np.asarray(t["keypoints_coco17"], dtype=np.float64)
        points = np.asarray(found["views"][view]["coco17_image"], dtype=np.float64)
        visible = truth_points[:, 2] > 0
        assert visible.sum() >= 8, view
        assert (points[visible, 2] > 0).all(), view  # every visible keypoint found
        error = np.hypot(*(points[visible, :2] - truth_points[visible, :2]).T)
        x0, y0, x1, y1 = t["box_xyxy"]
        medians.append(float(np.median(error)))
        pck.append(float(np.mean(error <= 0.1 * max(x1 - x0, y1 - y0))))
    measured |= {"keypoint median error px": np.round(medians, 2).tolist(), "PCK@0.1": pck}
    print(f"measured: {measured}", file=sys.stderr)
    assert min(scores.box_iou) > MIN_BOX_IOU, measured
    assert min(scores.mask_after) > MIN_MATTE_IOU, measured
    assert max(medians) < MAX_MEDIAN_KEYPOINT_PX, measured
    assert min(pck) >= MIN_PCK_01, measured


# --- tests.conftest.require ----------------------------------------------------------------

MISSING = "pixel2isdf_no_such_module"


def test_require_skips_a_missing_module_outside_ci(monkeypatch) -> None:
    for value in (None, "false", "1"):  # only CI=true is CI
        if value is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.skip.Exception, match=MISSING):
            require(MISSING)


def test_require_fails_for_a_missing_module_under_ci(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=rf"{MISSING} cannot be imported .*CI=true"):
        require(MISSING)


@pytest.mark.parametrize("ci", [None, "true"])
def test_require_returns_an_installed_module(monkeypatch, ci) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert require("json") is json


def test_core_packages_are_the_defaults_dependencies() -> None:
    """The packages require() is for are dependencies of the package (pyproject.toml), not
    optional extras: ``pip install -e .`` brings them."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower() for d in dependencies}
    assert set(CORE_PACKAGES) <= names

"""Keypoints stage: coordinates in crop and photo pixels, file backends, person choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.backends import PersonKeypoints
from pipeline.crop import CropBox
from pipeline.keypoints import KeypointParams, best_person, keypoints_action, map_points


@pytest.fixture
def crops(oracle_crops):
    return oracle_crops


def _truth(subject, view):
    views = json.loads((subject["truth"] / "act00" / "views.json").read_text())["views"]
    return np.asarray(views[view]["keypoints_coco17"])


def test_map_points_keeps_missing_points_zero():
    pts = np.array([[10.0, 20.0, 0.9], [5.0, 5.0, 0.0]])
    out = map_points(pts, lambda uv: uv * 2)
    np.testing.assert_allclose(out, [[20.0, 40.0, 0.9], [0.0, 0.0, 0.0]])


def test_best_person():
    def person(score):
        return PersonKeypoints(np.zeros((17, 3)), np.zeros((25, 3)), score)
    a, b = person(0.4), person(0.8)
    assert best_person([a, b]) is b and best_person([]) is None


def test_oracle_keypoints_round_trip(synthetic_subject, crops, tmp_path):
    out = tmp_path / "act00.json"
    result = keypoints_action(subject="s000", crops=crops, action="act00",
                              truth=synthetic_subject["truth"], output=out,
                              params=KeypointParams("oracle", {}))
    assert result["oracle"] is True and json.loads(out.read_text()) == result
    record = result["views"]["cam2"]
    truth = _truth(synthetic_subject, "cam2")
    np.testing.assert_allclose(record["coco17_image"], map_points(truth, lambda uv: uv), atol=1e-3)
    crop_json = json.loads((crops / "crop.json").read_text())
    crop = CropBox.from_dict(crop_json["views"]["cam2"]["crop"])
    np.testing.assert_allclose(record["coco17"], map_points(truth, crop.to_crop), atol=2e-3)
    assert np.asarray(record["body25"]).shape == (25, 3)


def test_openpose_json_files_are_imported(synthetic_subject, crops, tmp_path):
    # The synthetic truth is laid out as OpenPose writes:
    # <root>/<subject>/<action>/<view>_keypoints.json
    root = synthetic_subject["truth"].parent
    result = keypoints_action(subject="s000", crops=crops, action="act00",
                              truth=synthetic_subject["truth"], output=tmp_path / "k.json",
                              params=KeypointParams("openpose_json", {"root": str(root)}))
    assert result["oracle"] is False
    record = result["views"]["cam0"]
    truth = _truth(synthetic_subject, "cam0")
    seen = truth[:, 2] > 0
    np.testing.assert_allclose(np.asarray(record["coco17_image"])[seen, :2], truth[seen, :2],
                               atol=1e-3)

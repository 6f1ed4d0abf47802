"""Detect stage: person choice, crops with zero padding, cameras, no-person policy, oracle."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from pipeline import backends
from pipeline.backends import Detection
from pipeline.camera import Camera
from pipeline.crop import CropBox, box_iou
from pipeline.detect import DetectParams, detect_action, pick_person
from pipeline.errors import PipelineError


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setitem(backends.REGISTRY["detect"], "fake", "tests.fakes:make_detector")


def params(backend="oracle", on_no_person="fail", **options):
    return DetectParams(backend=backend, crop_size=128, margin=0.1, on_no_person=on_no_person,
                        min_score=0.3, options=options)


def run(subject, out, p):
    return detect_action(manifest=subject["manifest"], action="act00", truth=subject["truth"],
                         output=out, params=p)


def test_pick_person_most_confident_then_largest():
    small = Detection(np.array([0, 0, 10, 10.0]), 0.9)
    large = Detection(np.array([0, 0, 50, 50.0]), 0.9)
    weak = Detection(np.array([0, 0, 90, 90.0]), 0.2)
    assert pick_person([small, weak, large], 0.3) == (large, 2)
    assert pick_person([weak], 0.3) == (None, 0)


def test_oracle_crops_match_truth_and_cameras(synthetic_subject, tmp_path):
    out = tmp_path / "crop"
    result = run(synthetic_subject, out, params())
    assert result["oracle"] is True and result["backend"] == "oracle"
    truth = json.loads((synthetic_subject["truth"] / "act00" / "views.json").read_text())["views"]
    for view, record in result["views"].items():
        assert record["status"] == "ok"
        assert box_iou(np.array(record["box_xyxy"]), np.array(truth[view]["box_xyxy"])) == 1.0
        with Image.open(out / f"{view}.png") as image:
            assert image.size == (128, 128)
            assert image.text["pixel2isdf:oracle"] == "true"
        # The cropped camera projects the 3D keypoints where the crop map puts the 2D ones.
        body = json.loads((synthetic_subject["truth"] / "act00" / "body.json").read_text())
        cam = Camera.from_dict(record["camera"])
        kp3 = np.asarray(body["keypoints_coco17_3d"])
        crop = CropBox.from_dict(record["crop"])
        uv_photo = np.asarray(truth[view]["keypoints_coco17"])[:, :2]
        np.testing.assert_allclose(cam.project(kp3)[0], crop.to_crop(uv_photo), atol=2e-3)
    assert json.loads((out / "crop.json").read_text()) == result


def test_several_persons_keeps_most_confident(synthetic_subject, tmp_path, fake_backend, caplog):
    boxes = [([10, 10, 60, 170], 0.5), ([100, 20, 180, 175], 0.95)]
    with caplog.at_level(logging.INFO):
        result = run(synthetic_subject, tmp_path / "c", params("fake", boxes=boxes))
    record = result["views"]["cam0"]
    assert record["box_xyxy"] == [100, 20, 180, 175] and record["n_persons"] == 2
    assert "2 persons; kept the most confident" in caplog.text
    assert result["oracle"] is False


def test_person_cut_by_border_is_zero_padded(synthetic_subject, tmp_path, fake_backend):
    result = run(synthetic_subject, tmp_path / "c", params("fake", boxes=[([0, 30, 40, 170], 1)]))
    crop = CropBox.from_dict(result["views"]["cam1"]["crop"])
    assert crop.x0 < 0
    pixels = np.asarray(Image.open(tmp_path / "c" / "cam1.png"))
    left = int(crop.to_crop(np.array([[-0.5, 0.0]]))[0, 0])
    assert left > 5 and (pixels[:, : left - 1] == 0).all() and pixels[:, left + 2 :].any()


def test_no_person_fail_names_view_and_leaves_nothing(synthetic_subject, tmp_path, fake_backend):
    p = params("fake", boxes=[([20, 20, 120, 170], 0.9)], empty_calls=[2])
    with pytest.raises(PipelineError, match=r"no person found in view\(s\) \['cam1'\]"):
        run(synthetic_subject, tmp_path / "c", p)
    assert not (tmp_path / "c").exists()


def test_no_person_skip_records_status(synthetic_subject, tmp_path, fake_backend):
    p = params("fake", on_no_person="skip", boxes=[([20, 20, 120, 170], 0.9)], empty_calls=[2])
    result = run(synthetic_subject, tmp_path / "c", p)
    assert result["views"]["cam1"] == {"status": "no_person", "n_persons": 0}
    assert not (tmp_path / "c" / "cam1.png").exists()
    assert (tmp_path / "c" / "cam0.png").exists()


def test_blank_action_fails_even_when_skipping(synthetic_subject, tmp_path, fake_backend):
    p = params("fake", on_no_person="skip", boxes=[([20, 20, 120, 170], 0.9)],
               empty_calls=[1, 2, 3])
    with pytest.raises(PipelineError, match="no person found in any view"):
        run(synthetic_subject, tmp_path / "c", p)


def test_unknown_backend_is_named(synthetic_subject, tmp_path):
    with pytest.raises(PipelineError, match="unknown detect backend 'nope'"):
        run(synthetic_subject, tmp_path / "c", params("nope"))

"""MediaPipe Pose backends: landmark mapping, person box, and the three backends on a tiny
synthetic person (truth known) and on a real photo (skimage's astronaut)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.backends import BackendUnavailable, make_backend
from pipeline.crop import box_iou, mask_box, square_box
from pipeline.skeleton import BODY25, COCO17
from tests.conftest import require

mp_pose = require("pipeline.backends.mediapipe_pose")
require("mediapipe")  # a core package: missing, it fails under CI=true instead of skipping

SWAP_LR = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


# --- pure functions -------------------------------------------------------------------------

def test_mapping_names_agree():
    for j, index in enumerate(mp_pose.COCO17_FROM_MEDIAPIPE33):
        assert mp_pose.MEDIAPIPE33[index] == COCO17[j]
    feet = {"left_big_toe": "left_foot_index", "left_heel": "left_heel",
            "right_big_toe": "right_foot_index", "right_heel": "right_heel"}
    for j, index in enumerate(mp_pose.FEET_FROM_MEDIAPIPE33):
        name = BODY25[19 + j]
        assert (index is None) == name.endswith("small_toe")
        if index is not None:
            assert mp_pose.MEDIAPIPE33[index] == feet[name]


def test_mediapipe33_to_coco17_and_body25():
    landmarks = np.array([[10.0 + i, 200.0 - i, 0.5 + i / 100] for i in range(33)])
    landmarks[25, 2] = 0.0  # left knee not seen
    coco = mp_pose.mediapipe33_to_coco17(landmarks)
    assert coco.shape == (17, 3)
    np.testing.assert_allclose(coco[0], landmarks[0])                     # nose
    np.testing.assert_allclose(coco[COCO17.index("left_eye")], landmarks[2])
    np.testing.assert_allclose(coco[COCO17.index("right_wrist")], landmarks[16])
    np.testing.assert_allclose(coco[COCO17.index("right_ankle")], landmarks[28])
    assert np.all(coco[COCO17.index("left_knee")] == 0)                   # missing → 0, 0, 0

    body = mp_pose.mediapipe33_to_body25(landmarks)
    assert body.shape == (25, 3)
    np.testing.assert_allclose(body[BODY25.index("neck")][:2], (landmarks[11, :2]
                                                                + landmarks[12, :2]) / 2)
    np.testing.assert_allclose(body[BODY25.index("left_big_toe")], landmarks[31])
    np.testing.assert_allclose(body[BODY25.index("right_heel")], landmarks[30])
    assert np.all(body[BODY25.index("left_small_toe")] == 0)
    assert np.all(body[BODY25.index("right_small_toe")] == 0)
    with pytest.raises(ValueError, match=r"\(33, 3\)"):
        mp_pose.mediapipe33_to_coco17(np.zeros((17, 3)))


def test_options():
    assert mp_pose.PoseOptions.from_mapping({}) == mp_pose.PoseOptions(1, 0.5, 0.5)
    with pytest.raises(ValueError, match="model_complexity"):
        mp_pose.PoseOptions.from_mapping({"model_complexity": 2})
    with pytest.raises(ValueError, match="unknown"):
        mp_pose.PoseOptions.from_mapping({"complexity": 1})
    with pytest.raises(ValueError, match="mask_threshold"):
        mp_pose.PoseOptions.from_mapping({"mask_threshold": 1.0})


def test_person_box_keeps_the_component_holding_landmarks():
    mask = np.zeros((100, 120), np.float32)
    mask[20:80, 30:50] = 0.9     # the person
    mask[10:30, 90:110] = 0.8    # something else
    landmarks = np.zeros((33, 3))
    landmarks[:, :2] = [40, 50]
    landmarks[:, 2] = 0.9
    landmarks[15] = [55, 40, 0.9]      # a hand just outside the mask
    landmarks[16] = [100, 20, 0.1]     # not visible: ignored
    landmarks[31] = [500, 50, 1.0]     # outside the image: ignored
    np.testing.assert_array_equal(mp_pose.person_box(landmarks, mask, 0.5), [30, 20, 55, 79])
    assert mp_pose.person_box(np.zeros((33, 3)), np.zeros((10, 10)), 0.5) is None


def test_tiles_cover_with_half_overlap():
    assert mp_pose._tiles(100, 100) == [0]
    starts = mp_pose._tiles(960, 270)
    assert starts[0] == 0 and starts[-1] == 960 - 270
    assert max(np.diff(starts)) <= 135


def test_missing_mediapipe_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(BackendUnavailable, match=r"pip install mediapipe==0\.10\.21"):
        mp_pose.make_detector({})


# --- on images ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def person(tmp_path_factory):
    """A tiny synthetic subject: 3 views (320×240) of one clothed person, with truth."""
    from pipeline.config import stage_params, validate_config
    from pipeline.synthesize.stage import SynthParams, synthesize_subject

    config = validate_config({"seed": 5, "synthesize": {
        "n_actions": 1, "n_frames": 1, "n_views": 3, "width": 320, "height": 240,
        "voxel_size": 0.02}})
    root = tmp_path_factory.mktemp("mp_person")
    synthesize_subject(subject="s000", photos_dir=root / "s000", truth_dir=root / "truth" / "s000",
                       params=SynthParams.from_params(stage_params(config, "synthesize")))
    views = json.loads((root / "truth/s000/act00/views.json").read_text())["views"]
    out = []
    for view in sorted(views):
        photo = np.asarray(Image.open(root / "s000/act00" / f"{view}.jpg").convert("RGB"))
        mask = np.asarray(Image.open(root / "truth/s000/act00" / f"{view}_mask.png")) > 127
        out.append((photo, mask, np.asarray(views[view]["keypoints_coco17"], dtype=float)))
    return out


@pytest.fixture(scope="module")
def detector():
    with mp_pose.make_detector({}) as backend:
        yield backend


@pytest.fixture(scope="module")
def segmenter():
    with make_backend("mask", "mediapipe", {}) as backend:
        yield backend


@pytest.fixture(scope="module")
def keypointer():
    with make_backend("keypoints", "mediapipe", {"model_complexity": 1}) as backend:
        yield backend


def _crop(photo, mask, size=256):
    crop = square_box(mask_box(mask), 0.1, size)
    return crop, crop.cut(photo), crop.cut((mask * 255).astype(np.uint8), "bilinear") > 127


def test_detector_box_matches_the_truth(detector, person):
    for photo, mask, _ in person:
        found = detector.detect(photo)
        assert len(found) == 1
        assert box_iou(found[0].box_xyxy, mask_box(mask)) >= 0.85
        assert 0.3 <= found[0].score <= 1.0
    again = detector.detect(person[0][0])                         # deterministic
    np.testing.assert_array_equal(again[0].box_xyxy, detector.detect(person[0][0])[0].box_xyxy)


def test_detector_finds_a_small_person_in_a_large_photo(detector, person):
    photo, mask, _ = person[0]
    canvas = np.full((720, 960, 3), 110, np.uint8)
    canvas[400:640, 600:920] = photo          # the person is under a fifth of the height
    found = detector.detect(canvas)
    assert len(found) == 1
    assert box_iou(found[0].box_xyxy, mask_box(mask) + np.array([600, 400, 600, 400])) >= 0.85


def test_detector_on_a_real_photo(detector):
    from skimage.data import astronaut

    found = detector.detect(astronaut())
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].box_xyxy
    assert x0 <= 180 and y0 <= 40 and x1 >= 280 and y1 >= 400   # face and upper body
    assert (x1 - x0) * (y1 - y0) <= 0.9 * 512 * 512
    assert found[0].score >= 0.3


def test_no_person(detector, segmenter, keypointer):
    blank = np.full((240, 320, 3), 90, np.uint8)
    assert detector.detect(blank) == []
    mask = segmenter.segment(blank)
    assert mask.shape == (240, 320) and mask.dtype == np.float32 and not mask.any()
    assert keypointer.keypoints(blank) == []


def test_segmentation_of_the_synthetic_person(segmenter, person):
    for photo, mask, _ in person:
        _, image, truth = _crop(photo, mask)
        prob = segmenter.segment(image)
        assert prob.shape == (256, 256) and prob.dtype == np.float32
        assert prob.min() >= 0.0 and prob.max() <= 1.0
        found = prob > 0.5
        assert (found & truth).sum() / (found | truth).sum() >= 0.9


def test_keypoints_of_the_synthetic_person(keypointer, person):
    for photo, mask, truth in person:
        crop, image, _ = _crop(photo, mask)
        people = keypointer.keypoints(image)
        assert len(people) == 1
        kp = people[0]
        assert kp.coco17.shape == (17, 3) and kp.body25.shape == (25, 3)
        assert kp.extra["mediapipe33"].shape == (33, 3)
        assert np.all((kp.coco17[:, 2] >= 0) & (kp.coco17[:, 2] <= 1))
        visible = truth[:, 2] > 0
        xy = crop.to_crop(truth[:, :2])
        box = crop.box_to_crop(mask_box(mask))
        tolerance = 0.1 * max(box[2] - box[0], box[3] - box[1])
        hits = np.hypot(*(kp.coco17[:, :2] - xy).T) <= tolerance
        swapped = np.hypot(*(kp.coco17[SWAP_LR, :2] - xy).T) <= tolerance
        assert hits[visible].mean() >= 0.8                        # PCK@0.1
        assert hits[visible].sum() > swapped[visible].sum()       # left is the person's left


def test_lite_model_missing_is_unavailable():
    import mediapipe

    lite = mp_pose.landmark_model_path(Path(mediapipe.__file__).parent, 0)
    assert lite.name == "pose_landmark_lite.tflite"
    if lite.is_file():
        pytest.skip("the lite model is installed here")
    with pytest.raises(BackendUnavailable, match="model_complexity 1"):
        mp_pose.make_keypoint_detector({"model_complexity": 0})
    assert not lite.exists()          # nothing was downloaded


def test_closed_backend_refuses_work(person):
    backend = mp_pose.make_segmenter({"model_complexity": 1})
    photo = person[0][0]
    assert backend.segment(photo).shape == photo.shape[:2]
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(RuntimeError, match="close"):
        backend.segment(photo)


def test_shared_graph_runs_one_pose_pass_per_crop(person, keypointer):
    segmenter = mp_pose.make_segmenter({"model_complexity": 1})
    sharing = mp_pose.make_keypoint_detector({})
    assert sharing.share(segmenter) and sharing._pose is segmenter._pose
    assert not mp_pose.make_keypoint_detector({"mask_threshold": 0.4}).share(segmenter)
    passes = []
    process = segmenter._pose.process
    segmenter._pose.process = lambda *a, **k: passes.append(1) or process(*a, **k)
    _, image, _ = _crop(*person[0][:2])
    mask = segmenter.segment(image)
    first = len(passes)
    people = sharing.keypoints(image)
    assert first >= 1 and len(passes) == first  # the keypoints reused the mask's pass
    alone = keypointer.keypoints(image)  # its own graph: the same answer
    np.testing.assert_array_equal(people[0].coco17, alone[0].coco17)
    np.testing.assert_array_equal(mask, segmenter.segment(image.copy()))
    assert len(passes) == first  # the same pixels in another array: remembered too
    segmenter.segment(image[::-1].copy())
    assert len(passes) > first  # other pixels: a new pass
    with pytest.raises(ValueError, match="read-only"):
        mask[0, 0] = 1.0
    segmenter.close()
    sharing.close()  # the shared graph closes once

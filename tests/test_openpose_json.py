"""OpenPose's own keypoint files: BODY_25, COCO-18, hands / face groups, file lookup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.backends.openpose_json import (
    OPENPOSE_COCO18,
    body25_to_coco17,
    coco18_to_body25,
    find_openpose_file,
    read_openpose_people,
)
from pipeline.errors import PipelineError
from pipeline.skeleton import BODY25, COCO17, coco17_to_body25, write_openpose


def _points(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = np.column_stack([rng.uniform(0, 200, n), rng.uniform(0, 100, n),
                              rng.uniform(0.1, 1.0, n)])
    return np.round(points, 3)


def _write(path: Path, people: list[dict]) -> Path:
    path.write_text(json.dumps({"version": 1.3, "people": people}))
    return path


def _flat(points: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(points).reshape(-1)]


def test_body25_file_round_trip(tmp_path):
    body = _points(25, 0)
    body[BODY25.index("left_ear")] = 0.0  # missing
    write_openpose(tmp_path / "cam0_keypoints.json", [body, _points(25, 1)])
    people = read_openpose_people(tmp_path / "cam0_keypoints.json")
    assert len(people) == 2
    np.testing.assert_allclose(people[0].body25, body)
    for j, name in enumerate(COCO17):
        np.testing.assert_allclose(people[0].coco17[j], body[BODY25.index(name)])
    assert people[0].coco17.shape == (17, 3)
    assert np.all(people[0].coco17[COCO17.index("left_ear")] == 0)
    detected = body[body[:, 2] > 0, 2]
    assert people[0].score == pytest.approx(detected.mean())
    assert people[0].extra == {}


def test_coco18_keeps_openpose_neck_and_builds_mid_hip(tmp_path):
    coco18 = _points(18, 2)
    coco18[OPENPOSE_COCO18.index("right_ankle")] = 0.0
    _write(tmp_path / "a_keypoints.json", [{"pose_keypoints_2d": _flat(coco18)}])
    (person,) = read_openpose_people(tmp_path / "a_keypoints.json")
    for j, name in enumerate(OPENPOSE_COCO18):
        np.testing.assert_allclose(person.body25[BODY25.index(name)], coco18[j])
    r, left = coco18[OPENPOSE_COCO18.index("right_hip")], coco18[OPENPOSE_COCO18.index("left_hip")]
    np.testing.assert_allclose(person.body25[BODY25.index("mid_hip")],
                               [(r[0] + left[0]) / 2, (r[1] + left[1]) / 2, min(r[2], left[2])])
    assert np.all(person.body25[19:] == 0)  # no feet in COCO
    for j, name in enumerate(COCO17):
        np.testing.assert_allclose(person.coco17[j], coco18[OPENPOSE_COCO18.index(name)])
    assert np.all(person.coco17[COCO17.index("right_ankle")] == 0)


def test_coco18_mid_hip_missing_when_a_hip_is():
    coco18 = _points(18, 3)
    coco18[OPENPOSE_COCO18.index("left_hip")] = 0.0
    assert np.all(coco18_to_body25(coco18)[BODY25.index("mid_hip")] == 0)


def test_body25_coco17_round_trip_through_skeleton():
    coco = _points(17, 4)
    back = body25_to_coco17(coco17_to_body25(coco))
    np.testing.assert_allclose(back, coco)


def test_hands_and_face_go_to_extra(tmp_path):
    hand_l, hand_r, face = _points(21, 5), _points(21, 6), _points(70, 7)
    _write(tmp_path / "b_keypoints.json", [{
        "pose_keypoints_2d": _flat(_points(25, 8)),
        "hand_left_keypoints_2d": _flat(hand_l), "hand_right_keypoints_2d": _flat(hand_r),
        "face_keypoints_2d": _flat(face), "pose_keypoints_3d": []}])
    (person,) = read_openpose_people(tmp_path / "b_keypoints.json")
    assert set(person.extra) == {"hand_left", "hand_right", "face"}
    np.testing.assert_allclose(person.extra["hand_left"], hand_l)
    np.testing.assert_allclose(person.extra["hand_right"], hand_r)
    np.testing.assert_allclose(person.extra["face"], face)


def test_empty_people_and_empty_groups(tmp_path):
    assert read_openpose_people(_write(tmp_path / "e_keypoints.json", [])) == []
    _write(tmp_path / "f_keypoints.json", [{"pose_keypoints_2d": _flat(_points(25, 9)),
                                            "face_keypoints_2d": []}])
    (person,) = read_openpose_people(tmp_path / "f_keypoints.json")
    assert person.extra == {}


@pytest.mark.parametrize("n", [15, 19, 0])
def test_unknown_body_model_names_the_file(tmp_path, n):
    path = _write(tmp_path / "mpi_keypoints.json", [{"pose_keypoints_2d": _flat(_points(n, 1))}])
    with pytest.raises(PipelineError, match=r"mpi_keypoints\.json.*person 0.*" + str(n)):
        read_openpose_people(path)


def test_wrong_hand_length_names_the_file(tmp_path):
    path = _write(tmp_path / "h_keypoints.json", [{"pose_keypoints_2d": _flat(_points(25, 1)),
                                                   "hand_left_keypoints_2d": _flat(_points(20, 2))
                                                   }])
    with pytest.raises(PipelineError, match=r"h_keypoints\.json.*hand_left.*20.*21"):
        read_openpose_people(path)


def test_not_openpose_and_not_multiple_of_three(tmp_path):
    bad = tmp_path / "x_keypoints.json"
    bad.write_text(json.dumps({"persons": []}))
    with pytest.raises(PipelineError, match=r"x_keypoints\.json"):
        read_openpose_people(bad)
    _write(bad, [{"pose_keypoints_2d": [1.0, 2.0]}])
    with pytest.raises(PipelineError, match=r"x_keypoints\.json"):
        read_openpose_people(bad)


def test_find_openpose_file(tmp_path):
    folder = tmp_path / "s000" / "act00"
    folder.mkdir(parents=True)
    write_openpose(folder / "cam0_keypoints.json", [])
    assert find_openpose_file(tmp_path, "s000", "act00", "cam0") == folder / "cam0_keypoints.json"
    with pytest.raises(PipelineError, match=r"cam1_keypoints\.json.*cam0_keypoints\.json"):
        find_openpose_file(tmp_path, "s000", "act00", "cam1")
    with pytest.raises(PipelineError, match="does not exist"):
        find_openpose_file(tmp_path, "s001", "act00", "cam0")

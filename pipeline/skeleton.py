"""2D/3D body keypoint formats: COCO-17 and OpenPose BODY_25, and OpenPose's JSON files.

Keypoint arrays are ``(J, 3)``: ``x, y`` in pixels (pixel centres at integer coordinates) and a
confidence in [0, 1], 0 meaning "not detected" (OpenPose writes ``0, 0, 0`` then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError
from pipeline.io import read_json, write_json

COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)

BODY25 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee",
    "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear",
    "left_ear", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe",
    "right_small_toe", "right_heel",
)

OPENPOSE_VERSION = 1.3


def _midpoint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mid-point of two keypoints; confidence is the smaller one (0 if either is missing)."""
    conf = min(a[2], b[2])
    if conf <= 0:
        return np.zeros(3)
    return np.array([(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, conf])


def coco17_to_body25(coco: np.ndarray, feet: np.ndarray | None = None) -> np.ndarray:
    """Convert COCO-17 keypoints to BODY_25.

    Args:
        coco: ``(17, 3)`` keypoints in :data:`COCO17` order.
        feet: optional ``(6, 3)`` foot keypoints in BODY_25 order (left big toe, left small toe,
            left heel, right big toe, right small toe, right heel); missing ones stay zero.

    Returns:
        ``(25, 3)`` keypoints in :data:`BODY25` order. Neck and mid-hip are the mid-points of
        the shoulders and hips.
    """
    coco = np.asarray(coco, dtype=np.float64)
    if coco.shape != (17, 3):
        raise ValueError(f"COCO-17 keypoints must be (17, 3), got {coco.shape}")
    index = {name: i for i, name in enumerate(COCO17)}
    out = np.zeros((25, 3))
    for j, name in enumerate(BODY25):
        if name in index:
            out[j] = coco[index[name]]
    out[BODY25.index("neck")] = _midpoint(coco[index["left_shoulder"]],
                                          coco[index["right_shoulder"]])
    out[BODY25.index("mid_hip")] = _midpoint(coco[index["left_hip"]], coco[index["right_hip"]])
    if feet is not None:
        feet = np.asarray(feet, dtype=np.float64)
        if feet.shape != (6, 3):
            raise ValueError(f"foot keypoints must be (6, 3), got {feet.shape}")
        out[19:25] = feet
    out[out[:, 2] <= 0] = 0.0
    return out


def openpose_document(people: list[np.ndarray]) -> dict[str, Any]:
    """The JSON document OpenPose writes for one image: one entry per person (BODY_25)."""
    entries = []
    for body in people:
        body = np.asarray(body, dtype=np.float64)
        if body.shape != (25, 3):
            raise ValueError(f"BODY_25 keypoints must be (25, 3), got {body.shape}")
        entries.append({
            "person_id": [-1],
            "pose_keypoints_2d": [round(float(v), 4) for v in body.reshape(-1)],
            "face_keypoints_2d": [],
            "hand_left_keypoints_2d": [],
            "hand_right_keypoints_2d": [],
            "pose_keypoints_3d": [],
            "face_keypoints_3d": [],
            "hand_left_keypoints_3d": [],
            "hand_right_keypoints_3d": [],
        })
    return {"version": OPENPOSE_VERSION, "people": entries}


def write_openpose(path: str | Path, people: list[np.ndarray]) -> None:
    """Write an OpenPose-style ``<image>_keypoints.json`` file (atomically)."""
    write_json(path, openpose_document(people))


def read_openpose(path: str | Path) -> list[dict[str, np.ndarray]]:
    """Read an OpenPose JSON file: per person, each keypoint group as an ``(N, 3)`` array.

    Raises:
        PipelineError: naming the file when it is not an OpenPose document.
    """
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("people"), list):
        raise PipelineError(f"{path}: not an OpenPose keypoint file (no 'people' list)")
    people = []
    for i, person in enumerate(doc["people"]):
        groups = {}
        for key, values in person.items():
            if not key.endswith("_2d"):
                continue
            array = np.asarray(values, dtype=np.float64)
            if array.size % 3:
                raise PipelineError(f"{path}: person {i} {key} has {array.size} values, "
                                    "not a multiple of 3")
            groups[key] = array.reshape(-1, 3)
        people.append(groups)
    return people

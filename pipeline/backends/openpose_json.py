"""OpenPose's own keypoint files (``<image stem>_keypoints.json``) as :class:`PersonKeypoints`.

OpenPose writes one JSON document per image, ``{"people": [{"pose_keypoints_2d": [...],
"hand_left_keypoints_2d": [...], ...}, ...]}``, each group a flat list of ``x, y, confidence``
triples (``0, 0, 0`` = not detected; pixel centres at integer coordinates). The body model is
told apart by the length of ``pose_keypoints_2d``:

- 25 keypoints: BODY_25 (:data:`pipeline.skeleton.BODY25`), kept as is;
- 18 keypoints: COCO (:data:`OPENPOSE_COCO18`: COCO-17 plus OpenPose's own neck, in OpenPose's
  order); BODY_25 gets OpenPose's neck, the mid-hip as the mid-point of the hips, no feet.

Hands (21 keypoints each) and face (70) go into ``extra`` as ``hand_left``, ``hand_right`` and
``face`` when present (empty lists are absent groups). The person's score is the mean confidence
of its detected body keypoints (OpenPose has no per-person score). Choosing one person among
several is the stage's business, not this module's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.backends import PersonKeypoints
from pipeline.errors import PipelineError
from pipeline.skeleton import BODY25, COCO17, read_openpose

# OpenPose's COCO body model (18 keypoints), in its output order.
OPENPOSE_COCO18 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
)

# Number of keypoints of each optional group, by OpenPose key (the ``extra`` name drops
# ``_keypoints_2d``).
EXTRA_GROUPS = {"hand_left_keypoints_2d": 21, "hand_right_keypoints_2d": 21,
                "face_keypoints_2d": 70}

BODY_FORMATS = {25: "BODY_25", 18: "COCO"}


def _reorder(points: np.ndarray, source: tuple[str, ...], target: tuple[str, ...]) -> np.ndarray:
    """``points`` ``(len(source), 3)`` → ``(len(target), 3)`` by keypoint name; names absent
    from ``source`` are zero (missing)."""
    index = {name: i for i, name in enumerate(source)}
    out = np.zeros((len(target), 3))
    for j, name in enumerate(target):
        if name in index:
            out[j] = points[index[name]]
    return out


def _clean(points: np.ndarray) -> np.ndarray:
    """Zero every keypoint whose confidence is not positive (OpenPose's "missing")."""
    points = np.array(points, dtype=np.float64)
    points[~(points[:, 2] > 0)] = 0.0
    return points


def body25_to_coco17(body25: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints ``(17, 3)`` from BODY_25 keypoints ``(25, 3)`` (a subset by name)."""
    body25 = np.asarray(body25, dtype=np.float64)
    if body25.shape != (25, 3):
        raise ValueError(f"BODY_25 keypoints must be (25, 3), got {body25.shape}")
    return _clean(_reorder(body25, BODY25, COCO17))


def coco18_to_body25(coco18: np.ndarray) -> np.ndarray:
    """BODY_25 keypoints ``(25, 3)`` from OpenPose COCO keypoints ``(18, 3)``.

    OpenPose's own neck estimate is kept; the mid-hip is the mid-point of the hips (confidence
    the smaller of the two, missing if either is); the six foot keypoints are missing.
    """
    coco18 = np.asarray(coco18, dtype=np.float64)
    if coco18.shape != (18, 3):
        raise ValueError(f"OpenPose COCO keypoints must be (18, 3), got {coco18.shape}")
    out = _reorder(_clean(coco18), OPENPOSE_COCO18, BODY25)
    right = coco18[OPENPOSE_COCO18.index("right_hip")]
    left = coco18[OPENPOSE_COCO18.index("left_hip")]
    conf = min(right[2], left[2])
    if conf > 0:
        out[BODY25.index("mid_hip")] = [(right[0] + left[0]) / 2, (right[1] + left[1]) / 2, conf]
    return _clean(out)


def coco18_to_coco17(coco18: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints ``(17, 3)`` from OpenPose COCO keypoints ``(18, 3)`` (drops the neck)."""
    coco18 = np.asarray(coco18, dtype=np.float64)
    if coco18.shape != (18, 3):
        raise ValueError(f"OpenPose COCO keypoints must be (18, 3), got {coco18.shape}")
    return _clean(_reorder(coco18, OPENPOSE_COCO18, COCO17))


def body_score(body: np.ndarray) -> float:
    """Mean confidence of the detected keypoints of ``body`` ``(J, 3)``; 0 when none is."""
    conf = np.asarray(body, dtype=np.float64)[:, 2]
    found = conf[conf > 0]
    return float(found.mean()) if found.size else 0.0


def person_from_groups(groups: dict[str, np.ndarray], where: str) -> PersonKeypoints:
    """One person from OpenPose's keypoint groups (each ``(N, 3)``, as :func:`read_openpose`
    returns them); ``where`` names the file and person in errors."""
    pose = groups.get("pose_keypoints_2d")
    if pose is None:
        raise PipelineError(f"{where}: no pose_keypoints_2d")
    n = len(pose)
    if n == 25:
        body25 = _clean(pose)
        coco17 = body25_to_coco17(body25)
    elif n == 18:
        body25 = coco18_to_body25(pose)
        coco17 = coco18_to_coco17(pose)
    else:
        known = ", ".join(f"{k} ({v})" for k, v in BODY_FORMATS.items())
        raise PipelineError(f"{where}: pose_keypoints_2d has {n} keypoints; known OpenPose body "
                            f"models: {known} keypoints (MPI and others are not supported)")
    extra = {}
    for key, expected in EXTRA_GROUPS.items():
        points = groups.get(key)
        if points is None or len(points) == 0:
            continue
        if len(points) != expected:
            raise PipelineError(f"{where}: {key} has {len(points)} keypoints, expected {expected}")
        extra[key.removesuffix("_keypoints_2d")] = _clean(points)
    return PersonKeypoints(coco17=coco17, body25=body25, score=body_score(body25), extra=extra)


def read_openpose_people(path: str | Path) -> list[PersonKeypoints]:
    """All persons of the OpenPose file ``path``, in the file's order.

    Raises:
        PipelineError: naming the file when it is not an OpenPose document or a person's body
            model is neither BODY_25 nor COCO (18), or a hand / face group has a wrong length.
    """
    return [person_from_groups(groups, f"{path}: person {i}")
            for i, groups in enumerate(read_openpose(path))]


def openpose_file_name(view: str) -> str:
    """OpenPose's output name for the image of ``view`` (its stem): ``<view>_keypoints.json``."""
    return f"{view}_keypoints.json"


def find_openpose_file(root: str | Path, subject: str, action: str, view: str) -> Path:
    """The OpenPose file of one photo: ``<root>/<subject>/<action>/<view>_keypoints.json``.

    Raises:
        PipelineError: naming the expected path (and the folder's keypoint files, if any) when
            it is missing.
    """
    folder = Path(root) / subject / action
    path = folder / openpose_file_name(view)
    if path.is_file():
        return path
    if not folder.is_dir():
        raise PipelineError(f"no OpenPose keypoints for {subject}/{action}/{view}: folder "
                            f"{folder} does not exist (expected {path})")
    present = sorted(p.name for p in folder.glob("*_keypoints.json"))
    listing = ", ".join(present[:8]) + (", ..." if len(present) > 8 else "") or "none"
    raise PipelineError(f"no OpenPose keypoints for {subject}/{action}/{view}: {path} is missing "
                        f"(OpenPose names its output <image stem>_keypoints.json; keypoint files "
                        f"in {folder}: {listing})")

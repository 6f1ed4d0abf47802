"""What the fit reads: every accepted view of every action of a subject, checked.

Per action: the crop folder (``crop.json``: per-view status and crop-adjusted camera), the mask
folder (``<view>.png`` alpha) and the keypoints file (COCO-17 in crop pixels). Views the
detector rejected (status ``no_person``) are left out; a camera with a non-finite entry, a
missing mask or keypoints of the wrong shape stop the fit with the file and view named.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.camera import Camera
from pipeline.detect import CROP_FILE, OK
from pipeline.errors import PipelineError
from pipeline.imageio import read_matte
from pipeline.io import read_json
from pipeline.skeleton import COCO17

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewInput:
    """One view: ``keypoints`` (17, 3) crop pixels + confidence (0: missing); ``alpha``
    (H, W) float32 in [0, 1]; ``camera`` the crop-adjusted calibrated camera or None."""

    name: str
    crop_path: Path
    keypoints: np.ndarray
    alpha: np.ndarray
    camera: Camera | None


@dataclass(frozen=True)
class ActionInput:
    name: str
    views: tuple[ViewInput, ...]


@dataclass(frozen=True)
class SubjectInput:
    subject: str
    crop_size: int
    actions: tuple[ActionInput, ...]

    @property
    def calibrated(self) -> bool:
        return all(v.camera is not None for a in self.actions for v in a.views)

    def max_views(self) -> int:
        return max(len(a.views) for a in self.actions)


def _camera(record: dict, path: Path, view: str) -> Camera | None:
    if record.get("camera") is None:
        return None
    values = [record["camera"].get(k) for k in ("K", "R", "t")]
    try:
        finite = all(np.all(np.isfinite(np.asarray(v, dtype=np.float64))) for v in values)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"{path}: camera of view {view!r} is malformed: {exc}") from exc
    if not finite:
        raise PipelineError(f"{path}: camera of view {view!r} has a non-finite (NaN/inf) entry")
    try:
        return Camera.from_dict(record["camera"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{path}: camera of view {view!r} is invalid: {exc}") from exc


def _keypoints(record: dict | None, path: Path, view: str) -> np.ndarray:
    if record is None or record.get("status") != OK:
        return np.zeros((len(COCO17), 3))
    points = np.asarray(record.get("coco17"), dtype=np.float64)
    if points.shape != (len(COCO17), 3):
        raise PipelineError(f"{path}: view {view!r} has coco17 keypoints of shape "
                            f"{points.shape}, expected ({len(COCO17)}, 3)")
    points = points.copy()
    bad = ~np.all(np.isfinite(points), axis=1)
    points[bad] = 0.0  # a non-finite keypoint counts as missing
    if bad.any():
        log.warning("%s: view %s has %d non-finite keypoints; treated as missing", path, view,
                    int(bad.sum()))
    return points


def load_action(subject: str, action: str, crops: Path, masks: Path,
                keypoints: Path) -> ActionInput:
    """Read and check one action's views (see the module docstring)."""
    crop_file = Path(crops) / CROP_FILE
    detected = read_json(crop_file)
    points_file = Path(keypoints)
    points = read_json(points_file).get("views", {})
    views = []
    for view, record in sorted(detected.get("views", {}).items()):
        if record.get("status") != OK:
            log.info("%s/%s/%s: no person detected; view left out of the fit", subject, action,
                     view)
            continue
        mask_path = Path(masks) / f"{view}.png"
        if not mask_path.is_file():
            raise PipelineError(f"{mask_path}: mask of view {view!r} is missing")
        alpha = read_matte(mask_path)
        kp = _keypoints(points.get(view), points_file, view)
        if not np.any(kp[:, 2] > 0):
            log.warning("%s/%s/%s: no keypoints in this view; it constrains the fit by its "
                        "silhouette only", subject, action, view)
        views.append(ViewInput(view, Path(crops) / f"{view}.png", kp, alpha,
                               _camera(record, crop_file, view)))
    if not views:
        raise PipelineError(f"{crop_file}: no view of {subject}/{action} has a person (the "
                            "detector found none in any photo); remove the action's folder or "
                            "add photos where the whole person is visible")
    return ActionInput(action, tuple(views))


def load_subject(subject: str, actions: list[str], crops: Path, masks: Path,
                 keypoints: Path) -> SubjectInput:
    """Every action of a subject from ``<crops>/<action>``, ``<masks>/<action>`` and
    ``<keypoints>/<action>.json``."""
    loaded = tuple(load_action(subject, a, Path(crops) / a, Path(masks) / a,
                               Path(keypoints) / f"{a}.json") for a in actions)
    sizes = {v.alpha.shape for a in loaded for v in a.views}
    if len(sizes) != 1 or len(next(iter(sizes))) != 2 or len(set(next(iter(sizes)))) != 1:
        raise PipelineError(f"{subject}: masks must all be square and of one size, got {sizes}")
    with_camera = {v.camera is not None for a in loaded for v in a.views}
    if len(with_camera) != 1:
        raise PipelineError(f"{subject}: some views have calibrated cameras and some do not")
    return SubjectInput(subject, next(iter(sizes))[0], loaded)

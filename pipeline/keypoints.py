"""Keypoints: 2D body keypoints of the person in every crop, COCO-17 and OpenPose BODY_25.

Writes ``results/<dataset>/keypoints/<subject>/<action>.json`` (format
``pixel2isdf.keypoints/1``): per view the status, the chosen person's score, the number of
persons seen, and ``coco17`` / ``body25`` keypoints ``[[x, y, confidence], ...]`` both in crop
pixels and (``*_image``) in photo pixels. Confidence 0 means not detected (x = y = 0 then).
The ``openpose_json`` backend imports OpenPose's own files (photo pixels) instead of running
a model; ``oracle`` reads the synthetic truth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.backends import PersonKeypoints, make_backend
from pipeline.crop import CropBox
from pipeline.detect import CROP_FILE, OK
from pipeline.imageio import read_rgb
from pipeline.io import read_json, write_json
from pipeline.progress import progress
from pipeline.skeleton import BODY25, COCO17, read_openpose
from pipeline.views import ORACLE_BACKEND, stage_header, truth_views

log = logging.getLogger(__name__)

FILE_BACKENDS = ("openpose_json", ORACLE_BACKEND)  # read keypoints in photo pixels from files


@dataclass(frozen=True)
class KeypointParams:
    backend: str
    options: dict[str, Any]

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> KeypointParams:
        return cls(p["backend"], dict(p.get(p["backend"], {})))


def map_points(points: np.ndarray, fn) -> np.ndarray:
    """Apply a coordinate map to keypoints ``(J, 3)``; undetected ones stay all zero."""
    out = np.zeros_like(np.asarray(points, dtype=np.float64))
    seen = points[:, 2] > 0
    out[seen, :2] = fn(points[seen, :2])
    out[seen, 2] = points[seen, 2]
    return out


def best_person(people: list[PersonKeypoints]) -> PersonKeypoints | None:
    """The highest-scoring person (ties: most confident keypoints)."""
    if not people:
        return None
    return max(people, key=lambda p: (p.score, float(p.coco17[:, 2].sum())))


def _file_people(backend: str, options: dict[str, Any], truth: Path, subject: str, action: str,
                 view: str) -> list[PersonKeypoints]:
    """Persons of a view from OpenPose files or the synthetic truth, in photo pixels."""
    if backend == ORACLE_BACKEND:
        path = Path(truth) / action / f"{view}_keypoints.json"
        coco = np.asarray(truth_views(truth, action)[view]["keypoints_coco17"], dtype=np.float64)
        body25 = read_openpose(path)[0]["pose_keypoints_2d"]
        return [PersonKeypoints(coco17=coco, body25=body25, score=1.0)]
    from pipeline.backends.openpose_json import find_openpose_file, read_openpose_people

    return read_openpose_people(find_openpose_file(options.get("root"), subject, action, view))


def _record(person: PersonKeypoints, n_persons: int, crop: CropBox,
            in_crop: bool) -> dict[str, Any]:
    def same(uv: np.ndarray) -> np.ndarray:
        return uv

    to_crop, to_image = (same, crop.to_image) if in_crop else (crop.to_crop, same)

    def rounded(a: np.ndarray) -> list[list[float]]:
        return np.round(a, 3).tolist()

    return {"status": OK, "score": round(float(person.score), 5), "n_persons": n_persons,
            "coco17": rounded(map_points(person.coco17, to_crop)),
            "body25": rounded(map_points(person.body25, to_crop)),
            "coco17_image": rounded(map_points(person.coco17, to_image)),
            "body25_image": rounded(map_points(person.body25, to_image))}


def make_model(params: KeypointParams) -> Any:
    """The model ``keypoints.backend`` names, or None for the backends that read files."""
    if params.backend in FILE_BACKENDS:
        return None
    return make_backend("keypoints", params.backend, params.options)


def keypoints_action(*, subject: str, crops: Path, action: str, truth: Path, output: Path,
                     params: KeypointParams, model: Any = None) -> dict[str, Any]:
    """Keypoints of every cropped view of an action, written to ``output`` (JSON).

    ``model``: :func:`make_model`'s, built once for many actions (here when None).
    """
    crops = Path(crops)
    detected = read_json(crops / CROP_FILE)
    views = {v: r for v, r in detected["views"].items() if r["status"] == OK}
    from_files = params.backend in FILE_BACKENDS
    if not from_files and model is None:
        model = make_model(params)
    records: dict[str, Any] = {}
    with progress(len(views), f"keypoints {subject}/{action}", "view") as bar:
        for view, record in views.items():
            crop = CropBox.from_dict(record["crop"])
            if from_files:
                people = _file_people(params.backend, params.options, truth, subject, action,
                                      view)
            else:
                people = model.keypoints(read_rgb(crops / f"{view}.png"))
            person = best_person(people)
            if person is None:
                log.warning("%s/%s/%s: no keypoints found", subject, action, view)
                records[view] = {"status": "no_keypoints", "n_persons": 0}
            else:
                if len(people) > 1:
                    log.info("%s/%s/%s: %d persons; kept the best (score %.3f)", subject,
                             action, view, len(people), person.score)
                records[view] = _record(person, len(people), crop, in_crop=not from_files)
            bar.update()
    result = {**stage_header("keypoints", params.backend, subject=subject, action=action,
                             coco17=list(COCO17), body25=list(BODY25),
                             crop_size=detected["crop_size"]),
              "views": records}
    write_json(output, result)
    return result


def run(*, subject: str, action: str, crops: Path, truth: Path, output: Path,
        params: dict[str, Any]) -> None:
    """CLI entry: ``python -m pipeline keypoints``."""
    keypoints_action(subject=subject, crops=crops, action=action, truth=truth, output=output,
                     params=KeypointParams.from_params(params))


"""Detect: find the person in every view of a subject-action and cut a square crop.

Output folder ``results/<dataset>/crop/<subject>/<action>/``: ``<view>.png`` crops
(``crop_size``², zero outside the photo) and ``crop.json``, the stage's record of every view:
status (``ok`` or ``no_person``), the photo's path, the person box and score in photo pixels,
how many persons were seen, the crop (``x0, y0, size, out_size``, see :mod:`pipeline.crop`),
when the data set has masks (``data.layout.masks``) the photo's mask path (read by
``mask.backend: given``) and, when it has calibrated cameras, the camera of the crop. Later
stages read ``crop.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.backends import Detection, make_backend
from pipeline.crop import square_box
from pipeline.errors import PipelineError
from pipeline.imageio import read_matte, read_rgb, save_png
from pipeline.io import atomic_directory, write_json
from pipeline.progress import progress
from pipeline.views import ORACLE_BACKEND, load_action, provenance, stage_header, truth_views

log = logging.getLogger(__name__)

CROP_FILE = "crop.json"
OK, NO_PERSON = "ok", "no_person"


@dataclass(frozen=True)
class DetectParams:
    backend: str
    crop_size: int
    margin: float
    on_no_person: str
    min_score: float
    options: dict[str, Any]

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> DetectParams:
        return cls(p["backend"], p["crop_size"], p["margin"], p["on_no_person"], p["min_score"],
                   dict(p.get(p["backend"], {})))


def pick_person(detections: list[Detection], min_score: float) -> tuple[Detection | None, int]:
    """The most confident detection (ties: the largest) scoring at least ``min_score``.

    Returns:
        The chosen detection (None when there is none) and the number of candidates.
    """
    kept = [d for d in detections if d.score >= min_score]
    if not kept:
        return None, 0

    def key(d: Detection) -> tuple[float, float]:
        x0, y0, x1, y1 = d.box_xyxy
        return d.score, (x1 - x0) * (y1 - y0)

    return max(kept, key=key), len(kept)


def _oracle_detections(truth: Path, action: str) -> dict[str, list[Detection]]:
    views = truth_views(truth, action)
    return {view: [Detection(np.asarray(v["box_xyxy"], dtype=np.float64), 1.0)]
            if v["mask_area"] > 0 else [] for view, v in views.items()}


GIVEN_BACKEND = "given"


def _given_detections(views: Any) -> dict[str, list[Detection]]:
    """The person's box in each view from the data set's own masks (``detect.backend:
    given``): the box of the mask's pixels above 0.5, score 1; none for an empty mask."""
    if views.masks is None:
        raise PipelineError(f"{views.subject}: detect.backend given reads the data set's "
                            "masks, but data.layout.masks is null")
    out = {}
    for view, path in views.masks.items():
        ys, xs = np.nonzero(read_matte(path) > 0.5)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
        out[view] = [Detection(box, 1.0)] if len(xs) else []
    return out


def make_detector(params: DetectParams) -> Any:
    """The model ``detect.backend`` names, or None for the backends that read files
    (``oracle``, ``given``)."""
    if params.backend in (ORACLE_BACKEND, GIVEN_BACKEND):
        return None
    return make_backend("detect", params.backend, params.options)


def detect_action(*, manifest: Path, action: str, truth: Path, output: Path,
                  params: DetectParams, detector: Any = None) -> dict[str, Any]:
    """Detect and crop every view of ``action``; write ``output/`` atomically.

    ``detector``: the model of :func:`make_detector`, built once for many actions (built
    here when None).

    Raises:
        PipelineError: a view without a person under ``on_no_person: fail`` (all such views are
            named), or an action left without any person.
    """
    views = load_action(Path(manifest), action)
    oracle = (_oracle_detections(truth, action) if params.backend == ORACLE_BACKEND
              else _given_detections(views) if params.backend == GIVEN_BACKEND else None)
    if oracle is None and detector is None:
        detector = make_detector(params)
    records: dict[str, Any] = {}
    crops: dict[str, np.ndarray] = {}
    where = f"{views.subject}/{action}"
    with progress(len(views.photos), f"detect {where}", unit="view") as bar:
        for view, photo in views.photos.items():
            image = read_rgb(photo)
            found = oracle.get(view, []) if oracle is not None else detector.detect(image)
            person, n_persons = pick_person(found, params.min_score)
            bar.update()
            if person is None:
                log.warning("%s/%s: no person (%d detections below min_score)", where, view,
                            len(found))
                records[view] = {"status": NO_PERSON, "n_persons": 0}
                continue
            if n_persons > 1:
                log.info("%s/%s: %d persons; kept the most confident (score %.3f, box %s)",
                         where, view, n_persons, person.score, np.round(person.box_xyxy, 1))
            crop = square_box(person.box_xyxy, params.margin, params.crop_size)
            crops[view] = crop.cut(image)
            record = {"status": OK, "photo": str(photo), "n_persons": n_persons,
                      "score": round(float(person.score), 5),
                      "box_xyxy": [round(float(v), 3) for v in person.box_xyxy],
                      "photo_size": [int(image.shape[1]), int(image.shape[0])],
                      "crop": crop.to_dict()}
            if views.masks is not None and view in views.masks:  # data.layout.masks
                record["mask"] = str(views.masks[view])
            if views.cameras is not None:
                record["camera"] = views.cameras[view].with_crop(
                    crop.x0, crop.y0, crop.size, crop.out_size).to_dict()
            records[view] = record
    missing = [v for v, r in records.items() if r["status"] == NO_PERSON]
    if missing and params.on_no_person == "fail":
        raise PipelineError(f"{where}: no person found in view(s) {missing} of "
                            f"{[str(views.photos[v]) for v in missing]} (detect.on_no_person="
                            "fail; set skip to record them and go on)")
    if not crops:
        raise PipelineError(f"{where}: no person found in any view")
    result = {**stage_header("detect", params.backend, subject=views.subject, action=action,
                             crop_size=params.crop_size, margin=params.margin),
              "views": records}
    with atomic_directory(output) as tmp:
        for view, pixels in crops.items():
            save_png(tmp / f"{view}.png", pixels, provenance("detect", params.backend))
        write_json(tmp / CROP_FILE, result)
    return result


def run(*, subject: str, action: str, manifest: Path, truth: Path, output: Path,
        params: dict[str, Any]) -> None:
    """CLI entry: ``python -m pipeline detect``."""
    del subject  # named by the manifest; the option keeps the command line readable in logs
    detect_action(manifest=manifest, action=action, truth=truth, output=output,
                  params=DetectParams.from_params(params))

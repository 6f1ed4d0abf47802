"""Mask: segment the person in every crop, then refine the mask by matting.

Reads the detect stage's folder; writes ``results/<dataset>/mask/<subject>/<action>/``:
``<view>.png`` the alpha matte (uint8), ``<view>_coarse.png`` the segmentation probability
before matting, ``<view>_masked.png`` the crop multiplied by alpha (background zero, as the
network is fed) and ``mask.json`` (per view: areas, unknown-band size, backend).
The trimap is the thresholded segmentation eroded and dilated by ``band`` crop pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.backends import make_backend
from pipeline.backends.matting import make_trimap
from pipeline.crop import CropBox
from pipeline.detect import CROP_FILE, OK
from pipeline.errors import PipelineError
from pipeline.imageio import read_matte, read_rgb, save_png
from pipeline.io import atomic_directory, read_json, write_json
from pipeline.progress import progress
from pipeline.views import ORACLE_BACKEND, provenance, stage_header

log = logging.getLogger(__name__)

MASK_FILE = "mask.json"
THRESHOLD = 0.5  # segmentation probability / alpha above which a pixel is the person


@dataclass(frozen=True)
class MaskParams:
    backend: str
    matting: str
    band: int
    options: dict[str, Any]
    matting_options: dict[str, Any]

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> MaskParams:
        return cls(p["backend"], p["matting"], p["band"], dict(p.get(p["backend"], {})),
                   dict(p.get(p["matting"], {})))


def _oracle_probability(truth: Path, action: str, view: str, crop: CropBox) -> np.ndarray:
    """The synthetic truth mask of a view, cut like the photo (bilinear), in [0, 1]."""
    return crop_matte(read_matte(Path(truth) / action / f"{view}_mask.png"), crop)


GIVEN_BACKEND = "given"


def given_probability(record: dict[str, Any], subject: str, action: str,
                      view: str) -> np.ndarray:
    """A data set's own mask of a photo (``mask.backend: given``), cut like the photo
    (bilinear), in [0, 1] at any bit depth. The mask's path is the detect record's ``mask``,
    from the ingest manifest, where ``data.layout.masks`` put it.

    Raises:
        PipelineError: the record names no mask (the layout has none, or detect ran before
            it had), or the mask is missing, unreadable or not the photo's size (all named).
    """
    where = f"{subject}/{action}/{view}"
    if "mask" not in record:
        raise PipelineError(f"{where}: mask.backend: given reads the data set's own masks, but "
                            "the detect record names no mask for this view: set "
                            "data.layout.masks to where the masks lie (then ingest and detect "
                            "rerun), or choose another mask.backend")
    path = Path(record["mask"])
    if not path.is_file():
        raise PipelineError(f"{where}: mask {path} is missing (mask.backend: given, "
                            "data.layout.masks; rerun ingest, which checks every mask)")
    matte = read_matte(path)
    if matte.shape[:2] != tuple(record["photo_size"][::-1]):
        raise PipelineError(f"mask {path} is {matte.shape[1]}×{matte.shape[0]}, its photo "
                            f"{record.get('photo', where)} is {record['photo_size'][0]}×"
                            f"{record['photo_size'][1]}")
    return crop_matte(matte, CropBox.from_dict(record["crop"]))


def crop_matte(matte: np.ndarray, crop: CropBox) -> np.ndarray:
    """A ``(H, W)`` matte in [0, 1] cut like the photo (bilinear), float32."""
    return crop.cut(matte.astype(np.float32), resample="bilinear").astype(np.float32)


def make_models(params: MaskParams) -> tuple[Any, Any]:
    """The segmenter ``mask.backend`` names (None for ``oracle`` and ``given``, which read
    files) and the matter ``mask.matting`` names (None for ``none``)."""
    segmenter = (None if params.backend in (ORACLE_BACKEND, GIVEN_BACKEND)
                 else make_backend("mask", params.backend, params.options))
    matter = (None if params.matting == "none"
              else make_backend("matte", params.matting, params.matting_options))
    return segmenter, matter


def mask_action(*, crops: Path, action: str, truth: Path, output: Path,
                params: MaskParams, models: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Segment and matte every cropped view of an action; write ``output/`` atomically.

    ``models``: :func:`make_models`'s pair, built once for many actions (here when None).
    """
    crops = Path(crops)
    detected = read_json(crops / CROP_FILE)
    views = {v: r for v, r in detected["views"].items() if r["status"] == OK}
    oracle = params.backend == ORACLE_BACKEND
    given = params.backend == GIVEN_BACKEND
    segmenter, matter = make_models(params) if models is None else models
    tag = provenance("mask", params.backend)
    records: dict[str, Any] = {}
    where = f"{detected['subject']}/{action}"
    with atomic_directory(output) as tmp, progress(len(views), f"mask {where}", "view") as bar:
        for view, record in views.items():
            image = read_rgb(crops / f"{view}.png")
            if oracle:
                prob = _oracle_probability(truth, action, view, CropBox.from_dict(record["crop"]))
            elif given:
                prob = given_probability(record, detected["subject"], action, view)
            else:
                prob = segmenter.segment(image)
            coarse = prob > THRESHOLD
            trimap = make_trimap(coarse, params.band)
            alpha = coarse.astype(np.float32) if matter is None else matter.matte(image, trimap)
            alpha8 = np.round(np.clip(alpha, 0.0, 1.0) * 255).astype(np.uint8)
            save_png(tmp / f"{view}.png", alpha8, tag)
            save_png(tmp / f"{view}_coarse.png",
                     np.round(np.clip(prob, 0.0, 1.0) * 255).astype(np.uint8), tag)
            masked = np.round(image * (alpha8[..., None] / 255.0)).astype(np.uint8)
            save_png(tmp / f"{view}_masked.png", masked, tag)
            records[view] = {"status": OK, "coarse_area": int(coarse.sum()),
                             "alpha_area": int((alpha > THRESHOLD).sum()),
                             "unknown_pixels": int((trimap == 128).sum())}
            if not coarse.any():
                log.warning("%s/%s: the segmentation found no person in the crop", where, view)
            bar.update()
        result = {**stage_header("mask", params.backend, subject=detected["subject"],
                                 action=action, matting=params.matting, band=params.band),
                  "views": records}
        write_json(tmp / MASK_FILE, result)
    return result


def run(*, subject: str, action: str, crops: Path, truth: Path, output: Path,
        params: dict[str, Any]) -> None:
    """CLI entry: ``python -m pipeline mask``."""
    del subject
    mask_action(crops=crops, action=action, truth=truth, output=output,
                params=MaskParams.from_params(params))

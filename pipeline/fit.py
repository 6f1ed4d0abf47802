"""Fit stage: the body model fitted to every action and view of one subject.

Reads the manifest (actions), ``crop/<subject>/<action>/`` (crop-adjusted cameras),
``mask/<subject>/<action>/<view>.png`` (alphas) and ``keypoints/<subject>/<action>.json``;
writes, atomically:

* ``fit/<subject>.npz`` (layout in docs/fit.md): shape, per-action pose, orientation and
  translation, cameras, posed vertices / keypoints / bone transforms per action, the canonical
  body (vertices, keypoints), faces, skinning weights, per-view checks (``view_ok``);
* ``fit/<subject>.json``: settings, per-view metrics, flagged views, the loss history, timing;
* ``fit/<subject>/<action>.png``: the fitted body's silhouette (blue) and skeleton over each
  crop, the input mask's contour in green.
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.cpu import use_cpu
from pipeline.bodymodel import make_body_model
from pipeline.errors import PipelineError
from pipeline.fitting.inputs import SubjectInput, load_subject
from pipeline.fitting.optimize import FitResult, FitSettings, fit_subject
from pipeline.fitting.raster import fill_triangles
from pipeline.fitting.scale import scale_source, standing_height
from pipeline.imageio import read_rgb, save_png
from pipeline.io import atomic_directory, atomic_path, read_json, write_json
from pipeline.overlay import PER_ROW, TILE, draw_view
from pipeline.skeleton import COCO17

log = logging.getLogger(__name__)
SCHEMA = "pixel2isdf.fit/1"


def settings_from_params(params: dict[str, Any], height_m: float | None = None) -> FitSettings:
    """The optimiser's settings from the ``fit`` config section (schema-validated) and the
    subject's known standing height (metres), if any."""
    names = {f.name for f in fields(FitSettings)} - {"height_m"}
    return FitSettings(**{k: v for k, v in params.items() if k in names}, height_m=height_m)


def _strings(rows: list[list[str]], width: int) -> np.ndarray:
    return np.array([row + [""] * (width - len(row)) for row in rows], dtype=str)


def fit_arrays(subject: SubjectInput, result: FitResult, model: Any) -> dict[str, np.ndarray]:
    """The npz content (see docs/fit.md), with the fitted body's rig: ``bone_parents``
    ``(B,)`` int64 (-1: a root) and ``bone_bind`` ``(B, 4, 4)`` float64, each bone's frame in
    the canonical body (:meth:`pipeline.bodymodel.BodyModel.skeleton` of the saved shape)."""
    n_views = subject.max_views()
    f32 = np.float32
    shape = result.shape.astype(f32)
    # The rig from the shape as saved (float32): the frames a reader of this file would get
    # from the body model at this torch thread count, so an export need not build it
    # (pipeline.export).
    skeleton = model.skeleton(torch.from_numpy(shape))
    arrays = {
        "schema": np.array(SCHEMA), "body_model": np.array(model.name),
        "camera_model": np.array("calibrated" if "camera_K" in result.cameras
                                 else "weak_perspective"),
        "crop_size": np.array(subject.crop_size, dtype=np.int32),
        "actions": np.array([a.name for a in subject.actions], dtype=str),
        "views": _strings([[v.name for v in a.views] for a in subject.actions], n_views),
        "view_valid": result.valid, "view_ok": result.view_ok,
        "joint_names": np.array(model.joint_names, dtype=str),
        "bone_names": np.array(model.bone_names, dtype=str),
        "bone_parents": np.asarray(skeleton.parents, dtype=np.int64),
        "bone_bind": np.asarray(skeleton.bind, dtype=np.float64),
        "shape": shape, "pose": result.pose.astype(f32),
        "global_orient": result.orient.astype(f32), "transl": result.transl.astype(f32),
        "posed_vertices": result.posed["vertices"].astype(f32),
        "posed_keypoints": result.posed["keypoints"].astype(f32),
        "bone_transforms": result.posed["bone_transforms"].astype(f32),
        "canonical_vertices": result.canonical_vertices.astype(f32),
        "canonical_keypoints": result.canonical_keypoints.astype(f32),
        "faces": np.asarray(model.faces, dtype=np.int32),
        "skinning_weights": np.asarray(model.skinning_weights, dtype=f32),
        **{k: v.astype(f32) for k, v in result.cameras.items()},
        **{k: v.astype(f32) for k, v in result.metrics.items()},
    }
    return arrays


def _report(subject: SubjectInput, result: FitResult, params: dict[str, Any],
            seconds: float, model_name: str, scale: dict[str, Any]) -> dict[str, Any]:
    views = {}
    for a, action in enumerate(subject.actions):
        views[action.name] = {
            view.name: {"ok": bool(result.view_ok[a, v]),
                        **{k: (None if not np.isfinite(m[a, v]) else round(float(m[a, v]), 4))
                           for k, m in result.metrics.items()}}
            for v, view in enumerate(action.views)}
    flagged = [f"{a}/{v}" for a, per in views.items() for v, r in per.items() if not r["ok"]]
    return {"schema": SCHEMA, "subject": subject.subject, "body_model": model_name,
            "params": params, "seconds": round(seconds, 2), "shape": result.shape_summary,
            "scale": scale,
            "flagged_views": flagged, "views": views, "history": result.history}


def _draw_overlays(subject: SubjectInput, result: FitResult, faces: np.ndarray,
                   folder: Path) -> None:
    pixels_of = result.posed["keypoints_px"]
    for a, action in enumerate(subject.actions):
        tiles = []
        for v, view in enumerate(action.views):
            rgb = read_rgb(view.crop_path)
            body = fill_triangles(result.posed["pixels"][a, v], faces, subject.crop_size)
            tinted = rgb.astype(np.float32)
            tinted[body] = 0.5 * tinted[body] + 0.5 * np.array([60.0, 110.0, 255.0])
            fitted = np.concatenate([pixels_of[a, v], np.ones((len(COCO17), 1))], 1)
            err = result.metrics["keypoint_error_px"][a, v]
            label = f"{view.name} err {err:.1f}px" + ("" if result.view_ok[a, v] else " FLAGGED")
            tiles.append(draw_view(tinted.astype(np.uint8), (view.alpha * 255).astype(np.uint8),
                                   None, fitted, label))
        rows = (len(tiles) + PER_ROW - 1) // PER_ROW
        sheet = Image.new("RGB", (PER_ROW * TILE, rows * TILE))
        for i, tile in enumerate(tiles):
            sheet.paste(tile, ((i % PER_ROW) * TILE, (i // PER_ROW) * TILE))
        save_png(folder / f"{action.name}.png", np.asarray(sheet),
                 text={"pixel2isdf:stage": "fit", "pixel2isdf:subject": subject.subject})


def scale_report(model: Any, result: FitResult, settings: FitSettings,
                 subject: str) -> dict[str, Any]:
    """Where the fit's size comes from and the height it found (the report's ``scale``); a
    warning naming ``fit.height_m`` when only the prior sets it."""
    views = np.asarray(result.valid).sum(axis=1).tolist()  # fitted views per action
    source = scale_source(settings.camera, settings.height_m, views)
    with torch.no_grad():
        height = float(standing_height(model, torch.as_tensor(result.shape)))
    if source == "prior":
        why = ("no cameras" if settings.camera != "calibrated"
               else "one calibrated photo per pose (a size the photo cannot tell from distance)")
        log.warning("%s: %s and no known height: the body's size (%.2f m standing) "
                    "comes from the shape prior (fit.anny.prior_phenotype); give the "
                    "person's height as fit.height_m.%s to fix it", subject, why, height,
                    subject)
    return {"source": source, "standing_height_m": round(height, 4),
            "given_height_m": settings.height_m}


def fit_to_files(*, subject: str, manifest: Path, crops: Path, masks: Path, keypoints: Path,
                 output: Path, report: Path, overlays: Path, params: dict[str, Any],
                 height_m: float | None = None) -> FitResult:
    """Fit one subject and write its npz, report and overlays (see the module docstring);
    ``height_m``: the person's known standing height (``fit.height_m``)."""
    torch.manual_seed(int(params.get("seed", 0)))
    use_cpu(int(params.get("threads", 1)))
    actions = sorted(read_json(manifest).get("actions", {}))
    if not actions:
        raise PipelineError(f"{manifest}: subject {subject} has no actions")
    inputs = load_subject(subject, actions, crops, masks, keypoints)
    model = make_body_model(params.get("body_model", "anny"),
                            params.get(params.get("body_model", "anny"), {}))
    start = time.perf_counter()
    settings = settings_from_params(params, height_m)
    result = fit_subject(model, inputs, settings)
    seconds = time.perf_counter() - start
    log.info("%s: fitted %d actions in %.1f s", subject, len(actions), seconds)
    with atomic_path(output) as tmp:
        np.savez_compressed(tmp, **fit_arrays(inputs, result, model))
    with atomic_directory(overlays) as tmp_dir:
        _draw_overlays(inputs, result, model.faces, tmp_dir)
    write_json(report, _report(inputs, result, params, seconds, model.name,
                               scale_report(model, result, settings, subject)))
    return result


def run(*, subject: str, manifest: Path, crops: Path, masks: Path, keypoints: Path,
        output: Path, report: Path, overlays: Path, params: dict[str, Any],
        height_m: float | None = None) -> None:
    """CLI entry: ``python -m pipeline fit``."""
    if height_m is not None and not 0.5 <= height_m <= 2.5:
        raise PipelineError(f"{subject}: --height-m {height_m} is not a person's standing "
                            "height (0.5-2.5 m, fit.height_m)")
    fit_to_files(subject=subject, manifest=manifest, crops=crops, masks=masks,
                 keypoints=keypoints, output=output, report=report, overlays=overlays,
                 params=params, height_m=height_m)

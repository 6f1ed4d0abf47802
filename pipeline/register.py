"""The ``register`` stage: a data set's canonical scan brought into the pipeline's frame.

For one subject: read the scan (OBJ or PLY, textured or not, with holes), apply its rotation
file, check that its height lies along the stated up axis, undo the stated axes and unit,
register the body model to it (:mod:`pipeline.registration`), check the registration, and
write into ``results/<dataset>/register/<subject>/``::

    canonical_clothed.ply   the scan unposed into the pipeline's canonical frame (its own
                            faces: open where the scan is; folded where limbs meet)
    posed_clothed.ply       the scan in the registered body's pose (the rigid motion undone),
                            where the cache signs it (by winding number)
    registered_body.npz     the registered body: canonical and posed vertices, the skinning
                            transforms between them
    registration.json       the map to the data set's frame, the residual, the body
    overlay.png             the scan's points over the registered body, front and side

Later stages read this folder where the pipeline's own layout has ``truth/<subject>``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipeline.bodymodel import make_body_model
from pipeline.errors import PipelineError
from pipeline.frames import (
    DatasetFrame,
    Similarity,
    check_up_axis,
    read_rotation,
    rotation_angle_deg,
)
from pipeline.imageio import save_png
from pipeline.io import atomic_directory, write_json
from pipeline.meshio import write_ply
from pipeline.registration import Registration, pose_body, register_body, unpose
from pipeline.scans import read_mesh
from pipeline.sdf import surface_samples

log = logging.getLogger(__name__)

REGISTERED_SCAN = "canonical_clothed.ply"
POSED_SCAN = "posed_clothed.ply"
"""The scan in the registered body's pose and frame (the rigid motion undone): where it is
signed, since unposing folds it where limbs meet (pipeline.cache.registered_truth)."""
REPORT = "registration.json"
OVERLAY = "overlay.png"
HEIGHT_RANGE_M = (0.9, 2.4)
"""Registered canonical bodies outside this height mean the stated unit is wrong."""


@dataclass(frozen=True)
class RegisterParams:
    """The ``register`` config section (see the schema for each key)."""

    seed: int
    samples: int
    n_points: int
    iterations: tuple[int, int]
    pose_freedom_deg: float
    max_residual_mm: float
    max_rotation_deg: float
    on_fail: str

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> RegisterParams:
        return cls(seed=p["seed"], samples=p["samples"], n_points=p["n_points"],
                   iterations=tuple(p["iterations"]), pose_freedom_deg=p["pose_freedom_deg"],
                   max_residual_mm=p["max_residual_mm"], max_rotation_deg=p["max_rotation_deg"],
                   on_fail=p["on_fail"])


def dataset_map(registration: Registration, frame: DatasetFrame) -> Similarity:
    """The similarity from the registered body's posed, lifted frame (pipeline axes, metres)
    to the data set's frame: the registration's rigid motion, then the stated axes and unit."""
    axes = frame.axes()
    scale = 1.0 / frame.unit_m
    return Similarity(scale=scale, rotation=axes @ registration.rotation,
                      translation=scale * axes @ registration.translation)


def to_pipeline_axes(points: np.ndarray, frame: DatasetFrame) -> np.ndarray:
    """Data set points ``(N, 3)`` with the stated axes and unit undone (metres, Z up)."""
    return frame.unit_m * np.asarray(points) @ frame.axes()


def _problems(registration: Registration, params: RegisterParams, frame: DatasetFrame,
              height_m: float) -> list[str]:
    """What is wrong with a registration, each naming the setting that explains it."""
    out = []
    median = registration.residual_mm[0]
    if median > params.max_residual_mm:
        out.append(f"median residual {median:.1f} mm > register.max_residual_mm "
                   f"{params.max_residual_mm:g} (data.frame.pose {frame.pose!r} may not be the "
                   "scan's pose)")
    turned = rotation_angle_deg(registration.rotation, np.eye(3))
    if turned > params.max_rotation_deg:
        out.append(f"the scan lies {turned:.0f}° from the stated frame > "
                   f"register.max_rotation_deg {params.max_rotation_deg:g} (check "
                   f"data.frame.up {frame.up!r} and data.frame.forward {frame.forward!r}, and "
                   "data.layout.scan_rotation)")
    low, high = HEIGHT_RANGE_M
    if not low <= height_m <= high:
        out.append(f"the registered body stands {height_m:.2f} m, outside {low}–{high} m "
                   f"(check data.frame.unit_m {frame.unit_m:g})")
    return out


def overlay(points: np.ndarray, body: np.ndarray, size: int = 384) -> np.ndarray:
    """Front (X–Z) and side (Y–Z) views of scan points (grey) over body vertices (red):
    ``(size, 2 · size, 3)`` uint8, both in pipeline axes."""
    both = np.concatenate([points, body])
    low, high = both.min(axis=0), both.max(axis=0)
    scale = 0.9 * size / max(float((high - low).max()), 1e-9)
    image = Image.new("RGB", (2 * size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for panel, axis in enumerate((0, 1)):
        for cloud, colour in ((body, (220, 40, 40)), (points, (90, 90, 90))):
            u = (cloud[:, axis] - 0.5 * (low[axis] + high[axis])) * scale + size * (panel + 0.5)
            v = size * 0.95 - (cloud[:, 2] - low[2]) * scale
            for x, y in zip(u[::3], v[::3], strict=True):
                draw.point((float(x), float(y)), fill=colour)
    return np.asarray(image)


def register_subject(*, subject: str, scan: Path, rotation: Path | None, frame: DatasetFrame,
                     params: RegisterParams, output: Path,
                     body_model: str = "anny", body_options: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """Register one subject's scan and write ``output/`` (see the module docstring).

    Raises:
        PipelineError: the scan or its rotation file is missing or unreadable, its height
            lies along another axis than ``data.frame.up``, or (``register.on_fail: fail``)
            the registration fails a check, naming the subject, the figure and the setting.
    """
    start = time.perf_counter()
    vertices, faces = read_mesh(scan)
    rotation_matrix = np.eye(3) if rotation is None else read_rotation(rotation)
    in_dataset = vertices @ rotation_matrix.T
    check_up_axis(in_dataset, frame, str(scan))
    points = to_pipeline_axes(in_dataset, frame)
    model = make_body_model(body_model, body_options)
    if not hasattr(model, "pose_from_degrees"):
        raise PipelineError(f"register: fit.body_model {body_model!r} cannot take the stated "
                            "pose; register with anny")
    pose = model.pose_from_degrees(frame.body_pose().as_dict())
    rng = np.random.default_rng(params.seed)
    samples = surface_samples(points, faces, params.samples, rng, name=str(scan))[0]
    registration = register_body(model, samples, pose, pose_freedom_deg=params.pose_freedom_deg,
                                 n_points=params.n_points, iterations=params.iterations,
                                 seed=params.seed)
    height = float(np.ptp(registration.canonical[:, 2]))
    problems = _problems(registration, params, frame, height)
    accepted = not problems
    if problems:
        message = (f"subject {subject}: the registration of scan {scan} fails: "
                   + "; ".join(problems))
        if params.on_fail == "fail":
            raise PipelineError(message + " (register.on_fail: skip leaves it out of "
                                "training instead)")
        log.warning("%s; left out of training (register.on_fail: skip)", message)
    canonical = unpose(registration.to_posed(points), registration.posed,
                       registration.transforms)
    similarity = dataset_map(registration, frame)
    pelvis = pose_body(model, torch.as_tensor(registration.shape, dtype=torch.float32),
                       torch.as_tensor(registration.pose, dtype=torch.float32)).pelvis
    report = {
        "subject": subject, "scan": str(scan),
        "rotation_file": None if rotation is None else str(rotation),
        "frame": {"up": frame.up, "forward": frame.forward, "unit_m": frame.unit_m,
                  "origin": frame.origin, "pose": frame.body_pose().to_dict()},
        "accepted": accepted, "problems": problems,
        "residual_mm": {"median": registration.residual_mm[0],
                        "p95": registration.residual_mm[1]},
        "rotation_from_stated_deg": rotation_angle_deg(registration.rotation, np.eye(3)),
        "height_m": height,
        "pelvis_in_dataset_frame": similarity.apply(pelvis[None])[0].tolist(),
        "to_dataset_frame": {**similarity.as_dict(), "rotation_file": rotation_matrix.tolist(),
                             "note": "x_dataset = scale · rotation @ y + translation for y on "
                                     "the registered body in the scan's pose (pipeline "
                                     "axes, metres, soles of the canonical pose at z = 0); "
                                     "the scan file holds rotation_fileᵀ @ x_dataset"},
        "shape": registration.shape.tolist(),
        "pose": np.round(registration.pose, 6).tolist(),
        "scan_points": len(vertices),
        "seconds": round(time.perf_counter() - start, 2),
    }
    with atomic_directory(output) as tmp:
        write_ply(tmp / REGISTERED_SCAN, canonical, faces)
        write_ply(tmp / POSED_SCAN, registration.to_posed(points), faces)
        np.savez_compressed(tmp / "registered_body.npz", canonical=registration.canonical,
                            posed=registration.posed, transforms=registration.transforms)
        save_png(tmp / OVERLAY, overlay(samples, registration.from_posed(registration.posed)))
        write_json(tmp / REPORT, report)
    log.info("%s: residual median %.1f mm, p95 %.1f mm, height %.2f m, %.1f s", subject,
             *registration.residual_mm, height, report["seconds"])
    return report


def run(*, subject: str, scan: Path, frame: str, output: Path, params: dict[str, Any],
        rotation: Path | None = None, body_model: str = "anny") -> None:
    """CLI entry: ``python -m pipeline register`` (``frame``: ``data.frame`` as JSON)."""
    register_subject(subject=subject, scan=scan, rotation=rotation,
                     frame=DatasetFrame.from_config(json.loads(frame)),
                     params=RegisterParams.from_params(params), output=output,
                     body_model=body_model)

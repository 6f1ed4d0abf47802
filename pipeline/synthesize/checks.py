"""Checks of a synthetic subject: its truth must agree with its photos and with itself.

Run by the ``check_synthetic`` rule after ``synthesize`` and usable on any synthetic set
(``python -m pipeline check-synthetic``). Each check yields a figure and a pass flag; the stage
fails, naming every failed check, when one does not pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from pipeline.camera import Camera
from pipeline.errors import PipelineError
from pipeline.io import read_json, write_json
from pipeline.meshio import read_ply

log = logging.getLogger(__name__)

MIN_PROJECTED_INSIDE = 0.995   # posed clothed vertices landing on the (1-px dilated) mask
MIN_BODY_INSIDE = 0.99         # naked canonical body vertices inside or on the clothed mesh
ON_SURFACE_TOLERANCE = 0.002   # metres: "on" the clothed surface
MIN_GARMENT_THICKNESS = 0.003  # metres: clothed and naked canonical meshes must differ


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    passed: bool
    detail: str = ""


def _load_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise PipelineError(f"missing truth file {path}")
    with Image.open(path) as image:
        return np.asarray(image)


def check_views(photos: Path, truth: Path) -> list[Check]:
    """Mask vs depth, keypoints vs mask, projected posed mesh vs mask, for every view."""
    mismatched, kp_total, kp_outside, inside_fracs = [], 0, [], []
    actions = sorted(p.name for p in photos.iterdir() if p.is_dir())
    if not actions:
        raise PipelineError(f"no actions in {photos}")
    for action in actions:
        cameras = read_json(photos / action / "cameras.json")["views"]
        views = read_json(truth / action / "views.json")["views"]
        posed = read_ply(truth / action / "clothed.ply").vertices
        for view, cam_dict in cameras.items():
            camera = Camera.from_dict(cam_dict)
            with Image.open(photos / action / f"{view}.jpg") as photo:
                size = photo.size
            mask = _load_png(truth / action / f"{view}_mask.png") > 0
            depth = _load_png(truth / action / f"{view}_depth.png")
            if size != (mask.shape[1], mask.shape[0]) or np.any(mask != (depth > 0)):
                mismatched.append(f"{action}/{view}")
            kps = np.asarray(views[view]["keypoints_coco17"])
            vis = kps[kps[:, 2] > 0]
            px = np.round(vis[:, :2]).astype(int)
            ok = mask[px[:, 1], px[:, 0]]
            kp_total += len(vis)
            kp_outside += [f"{action}/{view}#{i}" for i in np.flatnonzero(~ok)]
            uv, z = camera.project(posed)
            pix = np.round(uv).astype(int)
            in_image = ((pix[:, 0] >= 0) & (pix[:, 0] < mask.shape[1]) & (pix[:, 1] >= 0)
                        & (pix[:, 1] < mask.shape[0]) & (z > 0))
            grown = ndimage.binary_dilation(mask, iterations=1)
            inside_fracs.append(float(grown[pix[in_image, 1], pix[in_image, 0]].mean()))
    worst = min(inside_fracs)
    return [
        Check("mask_equals_finite_depth", float(len(mismatched)), 0.0, not mismatched,
              ", ".join(mismatched[:10])),
        Check("visible_keypoints_outside_mask", float(len(kp_outside)), 0.0, not kp_outside,
              f"{kp_total} visible keypoints; outside: {', '.join(kp_outside[:10])}"),
        Check("projected_vertices_inside_mask_min", worst, MIN_PROJECTED_INSIDE,
              worst >= MIN_PROJECTED_INSIDE,
              f"mean over views {np.mean(inside_fracs):.5f}"),
    ]


def body_inside_fraction(clothed: trimesh.Trimesh, body_vertices: np.ndarray) -> float:
    """Share of body vertices inside ``clothed`` or within ON_SURFACE_TOLERANCE of it."""
    inside = clothed.contains(body_vertices)
    outside = np.flatnonzero(~inside)
    if len(outside):
        _, dist, _ = trimesh.proximity.closest_point(clothed, body_vertices[outside])
        inside[outside[dist <= ON_SURFACE_TOLERANCE]] = True
    return float(inside.mean())


def garment_thickness(clothed_vertices: np.ndarray, labels: np.ndarray,
                      body: trimesh.Trimesh, seed: int = 0) -> tuple[float, float]:
    """Median and mean distance (m) of garment vertices (label != skin) to the naked body.

    Approximated with a KD-tree over 300k area-uniform samples of the body surface. The median
    is the garment thickness; the mean also counts skirts and dresses, whose hems hang far from
    the legs.
    """
    samples, _ = trimesh.sample.sample_surface(body, 300_000, seed=seed)
    garment = clothed_vertices[labels != 0]
    if len(garment) == 0:
        return 0.0, 0.0
    dist, _ = cKDTree(samples).query(garment)
    return float(np.median(dist)), float(dist.mean())


def check_canonical(truth: Path) -> list[Check]:
    """Watertight clothed canonical mesh that contains the naked body and differs from it."""
    clothed = read_ply(truth / "canonical_clothed.ply")
    body = read_ply(truth / "canonical_body.ply")
    with np.load(truth / "canonical_clothed.npz", allow_pickle=False) as data:
        labels = data["labels"]
    inside = body_inside_fraction(clothed, np.asarray(body.vertices))
    thickness, mean_distance = garment_thickness(np.asarray(clothed.vertices), labels, body)
    return [
        Check("canonical_clothed_watertight", float(clothed.is_watertight), 1.0,
              bool(clothed.is_watertight), f"{len(clothed.vertices)} vertices"),
        Check("body_vertices_inside_clothed", inside, MIN_BODY_INSIDE, inside >= MIN_BODY_INSIDE),
        Check("garment_thickness_median_m", thickness, MIN_GARMENT_THICKNESS,
              thickness >= MIN_GARMENT_THICKNESS,
              f"mean garment-to-body distance {mean_distance:.4f} m (skirts included)"),
    ]


def check_subject(*, subject: str, photos: Path, truth: Path, output: Path) -> dict[str, Any]:
    """Run every check; write the report, or raise naming each failed check."""
    checks = check_views(Path(photos), Path(truth)) + check_canonical(Path(truth))
    report = {"subject": subject, "passed": all(c.passed for c in checks),
              "checks": {c.name: {"value": c.value, "threshold": c.threshold,
                                  "passed": c.passed, "detail": c.detail} for c in checks}}
    for c in checks:
        log.info("%s %s: %.6g (threshold %.6g) %s", "PASS" if c.passed else "FAIL", c.name,
                 c.value, c.threshold, c.detail)
    failed = [c for c in checks if not c.passed]
    if failed:
        lines = "\n".join(f"  - {c.name}: {c.value:.6g} vs {c.threshold:.6g} {c.detail}"
                          for c in failed)
        raise PipelineError(f"synthetic subject {subject} fails checks:\n{lines}")
    write_json(output, report)
    return report


def run(*, subject: str, photos: Path, truth: Path, output: Path, params: dict[str, Any]) -> None:
    """CLI entry: ``python -m pipeline check-synthetic``."""
    del params  # the checks have fixed thresholds; the rule passes params for rerun tracking
    check_subject(subject=subject, photos=photos, truth=truth, output=output)

"""Silhouettes of projected meshes (for checks, metrics and overlays; not differentiable).

A mesh's silhouette is the union of its projected triangles, whatever their depth order, so
filling every projected triangle (OpenCV, 1/16-pixel precision) gives it exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

_SHIFT = 4  # fixed-point bits of cv2.fillPoly


def fill_triangles(pixels: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool silhouette of triangles ``faces`` (F, 3) over ``pixels`` (N, 2),
    pixel centres at integer coordinates. Triangles with a non-finite corner are skipped."""
    corners = pixels[faces]  # (F, 3, 2)
    keep = np.all(np.isfinite(corners), axis=(1, 2)) & np.all(np.abs(corners) < 1e5, axis=(1, 2))
    fixed = np.round(corners[keep] * (1 << _SHIFT)).astype(np.int32)
    canvas = np.zeros((size, size), dtype=np.uint8)
    for triangle in fixed:  # one call each: fillPoly's even-odd rule leaves overlaps empty
        cv2.fillConvexPoly(canvas, triangle, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def inside_fraction(body: np.ndarray, mask: np.ndarray) -> float:
    """Share of the body's silhouette pixels that lie inside ``mask`` (1.0 for an empty body:
    nothing is outside)."""
    area = body.sum()
    return float(np.logical_and(body, mask).sum() / area) if area else 1.0

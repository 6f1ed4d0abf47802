"""Multi-view consistency of 2D keypoints with calibrated cameras: triangulation, RANSAC
over view pairs to find keypoints that disagree with the other views, and repair of per-view
left/right mix-ups (a frequent error of 2D detectors in views from behind)."""

from __future__ import annotations

import numpy as np

from pipeline.skeleton import COCO17


def triangulate(points: np.ndarray, projections: np.ndarray,
                min_confidence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Confidence-weighted DLT.

    Args:
        points: (V, J, 3) pixel x, y and confidence per view.
        projections: (V, 3, 4) camera matrices ``K [R | t]``.
    Returns:
        (J, 3) world points and a (J,) bool: seen with ``min_confidence`` in >= 2 views.
    """
    n_joints = points.shape[1]
    out = np.zeros((n_joints, 3))
    ok = np.zeros(n_joints, dtype=bool)
    for j in range(n_joints):
        rows = []
        for view in range(points.shape[0]):
            x, y, c = points[view, j]
            if c >= min_confidence:
                p = projections[view]
                rows += [c * (x * p[2] - p[0]), c * (y * p[2] - p[1])]
        if len(rows) < 4:
            continue
        _, _, vt = np.linalg.svd(np.asarray(rows))
        if abs(vt[-1, 3]) > 1e-12:
            out[j] = vt[-1, :3] / vt[-1, 3]
            ok[j] = True
    return out, ok


def multiview_inliers(points: np.ndarray, projections: np.ndarray, threshold_px: float,
                      min_confidence: float = 0.2) -> np.ndarray:
    """Which 2D keypoints agree across calibrated views (RANSAC over view pairs).

    For each joint, every pair of confident views is triangulated; the pair whose point
    reprojects within ``threshold_px`` into the most views wins, and the observations within
    the threshold of the point triangulated from those inliers are kept; when no two views
    agree, none is. Joints seen in fewer than 3 views are kept as they are (nothing to vote
    with).

    Args:
        points: (V, J, 3) pixel x, y and confidence per view.
        projections: (V, 3, 4) camera matrices.
    Returns:
        (V, J) bool: True for observations to keep (and for missing ones, which weigh 0 anyway).
    """
    n_views, n_joints, _ = points.shape
    keep = np.ones((n_views, n_joints), dtype=bool)
    for j in range(n_joints):
        seen = np.nonzero(points[:, j, 2] >= min_confidence)[0]
        if len(seen) < 3:
            continue
        best: np.ndarray | None = None
        for i, a in enumerate(seen):
            for b in seen[i + 1:]:
                pair = np.zeros((n_views, 1, 3))
                pair[[a, b], 0] = points[[a, b], j]
                world, ok = triangulate(pair, projections, min_confidence)
                if not ok[0]:
                    continue
                inliers = _reprojection_error(world[0], points[seen, j, :2],
                                              projections[seen]) < threshold_px
                if best is None or inliers.sum() > best.sum():
                    best = inliers
        if best is None or best.sum() < 2:  # no two views agree: nothing can be trusted
            keep[seen, j] = False
            continue
        subset = np.zeros((n_views, 1, 3))
        subset[seen[best], 0] = points[seen[best], j]
        world, ok = triangulate(subset, projections, min_confidence)
        if ok[0]:
            error = _reprojection_error(world[0], points[seen, j, :2], projections[seen])
            keep[seen, j] = error < threshold_px
    return keep


def _reprojection_error(point: np.ndarray, pixels: np.ndarray,
                        projections: np.ndarray) -> np.ndarray:
    """(V,) pixel distance of the projections of world ``point`` (3,) to ``pixels`` (V, 2)."""
    h = projections @ np.append(point, 1.0)
    depth = h[:, 2]
    uv = h[:, :2] / np.where(np.abs(depth) < 1e-9, 1e-9, depth)[:, None]
    error = np.linalg.norm(uv - pixels, axis=1)
    return np.where(depth > 0, error, np.inf)


_GROUPS = {"face": ("eye", "ear"), "arms": ("shoulder", "elbow", "wrist"),
           "legs": ("hip", "knee", "ankle")}


def _pairs(parts: tuple[str, ...]) -> list[tuple[int, int]]:
    return [(COCO17.index(f"left_{p}"), COCO17.index(f"right_{p}")) for p in parts]


def fix_left_right(points: np.ndarray, projections: np.ndarray, threshold_px: float,
                   min_confidence: float = 0.2) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Undo per-view left/right swaps of the face, arms or legs (a frequent 2D detector error
    in views from behind) by voting against the other views.

    Each joint is triangulated from its multi-view inliers; in each view, a group whose
    swapped labels reproject at less than half the error of its own labels is swapped back.

    Args:
        points: (V, J, 3) pixel x, y and confidence per view; projections: (V, 3, 4).
    Returns:
        The corrected (V, J, 3) points and the list of (view index, group) swapped.
    """
    keep = multiview_inliers(points, projections, threshold_px, min_confidence)
    world, ok = triangulate(points * keep[..., None], projections, min_confidence)
    cap = 4.0 * threshold_px
    fixed = points.copy()
    swapped = []
    for view in range(points.shape[0]):
        for group, parts in _GROUPS.items():
            own = swap = 0.0
            counted = 0
            for left, right in _pairs(parts):
                for joint, other in ((left, right), (right, left)):
                    if ok[joint] and points[view, other, 2] >= min_confidence and (
                            points[view, joint, 2] >= min_confidence):
                        pixels = points[view, [joint, other], :2]
                        errors = _reprojection_error(world[joint], pixels,
                                                     projections[[view, view]])
                        own += min(errors[0], cap)
                        swap += min(errors[1], cap)
                        counted += 1
            if counted >= 2 and swap < 0.5 * own and own > counted * threshold_px:
                for left, right in _pairs(parts):
                    fixed[view, [left, right]] = points[view, [right, left]]
                swapped.append((view, group))
    return fixed, swapped

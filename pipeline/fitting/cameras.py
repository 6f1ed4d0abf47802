"""Cameras of the fit and how the body's global placement is initialised from keypoints.

Two camera types, both projecting world points of each action into each view's 512 crop:

* ``calibrated``: the data set's K, R, t adjusted by the crop (fixed during the fit);
* ``weak_perspective``: the paper's camera, ``u = s (R_v X)_xy + t`` per view, with a rotation
  ``R_v``, a scale ``s`` (pixels per metre) and a translation ``t`` (pixels), all optimised.

Initialisation needs no learned regressor: with calibrated cameras, the shoulders and hips are
triangulated (confidence-weighted DLT) and the body model's torso is aligned to them (weighted
Kabsch); with weak-perspective cameras, each view's yaw about the body's vertical axis is
chosen from a 10-degree grid by the 2D fit of the torso and head keypoints, with the scale and
translation in closed form.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pipeline.bodymodel import axis_angle_to_matrix
from pipeline.errors import PipelineError
from pipeline.fitting.inputs import SubjectInput
from pipeline.skeleton import COCO17

TORSO = [COCO17.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
PLACEMENT_FALLBACK = [COCO17.index(n) for n in ("nose", "left_ear", "right_ear", "left_knee",
                                                "right_knee")]
TORSO_HEAD = TORSO + [COCO17.index(n) for n in ("nose", "left_ear", "right_ear")]
# Camera looking at a body that faces -Y (Z up): image x = body's left (+X), image y = -Z.
FRONT = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


class CalibratedCameras(torch.nn.Module):
    """Fixed pinhole cameras: K, R, t of shape (A, V, 3, 3), (A, V, 3, 3), (A, V, 3)."""

    kind = "calibrated"

    def __init__(self, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("K", torch.as_tensor(K, dtype=torch.float32))
        self.register_buffer("R", torch.as_tensor(R, dtype=torch.float32))
        self.register_buffer("t", torch.as_tensor(t, dtype=torch.float32))

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(A, N, 3) world points -> (A, V, N, 2) crop pixels (depth clamped at 1 cm)."""
        cam = torch.einsum("avij,anj->avni", self.R, points) + self.t[:, :, None]
        depth = cam[..., 2:3].clamp(min=0.01)
        pixels = torch.einsum("avij,avnj->avni", self.K, cam / depth)
        return pixels[..., :2]

    def export(self) -> dict[str, np.ndarray]:
        return {"camera_K": self.K.numpy(), "camera_R": self.R.numpy(),
                "camera_t": self.t.numpy()}


class WeakPerspectiveCameras(torch.nn.Module):
    """Per-view rotation (axis-angle), log-scale and 2D translation, all learnable."""

    kind = "weak_perspective"

    def __init__(self, rotvec: np.ndarray, scale: np.ndarray, trans: np.ndarray) -> None:
        super().__init__()
        self.rotvec = torch.nn.Parameter(torch.as_tensor(rotvec, dtype=torch.float32))
        self.log_scale = torch.nn.Parameter(torch.log(torch.as_tensor(scale,
                                                                      dtype=torch.float32)))
        self.trans = torch.nn.Parameter(torch.as_tensor(trans, dtype=torch.float32))

    def project(self, points: torch.Tensor) -> torch.Tensor:
        rotation = axis_angle_to_matrix(self.rotvec)  # (A, V, 3, 3)
        cam = torch.einsum("avij,anj->avni", rotation[..., :2, :], points)
        return torch.exp(self.log_scale)[..., None, None] * cam + self.trans[:, :, None]

    def export(self) -> dict[str, np.ndarray]:
        return {"camera_R": axis_angle_to_matrix(self.rotvec).detach().numpy(),
                "camera_scale": torch.exp(self.log_scale).detach().numpy(),
                "camera_trans": self.trans.detach().numpy()}


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


def kabsch(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (3, 3) and translation t (3,) minimising ``|R source + t - target|``
    over (N, 3) point pairs (N >= 3, not collinear)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    u, _, vt = np.linalg.svd((source - mu_s).T @ (target - mu_t))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rotation, mu_t - rotation @ mu_s


def rotation_to_rotvec(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) -> (3,) axis-angle."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(rotation).as_rotvec()


def init_calibrated(subject: SubjectInput, keypoints: np.ndarray,
                    model_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per action orientation (A, 3) axis-angle and translation (A, 3) from triangulated
    shoulders and hips (with the head and knees when fewer than 3 of those are seen);
    ``keypoints`` (A, V, 17, 3) padded per action, ``model_points`` (17, 3) the body model's
    keypoints at zero placement."""
    orient, transl = [], []
    for a, action in enumerate(subject.actions):
        points = keypoints[a, :len(action.views)]
        projections = np.stack([v.camera.K @ np.hstack([v.camera.R, v.camera.t[:, None]])
                                for v in action.views])
        world, ok = triangulate(points, projections)
        use = np.zeros(len(COCO17), dtype=bool)
        use[TORSO] = ok[TORSO]
        if use.sum() < 3:  # e.g. hips hidden by clothes: add the head and the knees
            use[PLACEMENT_FALLBACK] = ok[PLACEMENT_FALLBACK]
        if use.sum() < 3:
            raise PipelineError(
                f"{subject.subject}/{action.name}: cannot place the body: fewer than 3 of the "
                "shoulders, hips, head and knee keypoints are seen in at least 2 views")
        rotation, translation = kabsch(model_points[use], world[use])
        orient.append(rotation_to_rotvec(rotation))
        transl.append(translation)
    return np.asarray(orient), np.asarray(transl)


def _yaw_matrix(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def init_weak_perspective(subject: SubjectInput, model_points: np.ndarray,
                          n_views: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per view rotation (A, V, 3), scale (A, V), translation (A, V, 2) from a yaw grid search;
    ``model_points`` (17, 3) the body model's keypoints at zero placement. Views with too few
    keypoints get the median scale, a frontal rotation and the crop centre."""
    n_actions = len(subject.actions)
    rotvec = np.zeros((n_actions, n_views, 3))
    scale = np.full((n_actions, n_views), np.nan)
    trans = np.tile(np.full(2, subject.crop_size / 2.0), (n_actions, n_views, 1))
    for a, action in enumerate(subject.actions):
        for v, view in enumerate(action.views):
            c = view.keypoints[TORSO_HEAD, 2]
            if (c > 0.3).sum() < 3:
                rotvec[a, v] = rotation_to_rotvec(FRONT)
                continue
            best = None
            for angle in np.radians(np.arange(0.0, 360.0, 10.0)):
                rotation = FRONT @ _yaw_matrix(angle)
                proj = (model_points[TORSO_HEAD] @ rotation.T)[:, :2]
                s, t, err = _similarity_fit(proj, view.keypoints[TORSO_HEAD, :2], c)
                if s > 0 and (best is None or err < best[0]):
                    best = (err, rotation, s, t)
            if best is not None:
                rotvec[a, v], scale[a, v], trans[a, v] = (rotation_to_rotvec(best[1]), best[2],
                                                          best[3])
    fallback = np.nanmedian(scale) if np.isfinite(scale).any() else subject.crop_size / 2.0
    return rotvec, np.where(np.isfinite(scale), scale, fallback), trans


def _similarity_fit(source: np.ndarray, target: np.ndarray,
                    weights: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Weighted least squares ``target ~ s source + t`` (no rotation): s, t, residual."""
    w = weights / max(weights.sum(), 1e-9)
    mu_s, mu_t = w @ source, w @ target
    ds, dt = source - mu_s, target - mu_t
    s = float((w * (ds * dt).sum(1)).sum() / max((w * (ds * ds).sum(1)).sum(), 1e-12))
    t = mu_t - s * mu_s
    err = float((w * ((s * source + t - target) ** 2).sum(1)).sum())
    return s, t, err


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

"""Cameras of the fit and how the body's global placement is initialised from keypoints.

Two camera types, both projecting world points of each action into each view's 512 crop:

* ``calibrated``: the data set's K, R, t adjusted by the crop (fixed during the fit);
* ``weak_perspective``: the paper's camera, ``u = s (R_v X)_xy + t`` per view, with a rotation
  ``R_v``, a scale ``s`` (pixels per metre) and a translation ``t`` (pixels), all optimised.

Initialisation needs no learned regressor: with calibrated cameras, the shoulders and hips are
triangulated (confidence-weighted DLT) and the body model's torso is aligned to them (Kabsch);
when too few are seen in two views, the body is placed where the keypoint rays meet and turned
by a yaw search; with weak-perspective cameras, each view's yaw about the body's vertical axis is
chosen from a 10-degree grid by the 2D fit of the torso and head keypoints, with the scale and
translation in closed form.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from pipeline.bodymodel import axis_angle_to_matrix
from pipeline.errors import PipelineError
from pipeline.fitting.inputs import SubjectInput
from pipeline.fitting.multiview import triangulate
from pipeline.skeleton import COCO17

log = logging.getLogger(__name__)
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
        # One (3, 4) map per view: K's first two rows times [R | t], then the camera depth
        # row [R | t]₃; pixels are its first two outputs over the third.
        extrinsic = torch.cat([self.R, self.t[..., None]], -1)  # (A, V, 3, 4)
        self.register_buffer("_map", torch.cat([self.K[..., :2, :] @ extrinsic,
                                                extrinsic[..., 2:3, :]], -2))

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(A, N, 3) world points -> (A, V, N, 2) crop pixels (depth clamped at 1 cm):
        ``K (R X + t) / depth``, one product per view."""
        mapped = torch.einsum("avij,anj->avni", self._map[..., :3], points) + (
            self._map[..., 3][:, :, None])
        return mapped[..., :2] / mapped[..., 2:3].clamp(min=0.01)

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
        if use.sum() >= 3:
            rotation, translation = kabsch(model_points[use], world[use])
        else:  # too few triangulated points (few or opposite views): search the yaw instead
            log.info("%s/%s: too few keypoints seen in two views to triangulate the torso; "
                     "placing the body by ray intersection and a yaw search", subject.subject,
                     action.name)
            rotation, translation = _ray_placement(action.views, points, model_points,
                                                   f"{subject.subject}/{action.name}")
        orient.append(rotation_to_rotvec(rotation))
        transl.append(translation)
    return np.asarray(orient), np.asarray(transl)


def _ray_placement(views: tuple, points: np.ndarray, model_points: np.ndarray,
                   name: str) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (3, 3) and translation (3,) of the body when triangulation cannot place it.

    "Up" is the mean of the cameras' up directions; the yaw about it is searched on a
    10-degree grid. For each yaw the translation solving the (linear) DLT equations of the
    head, torso and knee keypoints (the arms' pose is not known yet) in every view is found by
    weighted least squares; the yaw with the least reprojection error wins.
    """
    confident = points[..., 2] >= 0.3
    confident[:, [j for j in range(len(COCO17)) if j not in TORSO_HEAD + PLACEMENT_FALLBACK]] = (
        False)
    seen = [v for v in range(len(views)) if confident[v].any()]
    if sum(int(confident[v].sum()) for v in seen) < 2:
        raise PipelineError(f"{name}: cannot place the body: fewer than 2 confident head, "
                            "torso or knee keypoints in all views")
    projections = {v: views[v].camera.K @ np.hstack([views[v].camera.R,
                                                     views[v].camera.t[:, None]]) for v in seen}
    up = np.mean([-views[v].camera.R[1] for v in seen], axis=0)
    tilt = _rotation_between(np.array([0.0, 0.0, 1.0]), up / np.linalg.norm(up))
    best = None
    for angle in np.radians(np.arange(0.0, 360.0, 10.0)):
        rotation = tilt @ _yaw_matrix(angle)
        turned = model_points @ rotation.T
        rows, rhs = [], []
        for v in seen:
            p = projections[v]
            for j in np.flatnonzero(confident[v]):
                w = points[v, j, 2]
                for axis in (0, 1):
                    line = points[v, j, axis] * p[2] - p[axis]
                    rows.append(w * line[:3])
                    rhs.append(-w * (line[:3] @ turned[j] + line[3]))
        translation = np.linalg.lstsq(np.asarray(rows), np.asarray(rhs), rcond=None)[0]
        error = 0.0
        for v in seen:
            pixels, depth = views[v].camera.project(turned + translation)
            if np.any(depth[confident[v]] <= 0):
                error = np.inf
                break
            error += float((points[v, confident[v], 2] * np.linalg.norm(
                pixels[confident[v]] - points[v, confident[v], :2], axis=1)).sum())
        if best is None or error < best[0]:
            best = (error, rotation, translation)
    if not np.isfinite(best[0]):
        raise PipelineError(f"{name}: cannot place the body in front of the cameras")
    return best[1], best[2]


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) smallest rotation taking unit vector ``a`` to unit vector ``b``."""
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis), float(a @ b)
    if sin < 1e-9:
        return np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(axis / sin * np.arctan2(sin, cos)).as_matrix()


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

"""Per-subject body fit: one shape for all actions, one pose per action shared by its views.

Staged optimisation (Adam), batched over all actions and views:

1. ``global``: the body's placement (calibrated cameras: per action orientation and
   translation; weak perspective: every view's rotation, scale and translation) against the
   torso and head keypoints, the body in its neutral pose;
2. ``body``: adds pose and shape, all keypoints, pose prior (joint limits) and shape prior;
3. ``silhouette``: adds the silhouette term (skipped when ``fit.silhouette`` is ``none``);
4. ``refine``: only when some views fail the checks below: the same loss without them.

A non-finite loss stops the fit at once, naming the action and view that produced it; after
the fit every view is checked (keypoint reprojection error, share of the fitted body inside the
mask) and an action left with fewer than ``min_views`` good views fails the fit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipeline.bodymodel import BodyModel, BodyOutput
from pipeline.errors import PipelineError
from pipeline.fitting import cameras as cams
from pipeline.fitting import multiview
from pipeline.fitting.inputs import SubjectInput
from pipeline.fitting.losses import BuiltinSilhouette, Pytorch3dSilhouette, keypoint_loss
from pipeline.fitting.raster import fill_triangles, inside_fraction, mask_iou
from pipeline.fitting.scale import cameras_measure_size, height_loss, standing_height
from pipeline.progress import progress

log = logging.getLogger(__name__)
_N_CHAMFER_VERTICES = 2000
STAGES = ("global", "body", "silhouette")


@dataclass(frozen=True)
class FitSettings:
    """The ``fit`` config section, less the body model (see the config schema)."""

    camera: str = "calibrated"
    silhouette: str = "builtin"
    iterations: dict[str, int] = field(default_factory=lambda: {
        "global": 40, "body": 150, "silhouette": 80, "refine": 60})
    learning_rate: float = 0.03
    keypoint_sigma_px: float = 30.0
    min_keypoint_confidence: float = 0.2
    silhouette_sigma_px: float = 10.0
    weights: dict[str, float] = field(default_factory=lambda: {
        "keypoints": 1.0, "silhouette": 0.5, "pose_prior": 1.0, "shape_prior": 0.01,
        "height": 1.0})
    max_view_error_px: float = 20.0
    min_view_inside: float = 0.6
    min_views: int = 2
    outlier_px: float = 25.0
    sigma_anneal: float = 4.0
    log_every: int = 10
    height_m: float | None = None  # the person's standing height, when known (per subject)
    prior_height_spread: float = 0.05


@dataclass
class FitResult:
    """Everything the fit found; arrays are numpy, (A, V) arrays are padded (``valid``)."""

    shape: np.ndarray
    pose: np.ndarray
    orient: np.ndarray
    transl: np.ndarray
    cameras: dict[str, np.ndarray]
    posed: dict[str, np.ndarray]
    canonical_vertices: np.ndarray
    canonical_keypoints: np.ndarray
    valid: np.ndarray
    metrics: dict[str, np.ndarray]
    view_ok: np.ndarray
    history: list[dict[str, Any]]
    shape_summary: dict[str, Any]


def _padded(subject: SubjectInput) -> tuple[np.ndarray, np.ndarray]:
    n_a, n_v = len(subject.actions), subject.max_views()
    keypoints = np.zeros((n_a, n_v, 17, 3))
    valid = np.zeros((n_a, n_v), dtype=bool)
    for a, action in enumerate(subject.actions):
        for v, view in enumerate(action.views):
            keypoints[a, v], valid[a, v] = view.keypoints, True
    return keypoints, valid


def _calibrated(subject: SubjectInput) -> cams.CalibratedCameras:
    n_a, n_v = len(subject.actions), subject.max_views()
    K = np.tile(np.eye(3), (n_a, n_v, 1, 1))
    R = np.tile(np.eye(3), (n_a, n_v, 1, 1))
    t = np.tile([0.0, 0.0, 10.0], (n_a, n_v, 1))  # padding: any camera in front of the body
    for a, action in enumerate(subject.actions):
        for v, view in enumerate(action.views):
            K[a, v], R[a, v], t[a, v] = view.camera.K, view.camera.R, view.camera.t
    return cams.CalibratedCameras(K, R, t)


def _drop_outliers(subject: SubjectInput, keypoints: np.ndarray, threshold: float) -> np.ndarray:
    """Swap back left/right mix-ups, then zero the confidence of keypoints that disagree
    with the other views (calibrated cameras)."""
    keypoints = keypoints.copy()
    for a, action in enumerate(subject.actions):
        n = len(action.views)
        projections = np.stack([v.camera.K @ np.hstack([v.camera.R, v.camera.t[:, None]])
                                for v in action.views])
        fixed, swapped = multiview.fix_left_right(keypoints[a, :n], projections, threshold)
        for v, group in swapped:
            log.info("%s/%s/%s: left and right %s swapped back (they agree with the other "
                     "views that way)", subject.subject, action.name, action.views[v].name, group)
        keypoints[a, :n] = fixed
        keep = multiview.multiview_inliers(keypoints[a, :n], projections, threshold)
        dropped = (~keep) & (keypoints[a, :n, :, 2] > 0)
        keypoints[a, :n, :, 2] *= keep
        for v, view in enumerate(action.views):
            if dropped[v].any():
                log.info("%s/%s/%s: %d keypoints disagree with the other views (> %.0f px) and "
                         "are ignored", subject.subject, action.name, view.name,
                         int(dropped[v].sum()), threshold)
    return keypoints


def views_per_action(subject: SubjectInput) -> list[int]:
    """The number of views of each action of the fit's input."""
    return [len(action.views) for action in subject.actions]


class _Problem:
    """The parameters and the loss of one subject's fit."""

    def __init__(self, model: BodyModel, subject: SubjectInput, settings: FitSettings) -> None:
        self.model, self.subject, self.settings = model, subject, settings
        keypoints, valid = _padded(subject)
        if settings.camera == "calibrated" and subject.calibrated and settings.outlier_px > 0:
            keypoints = _drop_outliers(subject, keypoints, settings.outlier_px)
        self.target = torch.as_tensor(keypoints, dtype=torch.float32)
        self.valid = torch.as_tensor(valid)
        self.active = self.valid.clone()  # views that count in the loss (refit drops some)
        n_a, n_v = valid.shape
        neutral = model.neutral_pose()
        self.shape = model.initial_shape().clone().requires_grad_(True)
        self.pose = neutral.repeat(n_a, 1, 1).requires_grad_(True)
        zero = model.forward(self.shape.detach(), neutral[None], torch.zeros(1, 3),
                             torch.zeros(1, 3)).keypoints[0].detach().numpy()
        if settings.camera == "calibrated":
            if not subject.calibrated:
                raise PipelineError(f"{subject.subject}: fit.camera is 'calibrated' but the "
                                    "crops carry no cameras; use fit.camera: weak_perspective")
            self.cameras: torch.nn.Module = _calibrated(subject)
            orient, transl = cams.init_calibrated(subject, keypoints, zero)
        elif settings.camera == "weak_perspective":
            self.cameras = cams.WeakPerspectiveCameras(
                *cams.init_weak_perspective(subject, zero, n_v))
            orient, transl = np.zeros((n_a, 3)), np.zeros((n_a, 3))
        else:
            raise PipelineError(f"fit.camera: unknown camera type {settings.camera!r}")
        self.orient = torch.tensor(orient, dtype=torch.float32, requires_grad=True)
        self.transl = torch.tensor(transl, dtype=torch.float32, requires_grad=True)
        self.silhouette = self._silhouette_term(n_v)
        n_vertices = len(model.skinning_weights)
        self.subset = torch.arange(0, n_vertices, max(1, n_vertices // _N_CHAMFER_VERTICES))
        # Without cameras that measure size (weak perspective, or one calibrated photo per
        # pose) or a given height the data cannot tell size from distance: the prior's mean
        # phenotype's standing height sets it, within prior_height_spread.
        self.prior_height = None
        if not cameras_measure_size(settings.camera, views_per_action(subject)) \
                and settings.height_m is None and settings.prior_height_spread > 0:
            with torch.no_grad():
                self.prior_height = float(standing_height(model, model.initial_shape()))

    def _silhouette_term(self, n_views: int) -> Any:
        alphas = [[v.alpha for v in a.views] for a in self.subject.actions]
        kind = self.settings.silhouette
        if kind == "builtin":
            sigma = self.settings.silhouette_sigma_px
            return BuiltinSilhouette(alphas, n_views, sigma_outside=sigma, sigma_boundary=sigma)
        if kind == "pytorch3d":
            if self.settings.camera != "calibrated":
                raise PipelineError("fit.silhouette: pytorch3d needs fit.camera: calibrated")
            exported = self.cameras.export()
            return Pytorch3dSilhouette(alphas, n_views, self.model.faces, exported["camera_K"],
                                       exported["camera_R"], exported["camera_t"])
        if kind == "none":
            return None
        raise PipelineError(f"fit.silhouette: unknown term {kind!r}")

    def groups(self, stage: str) -> list[dict[str, Any]]:
        lr = self.settings.learning_rate
        placement: list[dict[str, Any]]
        if isinstance(self.cameras, cams.WeakPerspectiveCameras):
            placement = [{"params": [self.cameras.rotvec], "lr": lr},
                         {"params": [self.cameras.log_scale], "lr": lr * 0.3},
                         {"params": [self.cameras.trans], "lr": lr * 50.0}]
        else:
            placement = [{"params": [self.orient], "lr": lr},
                         {"params": [self.transl], "lr": lr * 0.3}]
        if stage == "global":
            return placement
        return [*placement, {"params": [self.pose], "lr": lr},
                {"params": [self.shape], "lr": lr * 2.0}]

    def body(self) -> BodyOutput:
        return self.model.forward(self.shape, self.pose, self.orient, self.transl)

    def loss(self, stage: str, sigma_scale: float = 1.0,
             ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Total loss, the (A, V) per-view part, and the terms for the history;
        ``sigma_scale`` widens the keypoint Geman-McClure scale (annealing)."""
        s = self.settings
        out = self.body()
        joints = cams.TORSO_HEAD if stage == "global" else None
        kp = keypoint_loss(self.cameras.project(out.keypoints), self.target,
                           s.keypoint_sigma_px * sigma_scale, s.min_keypoint_confidence, joints)
        per_view = s.weights["keypoints"] * kp
        terms = {"keypoints": kp}
        if stage in ("silhouette", "refine") and self.silhouette is not None:
            if isinstance(self.silhouette, BuiltinSilhouette):
                sil = self.silhouette(self.cameras.project(out.vertices), self.subset)
            else:
                sil = self.silhouette(out.vertices)
            per_view = per_view + s.weights["silhouette"] * sil
            terms["silhouette"] = sil
        per_view = torch.where(self.active, per_view, torch.zeros_like(per_view))
        total = per_view.sum() / self.active.sum()
        record = {name: float((t.detach() * self.active).sum() / self.active.sum())
                  for name, t in terms.items()}
        if stage != "global":
            pose_prior = self.model.pose_prior(self.pose)
            shape_prior = self.model.shape_prior(self.shape)
            total = total + s.weights["pose_prior"] * pose_prior + (
                s.weights["shape_prior"] * shape_prior)
            record.update(pose_prior=float(pose_prior.detach()),
                          shape_prior=float(shape_prior.detach()))
            if s.height_m is not None:
                height = height_loss(self.model, self.shape, s.height_m)
                total = total + s.weights.get("height", 1.0) * height
                record["height"] = float(height.detach())
            elif self.prior_height is not None:
                height = height_loss(self.model, self.shape, self.prior_height,
                                     s.prior_height_spread)
                total = total + height
                record["prior_height"] = float(height.detach())
        record["total"] = float(total.detach())
        return total, per_view, record

    def check_finite(self, total: torch.Tensor, per_view: torch.Tensor, where: str) -> None:
        if torch.isfinite(total):
            return
        bad = [(self.subject.actions[a].name, self.subject.actions[a].views[v].name)
               for a, v in zip(*np.nonzero(~torch.isfinite(per_view).numpy()), strict=True)
               if v < len(self.subject.actions[a].views)]
        culprit = (", ".join(f"action {a} view {v}" for a, v in bad) if bad
                   else "the pose or shape prior")
        raise PipelineError(f"{self.subject.subject}: the fit diverged ({where}): non-finite "
                            f"loss from {culprit}")


def _anneal(settings: FitSettings, stage: str, iteration: int, n_iterations: int) -> float:
    """Keypoint scale factor: wide (``sigma_anneal``) at the start of the placement and body
    stages, shrinking geometrically to 1 over their first half, so that the robust loss does
    not ignore limbs that start far from their keypoints."""
    if stage in ("silhouette", "refine") or settings.sigma_anneal <= 1.0:
        return 1.0
    progress_ = min(1.0, iteration / max(1.0, 0.5 * n_iterations))
    return float(settings.sigma_anneal ** (1.0 - progress_))


def _run_stage(problem: _Problem, stage: str, n_iterations: int,
               history: list[dict[str, Any]], bar: Any) -> None:
    settings = problem.settings
    optimiser = torch.optim.Adam(problem.groups(stage))
    for iteration in range(n_iterations):
        optimiser.zero_grad()
        total, per_view, record = problem.loss(stage, _anneal(settings, stage, iteration,
                                                              n_iterations))
        problem.check_finite(total, per_view, f"stage {stage}, iteration {iteration}")
        total.backward()
        optimiser.step()
        bar.update(1)
        if iteration % settings.log_every == 0 or iteration == n_iterations - 1:
            history.append({"stage": stage, "iteration": iteration, **record})


def fit_subject(model: BodyModel, subject: SubjectInput, settings: FitSettings) -> FitResult:
    """Fit ``model`` to every action and view of ``subject`` (see the module docstring)."""
    problem = _Problem(model, subject, settings)
    stages = [(name, settings.iterations.get(name, 0)) for name in STAGES
              if not (name == "silhouette" and settings.silhouette == "none")]
    refine = settings.iterations.get("refine", 0)
    history: list[dict[str, Any]] = []
    bar = progress(sum(n for _, n in stages) + refine, f"fit {subject.subject}")
    for stage, n_iterations in stages:
        _run_stage(problem, stage, n_iterations, history, bar)
    measured = _measure_views(problem)
    flagged = problem.valid.numpy() & ~measured[2]
    if refine and flagged.any():
        log.info("%s: refitting without the views flagged so far: %s", subject.subject,
                 ", ".join(f"{subject.actions[a].name}/{subject.actions[a].views[v].name}"
                           for a, v in zip(*np.nonzero(flagged), strict=True)))
        problem.active = torch.as_tensor(problem.valid.numpy() & ~flagged)
        _run_stage(problem, "refine", refine, history, bar)
        measured = _measure_views(problem)  # the bodies moved: check every view again
    bar.close()
    for name, tensor in (("shape", problem.shape), ("pose", problem.pose),
                         ("orientation", problem.orient), ("translation", problem.transl)):
        if not torch.isfinite(tensor).all():
            raise PipelineError(f"{subject.subject}: the fit diverged: non-finite {name}")
    return _result(problem, history, flagged, measured)


def _result(problem: _Problem, history: list[dict[str, Any]], flagged: np.ndarray,
            measured: tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray],
            ) -> FitResult:
    """The fit's arrays from the final measurement of the views (a view flagged before the
    refit stays flagged)."""
    with torch.no_grad():
        canonical = problem.model.canonical(problem.shape)
    out, metrics, view_ok = measured
    view_ok = view_ok & ~flagged
    _enforce(problem, metrics, view_ok)
    pixels, keypoints_px = out["pixels"], out["keypoints_px"]
    return FitResult(
        shape=problem.shape.detach().numpy(), pose=problem.pose.detach().numpy(),
        orient=problem.orient.detach().numpy(), transl=problem.transl.detach().numpy(),
        cameras=problem.cameras.export(),
        posed={"vertices": out["vertices"], "keypoints": out["keypoints"],
               "bone_transforms": out["bone_transforms"], "keypoints_px": keypoints_px,
               "pixels": pixels},
        canonical_vertices=canonical.vertices.detach().numpy(),
        canonical_keypoints=canonical.keypoints.detach().numpy(),
        valid=problem.valid.numpy(), metrics=metrics, view_ok=view_ok, history=history,
        shape_summary=problem.model.shape_summary(problem.shape))


def _measure_views(problem: _Problem,
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """The current bodies and, per view, the median keypoint error (px, confidence >= 0.5),
    IoU and inside share of the fitted body's silhouette against the mask, and which views
    pass the checks."""
    s, subject = problem.settings, problem.subject
    with torch.no_grad():
        body = problem.body()
        out = {"vertices": body.vertices.numpy(), "keypoints": body.keypoints.numpy(),
               "bone_transforms": body.bone_transforms.numpy(),
               "pixels": problem.cameras.project(body.vertices).numpy(),
               "keypoints_px": problem.cameras.project(body.keypoints).numpy()}
    shape = problem.valid.shape
    error = np.full(shape, np.nan)
    iou = np.full(shape, np.nan)
    inside = np.full(shape, np.nan)
    target = problem.target.numpy()
    for a, action in enumerate(subject.actions):
        for v, view in enumerate(action.views):
            seen = target[a, v, :, 2] >= 0.5
            if seen.any():
                error[a, v] = np.median(np.linalg.norm(
                    out["keypoints_px"][a, v, seen] - target[a, v, seen, :2], axis=1))
            silhouette = fill_triangles(out["pixels"][a, v], problem.model.faces,
                                        subject.crop_size)
            mask = view.alpha > 0.5
            iou[a, v] = mask_iou(silhouette, mask)
            inside[a, v] = inside_fraction(silhouette, mask)
    view_ok = problem.valid.numpy() & ~(error > s.max_view_error_px) & ~(
        inside < s.min_view_inside)
    return out, {"keypoint_error_px": error, "silhouette_iou": iou, "inside": inside}, view_ok


def _enforce(problem: _Problem, metrics: dict[str, np.ndarray], view_ok: np.ndarray) -> None:
    """Log the flagged views; fail an action left with fewer than ``min_views`` good views."""
    error, inside = metrics["keypoint_error_px"], metrics["inside"]
    subject = problem.subject
    for a, action in enumerate(subject.actions):
        bad = [f"{view.name} (keypoint error {error[a, v]:.1f} px, inside {inside[a, v]:.2f})"
               for v, view in enumerate(action.views) if not view_ok[a, v]]
        if bad:
            log.warning("%s/%s: views flagged as badly fitted: %s", subject.subject,
                        action.name, "; ".join(bad))
        if view_ok[a].sum() < problem.settings.min_views:
            raise PipelineError(
                f"{subject.subject}/{action.name}: the fit diverged: only "
                f"{int(view_ok[a].sum())} views fit (need {problem.settings.min_views}, "
                "fit.min_views); bad views: " + "; ".join(bad))

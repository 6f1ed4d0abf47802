"""Parametric body models behind one small, differentiable interface (torch).

A body model maps a subject's **shape** ``(S,)``, and per frame a **pose** ``(N, J, 3)``, a
global **orientation** ``(N, 3)`` (axis-angle, radians, about the model's root joint) and a
**translation** ``(N, 3)`` (metres, world frame), to posed vertices, COCO-17 keypoints and the
per-bone transforms that carry the **canonical** body (the subject's body in the model's
canonical star pose) to each posed body::

    posed_vertices[n, v] = sum_b skinning_weights[v, b] * bone_transforms[n, b] @ canonical[v]

exactly for Anny; for SMPL-X up to its pose-corrective blend shapes (see its module). The
training stage maps points between canonical and posed space with these transforms.

Backends (``fit.body_model`` in config): ``anny`` (default; free, ships its data) and
``smplx`` (SMPL-X through the ``smplx`` package; licensed model files by path). Each is
built by :func:`make_body_model` and imported only when chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class BodyOutput:
    """A batch of posed bodies (all tensors keep the autograd graph).

    vertices: (N, V, 3); keypoints: (N, 17, 3) in :data:`pipeline.skeleton.COCO17` order;
    bone_transforms: (N, B, 4, 4) canonical -> posed, world frame.
    """

    vertices: torch.Tensor
    keypoints: torch.Tensor
    bone_transforms: torch.Tensor


@dataclass(frozen=True)
class CanonicalBody:
    """The subject's body in the canonical pose: vertices (V, 3), keypoints (17, 3)."""

    vertices: torch.Tensor
    keypoints: torch.Tensor


@dataclass(frozen=True)
class Skeleton:
    """The bones of a body in its canonical pose: ``parents`` (B,) int, the parent bone of
    each (-1 for a root), and ``bind`` (B, 4, 4) each bone's frame in the canonical body's
    frame. A bone moved by ``bone_transforms[b]`` (canonical → posed) has the posed frame
    ``bone_transforms[b] @ bind[b]``."""

    parents: np.ndarray
    bind: np.ndarray


class BodyModel(Protocol):
    """What the fitting stage needs from a body model (see the module docstring)."""

    name: str
    shape_size: int  # S
    joint_names: tuple[str, ...]  # the J posed joints, in pose order
    bone_names: tuple[str, ...]  # the B bones of skinning_weights / bone_transforms
    faces: np.ndarray  # (F, 3) int64
    skinning_weights: np.ndarray  # (V, B) float32, rows sum to 1

    def neutral_pose(self) -> torch.Tensor:
        """(J, 3) the pose to start fitting from (standing, arms down)."""

    def forward(self, shape: torch.Tensor, pose: torch.Tensor, orient: torch.Tensor,
                transl: torch.Tensor) -> BodyOutput:
        """Posed bodies for one shape ``(S,)`` and ``N`` poses ``(N, J, 3)``, ``(N, 3)``,
        ``(N, 3)``."""

    def canonical(self, shape: torch.Tensor) -> CanonicalBody:
        """The body of ``shape`` in the canonical pose (canonical frame of the model)."""

    def pose_prior(self, pose: torch.Tensor) -> torch.Tensor:
        """Scalar penalty of ``(N, J, 3)`` poses: zero inside joint limits, growing outside."""

    def shape_prior(self, shape: torch.Tensor) -> torch.Tensor:
        """Scalar penalty of the shape's distance from the prior's mean shape."""

    def initial_shape(self) -> torch.Tensor:
        """(S,) the prior's mean shape, where fitting starts."""

    def shape_summary(self, shape: torch.Tensor) -> dict[str, Any]:
        """The shape in human-readable form for the fit's JSON report."""

    def skeleton(self, shape: torch.Tensor) -> Skeleton:
        """The bone hierarchy and canonical bone frames of ``shape`` (an avatar's rig)."""


REGISTRY: Mapping[str, str] = {
    "anny": "pipeline.bodymodel.anny_model:AnnyBodyModel",
    "smplx": "pipeline.bodymodel.smplx_model:SmplxBodyModel",
}


def make_body_model(name: str, options: Mapping[str, Any] | None = None) -> BodyModel:
    """Build the body model ``name`` with its config section ``options`` (e.g. ``fit.smplx``).

    Raises :class:`PipelineError` for an unknown name; backends raise
    :class:`pipeline.backends.BackendUnavailable` when their package or files are missing.
    """
    if name not in REGISTRY:
        raise PipelineError(f"unknown body model {name!r}; known: {sorted(REGISTRY)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)(dict(options or {}))


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues: (..., 3) axis-angle (radians) -> (..., 3, 3), smooth at zero."""
    angle_sq = (rotvec * rotvec).sum(-1, keepdim=True)
    angle = torch.sqrt(angle_sq + 1e-12)
    # sin(a)/a and (1 - cos a)/a^2 with their Taylor series near zero
    small = angle_sq < 1e-6
    sinc = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(angle) / angle)
    cosc = torch.where(small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(angle)) / (angle_sq + 1e-30))
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(k)
    return eye + sinc[..., None] * k + cosc[..., None] * (k @ k)


def rigid(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) and (..., 3) -> (..., 4, 4) homogeneous transforms."""
    top = torch.cat([rotation, translation[..., None]], -1)
    bottom = torch.zeros(*rotation.shape[:-2], 1, 4, dtype=rotation.dtype,
                         device=rotation.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], -2)


def skin_points(points: torch.Tensor, weights: torch.Tensor,
                transforms: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning of shared points.

    points: (V, 3); weights: (V, B); transforms: (N, B, 4, 4) -> (N, V, 3).
    """
    blended = torch.einsum("vb,nbij->nvij", weights, transforms[..., :3, :])
    return (blended[..., :3] @ points[None, :, :, None])[..., 0] + blended[..., 3]

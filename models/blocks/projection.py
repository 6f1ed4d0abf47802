"""Projection of world points into calibrated or weak-perspective crops, and pixel-aligned
feature sampling (shared by Pixel2ISDF, report §3.1, and PIFu).

Every posed fitted body vertex of a view's action is projected with that view's camera and
the view's feature map is sampled there bilinearly. Conventions (docs/conventions.md): OpenCV
camera ``x_cam = R X + t``, ``[u, v, 1] ~ K x_cam``, **pixel centres at integer coordinates**.
A feature map of any resolution covers the crop's pixel area ``[-0.5, S - 0.5]²``, so the
normalised sampling coordinate is ``(u + 0.5) / S · 2 − 1`` with ``align_corners=False``: the
same vertex lands on the same spot of a 512² input, a 128² resize or a half-resolution map.

A vertex behind the camera or outside the crop gets a zero feature and ``valid = False``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def project_calibrated(vertices: torch.Tensor, K: torch.Tensor, R: torch.Tensor,
                       t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection of world points.

    Args:
        vertices: ``(..., N, 3)`` world points.
        K, R: ``(..., 3, 3)`` intrinsics and world-to-camera rotation. t: ``(..., 3)``.

    Returns:
        uv ``(..., N, 2)`` pixel coordinates, depth ``(..., N)`` camera z (metres).
    """
    cam = vertices @ R.transpose(-1, -2) + t.unsqueeze(-2)
    depth = cam[..., 2]
    safe = torch.where(depth.abs() > 1e-8, depth, torch.full_like(depth, 1e-8))
    xy = cam[..., :2] / safe.unsqueeze(-1)
    u = K[..., 0, 0, None] * xy[..., 0] + K[..., 0, 1, None] * xy[..., 1] + K[..., 0, 2, None]
    v = K[..., 1, 1, None] * xy[..., 1] + K[..., 1, 2, None]
    return torch.stack([u, v], dim=-1), depth


def project_weak_perspective(vertices: torch.Tensor, R: torch.Tensor, scale: torch.Tensor,
                             trans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The report's weak-perspective camera ``u = s · (R X)[:2] + t``.

    Args:
        vertices: ``(..., N, 3)``. R: ``(..., 3, 3)``. scale: ``(...,)``. trans: ``(..., 2)``.

    Returns:
        uv ``(..., N, 2)`` and depth ``(..., N)`` = ``(R X)_z`` (relative; every point counts
        as in front of the camera).
    """
    rotated = vertices @ R.transpose(-1, -2)
    uv = scale[..., None, None] * rotated[..., :2] + trans.unsqueeze(-2)
    return uv, rotated[..., 2]


def project(vertices: torch.Tensor, cameras: dict[str, torch.Tensor]) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project with whichever camera model ``cameras`` holds.

    Args:
        vertices: ``(..., N, 3)`` world points.
        cameras: ``{"K", "R", "t"}`` (calibrated) or ``{"R", "scale", "trans"}`` (weak
            perspective), each with the leading shape ``(...)``.

    Returns:
        uv ``(..., N, 2)``, depth ``(..., N)``, in_front ``(..., N)`` bool.
    """
    if "K" in cameras:
        uv, depth = project_calibrated(vertices, cameras["K"], cameras["R"], cameras["t"])
        return uv, depth, depth > 1e-6
    uv, depth = project_weak_perspective(vertices, cameras["R"], cameras["scale"],
                                         cameras["trans"])
    return uv, depth, torch.ones_like(depth, dtype=torch.bool)


def pixel_to_grid(uv: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates of an ``size``² crop → ``grid_sample`` coordinates (align_corners
    False), ``(..., 2)`` → ``(..., 2)``; the crop's pixel area maps to ``[-1, 1]``."""
    return (uv + 0.5) * (2.0 / size) - 1.0


def sample_vertex_features(features: torch.Tensor, vertices: torch.Tensor,
                           cameras: dict[str, torch.Tensor], crop_size: int) -> tuple[
        torch.Tensor, torch.Tensor]:
    """Pixel-aligned features of posed vertices, one view at a time.

    Args:
        features: ``(V, C, h, w)`` feature maps of V views (any resolution of the crop).
        vertices: ``(V, N, 3)`` posed body vertices of each view's action (world frame).
        cameras: per-view camera tensors with leading shape ``(V,)`` (see :func:`project`).
        crop_size: S, the crop side in pixels the cameras refer to.

    Returns:
        ``(V, N, C)`` features (zero where invalid) and ``(V, N)`` bool validity (in front of
        the camera and inside the crop).
    """
    uv, _, in_front = project(vertices, cameras)
    grid = pixel_to_grid(uv, crop_size)
    inside = (grid.abs() <= 1.0).all(dim=-1) & in_front
    grid = torch.where(inside.unsqueeze(-1), grid, torch.zeros_like(grid))
    sampled = F.grid_sample(features, grid.unsqueeze(1).to(features.dtype), mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # (V, C, 1, N)
    sampled = sampled[:, :, 0].transpose(1, 2)
    return sampled * inside.unsqueeze(-1).to(sampled.dtype), inside

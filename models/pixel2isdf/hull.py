"""Silhouette consistency of a canonical query point (``model.hull_feature``).

Pixel2ISDF reads the images only at the body's vertices, so a point between the legs learns
its sign from codes diffused off the thighs: trained on 3 subjects, 2 of them in skirts, the
demo's network put a skirt on a test subject in trousers. The mattes settle it directly, as
a visual hull does: a point of the clothed body projects inside the person's matte in every
view, a point the photos show as background does not.

The query point is carried from the canonical frame into each view's pose by linear blend
skinning with the weights of its nearest fitted-body vertex (the transform of that vertex,
``Σ_b w_vb · B_b`` of the view's action), projected with the view's camera, and the matte is
read there (bilinear; 0 outside the crop). The features are the mean and the minimum of the
matte over the views. They enter the SDF head as inputs without a gradient with respect to
the point: a matte's edge is a step, whose slope would only disturb the Eikonal term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.blocks.projection import sample_vertex_features


@dataclass
class HullViews:
    """What the feature reads, for B subjects with K views each.

    Attributes:
        alphas: ``(B, K, 1, S, S)`` mattes in [0, 1].
        cameras: per-view camera tensors with leading shape ``(B, K)``.
        transforms: ``(B, K, N, 3, 4)`` each body vertex's blend-skinning transform
            (canonical → the view's posed world frame).
        nearest: ``(B, R, R, R)`` int, the nearest body vertex of each grid point ``[z, y, x]``.
        lo, hi: ``(B, 3)`` that grid's cube (the body signed-distance volume's).
        crop_size: S.
    """

    alphas: torch.Tensor
    cameras: dict[str, torch.Tensor]
    transforms: torch.Tensor
    nearest: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    crop_size: int

    @classmethod
    def from_batch(cls, batch: dict[str, torch.Tensor]) -> HullViews:
        """From a dataset batch built with ``with_hull=True`` (``alphas``, ``camera_*``,
        ``vertex_transforms``, ``body_nearest``, ``body_sdf_lo``/``_hi``)."""
        needed = ("vertex_transforms", "body_nearest", "body_sdf_lo")
        missing = [k for k in needed if k not in batch]
        if missing:
            raise ValueError(f"the silhouette feature needs the batch's {missing} (a dataset "
                             "built with with_hull=True)")
        alphas = batch["alphas"]
        alphas = alphas.float() / 255 if alphas.dtype == torch.uint8 else alphas.float()
        return cls(alphas, {key[len("camera_"):]: v.float() for key, v in batch.items()
                            if key.startswith("camera_")},
                   batch["vertex_transforms"].float(), batch["body_nearest"],
                   batch["body_sdf_lo"].float(), batch["body_sdf_hi"].float(),
                   int(alphas.shape[-1]))


def nearest_vertex(nearest: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                   points: torch.Tensor) -> torch.Tensor:
    """The nearest body vertex of ``points`` ``(B, P, 3)`` read from the grid (its closest
    grid point's; points outside the cube take the boundary's) → ``(B, P)`` long."""
    r = nearest.shape[-1]
    index = ((points - lo[:, None]) / (hi - lo)[:, None] * (r - 1)).round().long()
    index = index.clamp(0, r - 1)
    batch = torch.arange(points.shape[0], device=points.device)[:, None].expand_as(index[..., 0])
    return nearest[batch, index[..., 2], index[..., 1], index[..., 0]].long()


def repose(points: torch.Tensor, vertex: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Canonical ``points`` ``(B, P, 3)`` moved by the transforms ``(B, K, N, 3, 4)`` of
    their vertices ``vertex`` ``(B, P)`` → ``(B, K, P, 3)``, one pose per view."""
    b, k = transforms.shape[:2]
    index = vertex[:, None, :, None, None].expand(b, k, vertex.shape[1], 3, 4)
    t = torch.gather(transforms, 2, index)  # (B, K, P, 3, 4)
    return (t[..., :3] @ points[:, None, :, :, None])[..., 0] + t[..., 3]


def hull_features(views: HullViews, points: torch.Tensor) -> torch.Tensor:
    """``[mean, min]`` over the K views of the matte at each point's projection:
    ``(B, P, 3)`` → ``(B, P, 2)``, computed without gradient."""
    with torch.no_grad():
        points = points.detach()
        vertex = nearest_vertex(views.nearest, views.lo, views.hi, points)
        posed = repose(points, vertex, views.transforms)  # (B, K, P, 3)
        b, k, p, _ = posed.shape
        cameras = {key: v.flatten(0, 1) for key, v in views.cameras.items()}
        alpha, _ = sample_vertex_features(views.alphas.flatten(0, 1).to(points.dtype),
                                          posed.flatten(0, 1), cameras, views.crop_size)
        alpha = alpha.view(b, k, p)
        return torch.stack([alpha.mean(dim=1), alpha.amin(dim=1)], dim=-1)

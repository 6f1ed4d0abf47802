"""Silhouette consistency of a canonical query point (``model.hull_feature``).

Pixel2ISDF reads the images only at the body's vertices, so a point between the legs learns
its sign from codes diffused off the thighs: trained on 3 subjects, 2 of them in skirts, the
demo's network put a skirt on a test subject in trousers. The mattes settle it directly, as
a visual hull does: a point of the clothed body projects inside the person's matte in every
view, a point the photos show as background does not.

It reads every view of the subject (not only the K the network encodes: the more views, the
tighter the hull, and training and reconstruction then see the same feature). The query
point is carried from the canonical frame into each view's pose by linear blend skinning
with the weights of its nearest fitted-body vertex (the transform of that vertex,
``Σ_b w_vb · B_b`` of the view's action), projected with the view's camera, and the matte
is read there (bilinear; 0 outside the crop). The features are the mean and the minimum of
the matte over the views. They enter the SDF head as inputs without a gradient with respect
to the point: a matte's edge is a step, whose slope would only disturb the Eikonal term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.blocks.projection import sample_vertex_features


@dataclass
class HullViews:
    """What the feature reads, for B subjects with V views each (A actions, N vertices).

    Attributes:
        alphas: ``(B, V, 1, S, S)`` mattes in [0, 1].
        cameras: per-view camera tensors with leading shape ``(B, V)``.
        action: ``(B, V)`` long, each view's action.
        valid: ``(B, V)`` bool, False on padding views.
        transforms: ``(B, A, N, 3, 4)`` each body vertex's blend-skinning transform per
            action (canonical → posed world frame).
        nearest: ``(B, R, R, R)`` int, the nearest body vertex of each grid point ``[z, y, x]``.
        lo, hi: ``(B, 3)`` that grid's cube (the body signed-distance volume's).
        crop_size: S.
    """

    alphas: torch.Tensor
    cameras: dict[str, torch.Tensor]
    action: torch.Tensor
    valid: torch.Tensor
    transforms: torch.Tensor
    nearest: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    crop_size: int

    @classmethod
    def from_batch(cls, batch: dict[str, torch.Tensor]) -> HullViews:
        """From a dataset batch built with ``with_hull=True`` (``hull_*``,
        ``action_transforms``, ``body_nearest``, ``body_sdf_lo``/``_hi``)."""
        needed = ("hull_alphas", "hull_action", "hull_valid", "action_transforms",
                  "body_nearest", "body_sdf_lo", "body_sdf_hi")
        missing = [k for k in needed if k not in batch]
        if missing:
            raise ValueError(f"the silhouette feature needs the batch's {missing} (a dataset "
                             "built with with_hull=True)")
        alphas = batch["hull_alphas"]
        alphas = alphas.float() / 255 if alphas.dtype == torch.uint8 else alphas.float()
        return cls(alphas, {key[len("hull_camera_"):]: v.float() for key, v in batch.items()
                            if key.startswith("hull_camera_")},
                   batch["hull_action"].long(), batch["hull_valid"].bool(),
                   batch["action_transforms"].float(), batch["body_nearest"],
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


def repose(points: torch.Tensor, vertex: torch.Tensor, action: torch.Tensor,
           transforms: torch.Tensor) -> torch.Tensor:
    """Canonical ``points`` ``(B, P, 3)`` moved by the transforms ``(B, A, N, 3, 4)`` of
    their vertices ``vertex`` ``(B, P)`` in the actions ``action`` ``(B, V)`` →
    ``(B, V, P, 3)``, one pose per view."""
    b, v, p = action.shape[0], action.shape[1], vertex.shape[1]
    batch = torch.arange(b, device=points.device)[:, None, None].expand(b, v, p)
    t = transforms[batch, action[:, :, None].expand(b, v, p),
                   vertex[:, None, :].expand(b, v, p)]  # (B, V, P, 3, 4)
    return (t[..., :3] @ points[:, None, :, :, None])[..., 0] + t[..., 3]


def hull_features(views: HullViews, points: torch.Tensor) -> torch.Tensor:
    """``[mean, min]`` over the valid views of the matte at each point's projection:
    ``(B, P, 3)`` → ``(B, P, 2)``, computed without gradient."""
    with torch.no_grad():
        points = points.detach()
        vertex = nearest_vertex(views.nearest, views.lo, views.hi, points)
        posed = repose(points, vertex, views.action, views.transforms)  # (B, V, P, 3)
        b, v, p, _ = posed.shape
        cameras = {key: c.flatten(0, 1) for key, c in views.cameras.items()}
        alpha, _ = sample_vertex_features(views.alphas.flatten(0, 1).to(points.dtype),
                                          posed.flatten(0, 1), cameras, views.crop_size)
        alpha = alpha.view(b, v, p)
        valid = views.valid[:, :, None].expand(b, v, p)
        count = valid.sum(dim=1).clamp(min=1)
        mean = torch.where(valid, alpha, torch.zeros_like(alpha)).sum(dim=1) / count
        low = torch.where(valid, alpha, torch.ones_like(alpha)).amin(dim=1)
        return torch.stack([mean, low], dim=-1)

"""PIFu and Temporal PIFu: pixel-aligned implicit occupancy (Saito et al. 2019; the second
report's temporal neighbourhood).

A 3D point (world frame, metres) is projected with the centre frame's camera into each of the
``T`` frames of its neighbourhood (T = 1 for PIFu, ``window`` for Temporal PIFu: frames t−1,
t, t+1 in that order); each frame's feature map is sampled there; the ``T`` features and the
point's normalised depth in the centre frame are concatenated and classified. The same
classifier runs on every stack's features (intermediate supervision); inference uses the last.

Depth in camera terms: PIFu divides an orthographic depth in pixels by the image half-size,
so that depth and the image coordinates share a scale. For our calibrated crops the depth
offset from the body centre ``z − z_c`` (metres) becomes pixels at the centre's depth through
the focal length, ``(z − z_c) · f / z_c``, and is divided by the half-size ``S / 2`` of the
crop (``f``, ``S`` in crop pixels). For a weak-perspective camera ``f / z_c`` is its scale.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks.images import as_float_image, resize
from models.blocks.projection import pixel_to_grid, project
from models.pifu.classifier import SurfaceClassifier
from models.pifu.config import PifuConfig
from models.pifu.hgfilter import HGFilter


def frame_cameras(batch: dict[str, torch.Tensor], frames: int) -> dict[str, torch.Tensor]:
    """The batch's ``camera_*`` tensors with a frame axis: ``(B, T, ...)``."""
    out = {}
    for key, value in batch.items():
        if key.startswith("camera_"):
            ndim = {"K": 2, "R": 2, "t": 1, "scale": 0, "trans": 1}[key[len("camera_"):]]
            out[key[len("camera_"):]] = value if value.dim() == ndim + 2 else value.unsqueeze(1)
    if not out:
        raise ValueError("the batch holds no camera_* tensors")
    if next(iter(out.values())).shape[1] != frames:
        raise ValueError(f"the batch has {next(iter(out.values())).shape[1]} frame(s) per item, "
                         f"the model expects {frames}")
    return out


def normalised_depth(points: torch.Tensor, centre: torch.Tensor,
                     cameras: dict[str, torch.Tensor], crop_size: int) -> torch.Tensor:
    """PIFu's z feature in camera terms (module docstring).

    Args:
        points: ``(B, P, 3)`` world points. centre: ``(B, 3)`` the body centre (world).
        cameras: one frame's camera tensors, leading shape ``(B,)``. crop_size: S (pixels).

    Returns:
        ``(B, P)``: the depth offset from the centre in units of the crop's half-size.
    """
    _, depth, _ = project(points, cameras)
    _, centre_depth, _ = project(centre[:, None], cameras)  # (B, 1)
    if "K" in cameras:
        pixels_per_metre = cameras["K"][:, 0, 0, None] / centre_depth.clamp_min(1e-6)
    else:
        pixels_per_metre = cameras["scale"][:, None]
    return (depth - centre_depth) * pixels_per_metre / (crop_size / 2.0)


class PifuNet(nn.Module):
    """HGFilter + SurfaceClassifier; ``cfg.temporal`` makes it Temporal PIFu."""

    def __init__(self, cfg: PifuConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_filter = HGFilter(cfg.n_stacks, cfg.hg_depth, cfg.channels, cfg.norm)
        self.classifier = SurfaceClassifier(cfg.classifier_in, cfg.mlp_dims)

    def filter(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``(B, T, 3, S, S)`` or ``(B, 3, S, S)`` masked crops (uint8 or [0, 1]) → one
        ``(B·T, C, s, s)`` map per stack (s = input_size / 4)."""
        x = as_float_image(images.flatten(0, 1) if images.dim() == 5 else images)
        x = resize(x, self.cfg.input_size)
        return self.image_filter((x - 0.5) / 0.5)

    def point_features(self, features: torch.Tensor, points: torch.Tensor,
                       cameras: dict[str, torch.Tensor], centre: torch.Tensor,
                       crop_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Classifier inputs of the points from one stack's maps.

        Args:
            features: ``(B·T, C, s, s)``. points: ``(B, P, 3)`` world. cameras: ``(B, T, …)``
                tensors. centre: ``(B, 3)``. crop_size: S of the crops the cameras refer to.

        Returns:
            ``(B, T·C + 1, P)`` features (frames oldest first, then z) and ``(B, P)`` bool:
            the point projects inside the centre frame's crop, in front of its camera.
        """
        B = points.shape[0]
        T = self.cfg.frames
        feats = features.view(B, T, *features.shape[1:])
        per_frame, inside = [], None
        for t in range(T):
            cam = {k: v[:, t] for k, v in cameras.items()}
            uv, _, in_front = project(points, cam)
            grid = pixel_to_grid(uv, crop_size)
            sampled = F.grid_sample(feats[:, t], grid.unsqueeze(1).to(feats.dtype),
                                    mode="bilinear", padding_mode="zeros", align_corners=False)
            per_frame.append(sampled[:, :, 0])  # (B, C, P)
            if t == T // 2:
                inside = (grid.abs() <= 1.0).all(dim=-1) & in_front
        centre_cam = {k: v[:, T // 2] for k, v in cameras.items()}
        z = normalised_depth(points, centre, centre_cam, crop_size).to(per_frame[0].dtype)
        return torch.cat([*per_frame, z[:, None]], dim=1), inside

    def logits(self, batch: dict[str, torch.Tensor], points: torch.Tensor,
               all_stacks: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Pre-activation outputs ``(B, P)`` per stack (or the last only) and the in-crop
        mask ``(B, P)``; ``batch`` holds ``images``, ``camera_*`` and ``body_centre``."""
        images = batch["images"]
        crop_size = images.shape[-1]
        cameras = frame_cameras(batch, self.cfg.frames)
        stacks = self.filter(images)
        if not all_stacks:
            stacks = stacks[-1:]
        out, inside = [], None
        for features in stacks:
            x, inside = self.point_features(features, points, cameras, batch["body_centre"],
                                            crop_size)
            out.append(self.classifier(x)[:, 0])
        return out, inside

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The last stack's maps ``(B·T, C, s, s)`` of a batch, to query many points with."""
        return self.filter(batch["images"])[-1]

    def query(self, features: torch.Tensor, batch: dict[str, torch.Tensor],
              points: torch.Tensor) -> torch.Tensor:
        """Occupancy ``(B, P)`` of world points from :meth:`encode`'s maps (inference)."""
        cameras = frame_cameras(batch, self.cfg.frames)
        x, inside = self.point_features(features, points, cameras, batch["body_centre"],
                                        batch["images"].shape[-1])
        return self.occupancy_of(self.classifier(x)[:, 0], inside)

    def occupancy_of(self, logits: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """Logits → occupancy in [0, 1]; 0 where the point leaves the centre crop (PIFu)."""
        if self.cfg.last_op == "sigmoid":
            occ = torch.sigmoid(logits)
        else:
            occ = 0.5 * (torch.tanh(logits) + 1.0)
        return occ * inside.to(occ.dtype)

    def forward(self, batch: dict[str, torch.Tensor], points: torch.Tensor,
                stacks: bool = False) -> Any:
        """Occupancy ``(B, P)`` in [0, 1] from the last stack (inference); with ``stacks``,
        :meth:`logits` of every stack (training: called through the module, so that a
        DistributedDataParallel wrapper averages the gradients)."""
        if stacks:
            return self.logits(batch, points, all_stacks=True)
        logits, inside = self.logits(batch, points, all_stacks=False)
        return self.occupancy_of(logits[-1], inside)


def pifu_loss(logits: list[torch.Tensor], inside: torch.Tensor, labels: torch.Tensor,
              last_op: str = "sigmoid") -> torch.Tensor:
    """Intermediate supervision: the mean over stacks of the MSE between each stack's
    activated output and the labels (``labels`` 0/1; ±1 for tanh, PIFu's form)."""
    mask = inside.to(labels.dtype)
    losses = []
    for stack in logits:
        if last_op == "sigmoid":
            pred, target = torch.sigmoid(stack) * mask, labels
        else:
            pred, target = torch.tanh(stack) * mask, 2.0 * labels - 1.0
        losses.append(F.mse_loss(pred, target))
    return torch.stack(losses).mean()


def occupancy_scores(occupancy: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The second report's Table 2 scores of occupancies in [0, 1] against 0/1 labels:
    ``iou``, ``precision``, ``recall``, ``accuracy`` at 0.5 and the ``mse`` of the
    occupancies (each a 0-d tensor; a ratio with an empty denominator is 0)."""
    pred, truth = occupancy > 0.5, labels > 0.5
    tp = (pred & truth).sum().float()
    fp = (pred & ~truth).sum().float()
    fn = (~pred & truth).sum().float()

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))

    return {"iou": ratio(tp, tp + fp + fn), "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn), "accuracy": (pred == truth).float().mean(),
            "mse": ((occupancy.float() - labels.float()) ** 2).mean()}

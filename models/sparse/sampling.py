"""Trilinear sampling of multi-level latent volumes at query points (NeuralBody's readout).

A level of stride ``s`` over an input grid with ``origin`` and ``voxel_size`` ``vs`` has voxel
size ``s · vs`` and its index ``i`` sits at ``origin + i · s · vs`` exactly: a kernel-3,
stride-2, padding-1 convolution centres output ``o`` on input ``2o``, so strides compose. Per
axis the continuous index of a point is ``u = (p - origin) / (s · vs)``; with
``align_corners=True`` grid_sample maps ``g = 2u / (size - 1) - 1`` back to ``u``.

Dense levels ``(B, C, D, H, W)`` are read with ``F.grid_sample`` (bilinear, zeros padding);
:class:`SparseTensor` levels with an equivalent sparse look-up of the 8 corner voxels (zero where
inactive or outside), which never builds the dense grid. Both are twice differentiable w.r.t.
the points (PyTorch implements grid_sample's double backward; the sparse path is plain
products) and differentiable w.r.t. the level features, as an Eikonal loss needs.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from models.sparse.tensor import SparseTensor, in_bounds, lookup

CORNERS = tuple(itertools.product((0, 1), repeat=3))  # (cx, cy, cz) offsets of a cell's corners


def continuous_index(points: torch.Tensor, origin: torch.Tensor, voxel_size: torch.Tensor,
                     stride: int) -> torch.Tensor:
    """``(B, P, 3)`` points → ``(B, P, 3)`` continuous voxel index (x, y, z) of a stride level."""
    return (points - origin[:, None, :]) / (voxel_size[:, None, None] * stride)


def sample_dense(volume: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Trilinear read of ``volume`` ``(B, C, D, H, W)`` at continuous ``index`` ``(B, P, 3)``
    (x, y, z order) → ``(B, P, C)``; zero outside the grid."""
    # grid_sample cannot interpolate along a size-1 axis (align_corners maps it all to index 0):
    # a zero plane after it gives the exact trilinear falloff towards the missing neighbour.
    pad = [0, int(volume.shape[4] == 1), 0, int(volume.shape[3] == 1), 0, int(volume.shape[2] == 1)]
    if any(pad):
        volume = F.pad(volume, pad)
    d, h, w = volume.shape[2:]
    sizes = index.new_tensor([w, h, d])
    grid = 2.0 * index / (sizes - 1.0) - 1.0
    out = F.grid_sample(volume, grid[:, None, None], mode="bilinear", padding_mode="zeros",
                        align_corners=True)  # (B, C, 1, 1, P)
    return out[:, :, 0, 0].transpose(1, 2)


def sample_sparse(t: SparseTensor, index: torch.Tensor) -> torch.Tensor:
    """Trilinear read of a sparse level at continuous ``index`` ``(B, P, 3)`` (x, y, z) →
    ``(B, P, C)``; inactive and out-of-grid corners count as zero (= densify + grid_sample)."""
    b, p, _ = index.shape
    base = torch.floor(index.detach())
    frac = index - base  # carries the gradient w.r.t. the points
    base_zyx = base.long().flip(-1)
    batch = torch.arange(b, device=index.device)[:, None, None].expand(b, p, 1)
    padded = torch.cat([t.features, t.features.new_zeros(1, t.features.shape[1])])
    out = index.new_zeros(b, p, t.features.shape[1])
    for corner in CORNERS:
        offset = torch.tensor(corner[::-1], device=index.device)  # (z, y, x)
        zyx = base_zyx + offset
        row = lookup(t, torch.cat([batch, zyx], dim=-1), in_bounds(zyx, t.spatial_shape))
        row = torch.where(row < 0, torch.full_like(row, t.features.shape[0]), row)
        c = frac.new_tensor(corner)
        weight = (c * frac + (1 - c) * (1 - frac)).prod(dim=-1, keepdim=True)  # (B, P, 1)
        out = out + weight * padded[row]
    return out


def sample_levels(levels: list[SparseTensor | torch.Tensor], points: torch.Tensor,
                  origin: torch.Tensor, voxel_size: torch.Tensor, strides: list[int]
                  ) -> torch.Tensor:
    """Concatenated trilinear features of every level at the query points.

    Args:
        levels: L levels, each a SparseTensor (features ``(M_l, C_l)``) or a dense
            ``(B, C_l, D_l, H_l, W_l)`` tensor.
        points: ``(B, P, 3)`` (x, y, z), in the frame of ``origin``.
        origin: ``(B, 3)``, centre of input voxel (0, 0, 0). voxel_size: ``(B,)`` input voxels.
        strides: L ints, each level's stride relative to the input grid.

    Returns:
        ``(B, P, sum C_l)``.
    """
    if len(levels) != len(strides):
        raise ValueError(f"{len(levels)} levels but {len(strides)} strides")
    out = []
    for level, stride in zip(levels, strides, strict=True):
        index = continuous_index(points, origin, voxel_size, stride)
        if isinstance(level, SparseTensor):
            out.append(sample_sparse(level, index))
        else:
            out.append(sample_dense(level, index))
    return torch.cat(out, dim=-1)

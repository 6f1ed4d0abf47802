"""Sparse voxel tensors: the container, voxelisation of points, densification, key look-ups.

Axis convention (used everywhere in :mod:`models.sparse`): a grid has ``spatial_shape``
``(D, H, W)``; a point ``p = (x, y, z)`` falls in the voxel with integer index
``round((p - origin) / voxel_size)`` per axis, and x indexes W, y indexes H, z indexes D. The
``coords`` of a sparse tensor are therefore ``[batch, z, y, x]`` (spconv's order), and voxel
``(z, y, x)`` is centred at ``origin + (x, y, z) · voxel_size``. Dense tensors are
``(B, C, D, H, W)``, i.e. what ``F.conv3d`` and ``F.grid_sample`` expect (grid_sample's last
axis lists (x, y, z)).

Sites are identified by a linear key ``((b · D + z) · H + y) · W + x`` (int64); every producer in
this package returns coords sorted by that key, and look-ups sort when they are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

SORTED_KEYS = "_sorted_keys"  # cache entry: (sorted keys (M,), permutation (M,)) of the coords


@dataclass
class SparseTensor:
    """Features on the active sites of a batch of voxel grids.

    Attributes:
        features: ``(M, C)`` float, one row per active site.
        coords: ``(M, 4)`` int32 ``[batch, z, y, x]``, unique rows.
        spatial_shape: ``(D, H, W)``.
        batch_size: B.
        cache: neighbour maps and sorted keys computed from ``coords``, keyed by a string (a
            layer's ``indice_key``). Tensors made by :meth:`with_features` share it, so the map
            of a level is built once; never modify ``coords`` in place.
    """

    features: torch.Tensor
    coords: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.features.dim() != 2 or self.coords.shape != (self.features.shape[0], 4):
            raise ValueError(f"features {tuple(self.features.shape)} and coords "
                             f"{tuple(self.coords.shape)} do not describe the same (M, C) sites")
        self.spatial_shape = tuple(int(s) for s in self.spatial_shape)  # type: ignore[assignment]

    def with_features(self, features: torch.Tensor) -> SparseTensor:
        """The same sites (and shared cache) with new ``features`` ``(M, C')``."""
        return SparseTensor(features, self.coords, self.spatial_shape, self.batch_size,
                            self.cache)


def linear_keys(coords: torch.Tensor, spatial_shape: tuple[int, int, int]) -> torch.Tensor:
    """``(..., 4)`` int ``[b, z, y, x]`` → ``(...)`` int64 keys ``((b·D + z)·H + y)·W + x``."""
    d, h, w = spatial_shape
    c = coords.long()
    return ((c[..., 0] * d + c[..., 1]) * h + c[..., 2]) * w + c[..., 3]


def sorted_keys(t: SparseTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted linear keys of ``t``'s sites and the permutation that sorts them, cached.

    Returns:
        keys ``(M,)`` int64 ascending; perm ``(M,)`` int64, ``keys = linear_keys(coords)[perm]``.
    """
    hit = t.cache.get(SORTED_KEYS)
    if hit is not None:
        return hit
    keys = linear_keys(t.coords, t.spatial_shape)
    if keys.numel() < 2 or bool((keys[1:] > keys[:-1]).all()):
        result = keys, torch.arange(keys.numel(), device=keys.device)
    else:
        perm = torch.argsort(keys)
        result = keys[perm], perm
    t.cache[SORTED_KEYS] = result
    return result


def lookup(t: SparseTensor, query: torch.Tensor, valid: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Row of ``t`` at each queried site, or -1 where the site is not active.

    Args:
        query: ``(..., 4)`` int ``[b, z, y, x]``; may lie outside the grid if ``valid`` says so.
        valid: ``(...)`` bool, False for queries to treat as missing (e.g. out of bounds).

    Returns:
        ``(...)`` int64 indices into ``t.features`` (-1: missing).
    """
    return lookup_keys(t, linear_keys(query, t.spatial_shape), valid)


def lookup_keys(t: SparseTensor, keys: torch.Tensor, valid: torch.Tensor | None = None
                ) -> torch.Tensor:
    """:func:`lookup` for precomputed linear ``keys`` ``(...)`` int64 → ``(...)`` rows or -1."""
    sorted_k, perm = sorted_keys(t)
    if sorted_k.numel() == 0:
        return torch.full_like(keys, -1)
    pos = torch.searchsorted(sorted_k, keys).clamp_(max=sorted_k.numel() - 1)
    hit = sorted_k[pos] == keys
    if valid is not None:
        hit &= valid
    return torch.where(hit, perm[pos], torch.full_like(pos, -1))


def in_bounds(zyx: torch.Tensor, spatial_shape: tuple[int, int, int]) -> torch.Tensor:
    """``(..., 3)`` int ``[z, y, x]`` → ``(...)`` bool, inside ``[0, D) × [0, H) × [0, W)``."""
    upper = torch.tensor(spatial_shape, device=zyx.device)
    return ((zyx >= 0) & (zyx < upper)).all(dim=-1)


def voxelize(points: torch.Tensor, features: torch.Tensor, origin: torch.Tensor,
             voxel_size: torch.Tensor, shape: tuple[int, int, int]) -> SparseTensor:
    """Scatter point features into a sparse grid, averaging points that share a voxel.

    Voxel index per axis is ``round((p - origin) / voxel_size)`` (``torch.round``: halves to
    even), x → W, y → H, z → D (see the module docstring). Points outside the grid are dropped.
    The mean is differentiable w.r.t. ``features`` (not ``points``: rounding). Sites come out
    sorted by linear key; on CPU the sums are bitwise reproducible (``index_add_`` adds in
    point order); on CUDA ``index_add_`` uses atomics, so the last bits may vary.

    Args:
        points: ``(B, N, 3)`` (x, y, z). features: ``(B, N, C)``.
        origin: ``(B, 3)``, the centre of voxel (0, 0, 0). voxel_size: ``(B,)``.
        shape: ``(D, H, W)``.

    Returns:
        SparseTensor with ``M ≤ B·N`` sites, features ``(M, C)``.
    """
    b, n, _ = points.shape
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    rel = (points - origin[:, None, :]) / voxel_size[:, None, None]
    zyx = torch.round(rel.detach()).long().flip(-1)  # (B, N, 3) [z, y, x]
    batch = torch.arange(b, device=points.device)[:, None, None].expand(b, n, 1)
    coords = torch.cat([batch, zyx], dim=-1).reshape(b * n, 4)
    inside = in_bounds(zyx, shape).reshape(b * n)
    keys = linear_keys(coords[inside], shape)
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    feats = features.reshape(b * n, -1)[inside]
    sums = feats.new_zeros(uniq.numel(), feats.shape[1]).index_add_(0, inverse, feats)
    counts = feats.new_zeros(uniq.numel()).index_add_(0, inverse, feats.new_ones(inverse.numel()))
    return SparseTensor(sums / counts[:, None], decode_keys(uniq, shape), shape, b)


def decode_keys(keys: torch.Tensor, spatial_shape: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`linear_keys`: ``(M,)`` int64 → ``(M, 4)`` int32 ``[b, z, y, x]``."""
    d, h, w = spatial_shape
    x = keys % w
    y = (keys // w) % h
    z = (keys // (w * h)) % d
    bb = keys // (w * h * d)
    return torch.stack([bb, z, y, x], dim=1).int()


def densify(t: SparseTensor) -> torch.Tensor:
    """Dense ``(B, C, D, H, W)`` copy of ``t`` (zeros at inactive sites), differentiable."""
    d, h, w = t.spatial_shape
    c = t.coords.long()
    dense = t.features.new_zeros(t.batch_size, d, h, w, t.features.shape[1])
    dense = dense.index_put((c[:, 0], c[:, 1], c[:, 2], c[:, 3]), t.features)
    return dense.permute(0, 4, 1, 2, 3).contiguous()

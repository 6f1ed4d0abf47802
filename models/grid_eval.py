"""Coarse-to-fine evaluation of an implicit function on a regular grid (for marching cubes).

Shared by every method: Pixel2ISDF's SDF (level 0) and PIFu's occupancy (level 0.5). The grid
has R points per side over ``[lo, hi]``; evaluation starts on every ``s0``-th point
(``s0 = 2^k``, the last index always included) and halves the stride down to 1. At each level
a cell is **refined** (its finer points are queried) when its 8 corners straddle the level, or
when one of them is within the band of it; every other finer point is filled by trilinear
interpolation of its cell's corners, without a query. This is PIFu's ``eval_grid_octree`` idea
with a sign-change test and, for signed distances, a band from the Lipschitz bound: a function
with |∇f| ≤ L cannot reach the level inside a cell whose corners are all farther than
L × half the cell's diagonal from it, so nothing the dense grid would see is missed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridResult:
    """Values ``(R, R, R)`` (axis order x, y, z), the grid's corners and query counts."""

    values: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    queries: int
    dense_queries: int

    @property
    def spacing(self) -> np.ndarray:
        """``(3,)`` distance between grid points."""
        return (self.hi - self.lo) / (self.values.shape[0] - 1)


def grid_points(lo: np.ndarray, hi: np.ndarray, idx: tuple[np.ndarray, ...],
                resolution: int) -> np.ndarray:
    """World positions ``(P, 3)`` of the integer grid indices ``idx`` (three ``(P,)`` arrays)."""
    step = (np.asarray(hi, float) - np.asarray(lo, float)) / (resolution - 1)
    return np.asarray(lo, float) + np.stack(idx, axis=-1) * step


def _levels(resolution: int, init_stride: int) -> list[np.ndarray]:
    """Per-axis index sets from the coarsest (stride ``init_stride``) to all indices."""
    out, stride = [], init_stride
    while stride >= 1:
        out.append(np.unique(np.r_[np.arange(0, resolution, stride), resolution - 1]))
        stride //= 2
    return out


def _cells_of(fine: np.ndarray, coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each fine index, the first and last coarse cell it lies in or on (a point on a
    coarse grid point touches the cells on both sides)."""
    right = np.searchsorted(coarse, fine, side="right") - 1  # coarse point at or left of it
    on_point = coarse[np.clip(right, 0, len(coarse) - 1)] == fine
    n_cells = len(coarse) - 1
    first = np.clip(np.where(on_point, right - 1, right), 0, n_cells - 1)
    last = np.clip(right, 0, n_cells - 1)
    return first, last


def _interp_axis(values: np.ndarray, coarse: np.ndarray, fine: np.ndarray,
                 axis: int) -> np.ndarray:
    """Linear interpolation of ``values`` (sampled at ``coarse`` along ``axis``) at ``fine``."""
    left = np.clip(np.searchsorted(coarse, fine, side="right") - 1, 0, len(coarse) - 2)
    w = (fine - coarse[left]) / (coarse[left + 1] - coarse[left])
    shape = [1, 1, 1]
    shape[axis] = -1
    w = w.reshape(shape)
    return (np.take(values, left, axis=axis) * (1 - w)
            + np.take(values, left + 1, axis=axis) * w)


def evaluate_grid(fn: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, *,
                  resolution: int = 256, init_resolution: int = 32, level: float = 0.0,
                  band: float | None = None, lipschitz: float | None = 1.0,
                  batch: int = 65536) -> GridResult:
    """Evaluate ``fn`` on an R³ grid, querying only where the level set may pass.

    Args:
        fn: ``(P, 3)`` float64 positions → ``(P,)`` values (one call per batch).
        lo, hi: ``(3,)`` grid corners. resolution: R points per side.
        init_resolution: about R / s0 points per side at the start (s0 a power of two).
        level: the iso-value (0 for an SDF, 0.5 for occupancy).
        band: refine cells with a corner within ``band`` of the level (fixed), or
        lipschitz: with ``band`` None, refine within L × half the cell diagonal (an SDF: 1).

    Returns:
        the :class:`GridResult`; ``queries`` counts the positions ``fn`` saw.
    """
    if band is None and lipschitz is None:
        raise ValueError("give band or lipschitz")
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    init_stride = max(1, 2 ** int(np.floor(np.log2(max(1, (resolution - 1) // max(
        1, init_resolution - 1))))))
    levels = _levels(resolution, init_stride)
    values = np.full((resolution,) * 3, np.nan, dtype=np.float64)
    queries = 0

    def query(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> None:
        nonlocal queries
        pts = grid_points(lo, hi, (ix, iy, iz), resolution)
        out = np.empty(len(pts))
        for start in range(0, len(pts), batch):
            out[start:start + batch] = np.asarray(fn(pts[start:start + batch]),
                                                  dtype=np.float64).reshape(-1)
        values[ix, iy, iz] = out
        queries += len(pts)

    c = levels[0]
    grid = np.meshgrid(c, c, c, indexing="ij")
    query(*(g.ravel() for g in grid))
    spacing = (hi - lo) / (resolution - 1)
    for f in levels[1:]:
        corners = values[np.ix_(c, c, c)] - level
        m = len(c) - 1  # cells per axis
        stack = np.stack([corners[i:i + m, j:j + m, k:k + m]
                          for i in (0, 1) for j in (0, 1) for k in (0, 1)])
        straddle = (stack.min(axis=0) <= 0) & (stack.max(axis=0) >= 0)
        if band is not None:
            near = np.abs(stack).min(axis=0) < band
        else:
            widths = [np.diff(c) * spacing[a] for a in range(3)]
            half_diag = 0.5 * np.sqrt(widths[0][:, None, None] ** 2
                                      + widths[1][None, :, None] ** 2
                                      + widths[2][None, None, :] ** 2)
            near = np.abs(stack).min(axis=0) < lipschitz * half_diag
        refine = straddle | near
        first, last = _cells_of(f, c)
        needs = np.zeros((len(f),) * 3, dtype=bool)
        for ix in (first, last):
            for iy in (first, last):
                for iz in (first, last):
                    needs |= refine[np.ix_(ix, iy, iz)]
        sub = values[np.ix_(f, f, f)]
        missing = np.isnan(sub)
        ask = needs & missing
        if ask.any():
            ii, jj, kk = np.nonzero(ask)
            query(f[ii], f[jj], f[kk])
        fill = ~needs & missing
        if fill.any():
            up = corners + level
            for axis in range(3):
                up = _interp_axis(up, c, f, axis)
            ii, jj, kk = np.nonzero(fill)
            values[f[ii], f[jj], f[kk]] = up[ii, jj, kk]
        c = f
    return GridResult(values.astype(np.float32), lo, hi, queries, resolution ** 3)

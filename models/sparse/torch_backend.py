"""Sparse 3D convolutions in pure PyTorch (any device), submanifold and strided.

Both layers compute ``out[o] = Σ_k W[k]ᵀ · in[o · stride - padding + k]`` over the kernel
offsets ``k = (kz, ky, kx)`` whose input site is active (F.conv3d's cross-correlation on a grid
that is zero at inactive sites). A submanifold conv (stride 1, padding K//2) keeps the input
sites; a strided conv outputs every site whose receptive field touches an active input, the
same active set as spconv's ``SparseConv3d``. The weight is stored as ``(kD, kH, kW, C_in,
C_out)`` (:class:`SparseConvBase`), the layout shared with the spconv backend.

The neighbour map (:class:`NeighbourMap`) is built with sorted linear keys and
``torch.searchsorted`` (no Python loop over points) and cached in the input's
``SparseTensor.cache`` under the layer's ``indice_key``, so the SubM layers of a level share it.
Three interchangeable paths use it (``path=``):

* ``"gather"``: gather the K³ neighbours of every output into one ``(M_out, K³·C_in)`` matrix
  and do a single GEMM (implicit-GEMM style; a missing neighbour reads a zero row).
* ``"scatter"``: per kernel offset, gather the input rows that have a partner, multiply by
  ``W[k]`` and ``index_add_`` into the output rows (the classic gather–matmul–scatter).
* ``"dense"``: densify, ``F.conv3d``, read the output sites back (cost grows with D·H·W).

All three are deterministic: for a fixed offset every output row receives at most one input
row (and vice versa), so no accumulation order depends on threads; on CPU the backward passes
are bitwise reproducible too (tested). ``"scatter"`` has a fused first-order backward; no path
is meant to be differentiated twice (nothing needs it, see :mod:`models.sparse.sampling`).

``"auto"`` (:func:`choose_path`) takes gather while the ``(M_out, K³·C_in)`` matrix has at most
2²¹ elements, scatter above: gather wins on small layers (one GEMM, few ops) but multiplies the
zeros of missing neighbours (of the 27, 71 % are active on the demo body's 64³ input grid but
12 % on the paper-size 224³ one), so scatter wins on the wide first layers at paper size.
SparseConvNet forward+backward, seconds, best of 5, benchmarks/sparse_conv_speed.py on this
project's 2-core CPU with ``torch.set_num_threads(2)``, range over two runs, machine idle:

==============================  ===========  ===========  ===========  =========  ===========
size: grid, C_in, width, sites  auto         gather       scatter      dense      spconv
==============================  ===========  ===========  ===========  =========  ===========
demo: 64³, 16, 0.5, 4,198       0.035–0.039  0.034–0.046  0.060–0.071  0.43–0.48  0.052–0.055
paper: 224³, 64, 1.0, 12,981    0.345–0.393  0.553–0.765  0.395–0.456  —          0.397–0.588
==============================  ===========  ===========  ===========  =========  ===========

(dense at paper size would be ~1 TFLOP per pass: not run.) CUDA was not available to measure;
it uses the same rule until measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.sparse.tensor import SparseTensor, decode_keys, densify, lookup_keys

PATHS = ("gather", "scatter", "dense")
# "auto": gather while its (M_out, K³·C_in) neighbour matrix has at most this many elements
# (it multiplies the zeros of missing neighbours too), scatter above. Per device type; 2²¹ was
# the best of 2²⁰…2²⁴ on the CPU benchmark (CUDA unmeasured).
GATHER_MAX_ELEMENTS = MappingProxyType({"cpu": 1 << 21, "cuda": 1 << 21})


def choose_path(device: torch.device, m_out: int, kernel_volume: int, in_channels: int) -> str:
    """The ``"auto"`` path for a conv: ``"gather"`` for small neighbour matrices, else
    ``"scatter"`` (thresholds in :data:`GATHER_MAX_ELEMENTS`)."""
    limit = GATHER_MAX_ELEMENTS.get(device.type, 1 << 21)
    return "gather" if m_out * kernel_volume * in_channels <= limit else "scatter"


@dataclass
class NeighbourMap:
    """Which input row feeds each output row through each kernel offset.

    Attributes:
        neighbours: ``(M_out, K³)`` int64 input rows, -1 where the input site is inactive;
            offset ``k`` is ``(kz·K + ky)·K + kx``.
        out_coords: ``(M_out, 4)`` int32 ``[b, z, y, x]``, sorted by linear key.
        out_shape: ``(D', H', W')``.
    """

    neighbours: torch.Tensor
    out_coords: torch.Tensor
    out_shape: tuple[int, int, int]
    _pairs: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None

    def pairs(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Per offset, ``(in_rows, out_rows)`` int64 of equal length (computed once)."""
        if self._pairs is None:
            pairs = []
            for k in range(self.neighbours.shape[1]):
                out_rows = torch.nonzero(self.neighbours[:, k] >= 0).squeeze(1)
                pairs.append((self.neighbours[out_rows, k], out_rows))
            self._pairs = tuple(pairs)
        return self._pairs


def conv_output_shape(shape: tuple[int, int, int], kernel: int, stride: int, padding: int
                      ) -> tuple[int, int, int]:
    """Output ``(D', H', W')`` of a convolution: ``(n + 2·padding - kernel) // stride + 1``."""
    return tuple((n + 2 * padding - kernel) // stride + 1 for n in shape)  # type: ignore[return-value]


def separable_keys(batch: torch.Tensor, zyx: list[torch.Tensor], valid: list[torch.Tensor],
                   shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear keys of every (z, y, x) combination of per-axis candidates.

    Args:
        batch: ``(M,)`` int64. zyx: 3 × ``(M, K)`` int64 candidate positions per axis.
        valid: 3 × ``(M, K)`` bool. shape: ``(D, H, W)`` of the grid the keys index.

    Returns:
        keys and validity ``(M, K³)``, offset order ``(kz·K + ky)·K + kx``.
    """
    d, h, w = shape
    z, y, x = zyx
    keys = ((batch[:, None, None, None] * d + z[:, :, None, None]) * h
            + y[:, None, :, None]) * w + x[:, None, None, :]
    ok = valid[0][:, :, None, None] & valid[1][:, None, :, None] & valid[2][:, None, None, :]
    return keys.reshape(batch.shape[0], -1), ok.reshape(batch.shape[0], -1)


def strided_output_coords(t: SparseTensor, kernel: int, stride: int, padding: int
                          ) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Output sites of a strided conv: those whose receptive field holds an active input.

    Input ``i`` reaches output ``o = (i + padding - k) / stride`` through kernel tap ``k``
    when that is an integer inside the output grid (computed per axis, then combined).

    Returns:
        coords ``(M_out, 4)`` int32 sorted by linear key, and the output shape.
    """
    out_shape = conv_output_shape(t.spatial_shape, kernel, stride, padding)
    taps = torch.arange(kernel, device=t.coords.device)
    coords = t.coords.long()
    zyx, valid = [], []
    for axis in range(3):
        num = coords[:, axis + 1, None] + padding - taps  # (M, K) = o · stride
        out = torch.div(num, stride, rounding_mode="floor")
        zyx.append(out)
        valid.append((num - out * stride == 0) & (out >= 0) & (out < out_shape[axis]))
    keys, ok = separable_keys(coords[:, 0], zyx, valid, out_shape)
    return decode_keys(torch.unique(keys[ok], sorted=True), out_shape), out_shape


def build_map(t: SparseTensor, kernel: int, stride: int, padding: int, subm: bool
              ) -> NeighbourMap:
    """The :class:`NeighbourMap` of a conv on ``t`` (``subm``: outputs = inputs, stride 1).

    Output ``o`` reads input ``o · stride - padding + k`` through tap ``k``; the ``(M_out, K³)``
    candidate keys are looked up in ``t``'s sorted keys with one ``searchsorted``.
    """
    if subm:
        out_coords, out_shape = t.coords, t.spatial_shape
    else:
        out_coords, out_shape = strided_output_coords(t, kernel, stride, padding)
    taps = torch.arange(kernel, device=t.coords.device)
    coords = out_coords.long()
    zyx, valid = [], []
    for axis in range(3):
        pos = coords[:, axis + 1, None] * stride - padding + taps  # (M_out, K)
        zyx.append(pos)
        valid.append((pos >= 0) & (pos < t.spatial_shape[axis]))
    keys, ok = separable_keys(coords[:, 0], zyx, valid, t.spatial_shape)
    return NeighbourMap(lookup_keys(t, keys, ok), out_coords, out_shape)


def get_map(t: SparseTensor, indice_key: str | None, kernel: int, stride: int, padding: int,
            subm: bool) -> NeighbourMap:
    """:func:`build_map`, cached in ``t.cache`` (the key includes the conv geometry)."""
    key = ("torch", indice_key, kernel, stride, padding, subm)
    hit = t.cache.get(key)
    if hit is None:
        hit = build_map(t, kernel, stride, padding, subm)
        t.cache[key] = hit
    return hit


def conv_gather(features: torch.Tensor, weight: torch.Tensor, nmap: NeighbourMap
                ) -> torch.Tensor:
    """One GEMM over gathered neighbours: ``(M_in, C_in)``, weight ``(K³, C_in, C_out)`` →
    ``(M_out, C_out)``."""
    m_out, kk = nmap.neighbours.shape
    padded = torch.cat([features, features.new_zeros(1, features.shape[1])])
    rows = torch.where(nmap.neighbours < 0, features.shape[0], nmap.neighbours).reshape(-1)
    cols = padded.index_select(0, rows).reshape(m_out, kk * features.shape[1])
    return cols @ weight.reshape(kk * weight.shape[1], weight.shape[2])


class _ScatterConv(torch.autograd.Function):
    """Per-offset gather–matmul–scatter with a fused backward (one ``grad_in`` buffer instead of
    K³ zero-filled ones from autograd). First derivatives only: nothing differentiates a conv
    twice (the Eikonal term's second derivatives stop at the sampled level features).

    Under autocast it computes in the autocast dtype (bf16 on CUDA by default), forward and
    backward alike (backward runs outside autocast, so the dtype is kept in ``ctx``); the
    gradients come back in the inputs' own dtypes, the weight's accumulated in it."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, weight: torch.Tensor,
                pairs: tuple[tuple[torch.Tensor, torch.Tensor], ...], m_out: int
                ) -> torch.Tensor:
        device = features.device.type
        dtype = (torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device)
                 else features.dtype)
        ctx.dtypes = (features.dtype, weight.dtype)
        f, w = features.to(dtype), weight.to(dtype)
        ctx.save_for_backward(f, w)
        ctx.pairs = pairs
        out = f.new_zeros(m_out, w.shape[2])
        with torch.autocast(device, enabled=False):
            for k, (in_rows, out_rows) in enumerate(pairs):
                if in_rows.numel():
                    out.index_add_(0, out_rows, f.index_select(0, in_rows) @ w[k])
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        f, w = ctx.saved_tensors
        grad = grad.to(f.dtype)
        grad_in = torch.zeros_like(f) if ctx.needs_input_grad[0] else None
        grad_w = (torch.zeros(w.shape, dtype=ctx.dtypes[1], device=w.device)
                  if ctx.needs_input_grad[1] else None)
        for k, (in_rows, out_rows) in enumerate(ctx.pairs):
            if not in_rows.numel():
                continue
            g = grad.index_select(0, out_rows)
            if grad_w is not None:
                grad_w[k] = f.index_select(0, in_rows).T @ g
            if grad_in is not None:
                grad_in.index_add_(0, in_rows, g @ w[k].T)
        return (None if grad_in is None else grad_in.to(ctx.dtypes[0])), grad_w, None, None


def conv_scatter(features: torch.Tensor, weight: torch.Tensor, nmap: NeighbourMap
                 ) -> torch.Tensor:
    """Per-offset gather–matmul–scatter: ``(M_in, C_in)``, weight ``(K³, C_in, C_out)`` →
    ``(M_out, C_out)``."""
    return _ScatterConv.apply(features, weight, nmap.pairs(), nmap.neighbours.shape[0])


def conv_dense(t: SparseTensor, weight: torch.Tensor, nmap: NeighbourMap, stride: int,
               padding: int) -> torch.Tensor:
    """Masked dense conv: densify ``t``, ``F.conv3d``, read ``nmap.out_coords`` → ``(M_out,
    C_out)``; weight ``(K³, C_in, C_out)``."""
    kernel = round(weight.shape[0] ** (1 / 3))
    w = weight.reshape(kernel, kernel, kernel, *weight.shape[1:]).permute(4, 3, 0, 1, 2)
    dense = F.conv3d(densify(t), w, stride=stride, padding=padding)
    c = nmap.out_coords.long()
    return dense.permute(0, 2, 3, 4, 1)[c[:, 0], c[:, 1], c[:, 2], c[:, 3]]


class SparseConvBase(nn.Module):
    """Parameters shared by both backends: ``weight`` ``(kD, kH, kW, C_in, C_out)``, no bias.

    ``weight[kz, ky, kx, i, o]`` multiplies input channel ``i`` at offset ``(kz, ky, kx) -
    padding`` (× stride) from the output site, exactly ``F.conv3d``'s
    ``weight.permute(4, 3, 0, 1, 2)``. Initialised like ``nn.Conv3d`` (uniform ±1/√fan_in).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, subm: bool, indice_key: str | None) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.subm, self.indice_key = subm, indice_key
        self.weight = nn.Parameter(torch.empty(kernel_size, kernel_size, kernel_size,
                                               in_channels, out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = (self.in_channels * self.kernel_size ** 3) ** -0.5
        nn.init.uniform_(self.weight, -bound, bound)

    def flat_weight(self) -> torch.Tensor:
        """``(K³, C_in, C_out)`` view of the weight."""
        return self.weight.reshape(-1, self.in_channels, self.out_channels)

    def check_input(self, t: SparseTensor) -> None:
        if t.features.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} channels, "
                             f"got {t.features.shape[1]}")

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, indice_key={self.indice_key!r}")


class _TorchConv(SparseConvBase):
    """Shared forward of the PyTorch layers; ``path`` is one of :data:`PATHS` or ``"auto"``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, subm: bool, indice_key: str | None, path: str) -> None:
        if path not in (*PATHS, "auto"):
            raise ValueError(f"path must be one of {PATHS} or 'auto', not {path!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, subm,
                         indice_key)
        self.path = path

    def forward(self, t: SparseTensor) -> SparseTensor:
        """``t`` with features ``(M_in, C_in)`` → features ``(M_out, C_out)`` on the output
        sites (the input's for SubM)."""
        self.check_input(t)
        nmap = get_map(t, self.indice_key, self.kernel_size, self.stride, self.padding,
                       self.subm)
        path = self.path
        if path == "auto":
            path = choose_path(t.features.device, nmap.neighbours.shape[0],
                               nmap.neighbours.shape[1], self.in_channels)
        if path == "gather":
            out = conv_gather(t.features, self.flat_weight(), nmap)
        elif path == "scatter":
            out = conv_scatter(t.features, self.flat_weight(), nmap)
        else:
            out = conv_dense(t, self.flat_weight(), nmap, self.stride, self.padding)
        if self.subm:
            return t.with_features(out)
        return SparseTensor(out, nmap.out_coords, nmap.out_shape, t.batch_size)


class SubMConv3d(_TorchConv):
    """Submanifold sparse conv (stride 1, same sites), kernel ``kernel_size`` (odd)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 indice_key: str | None = None, path: str = "auto") -> None:
        super().__init__(in_channels, out_channels, kernel_size, 1, kernel_size // 2, True,
                         indice_key, path)


class SparseConv3d(_TorchConv):
    """Strided sparse conv; output sites are those whose receptive field has an active
    input. NeuralBody uses kernel 3, stride 2, padding 1 (output index o ↔ input 2o)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 2, padding: int = 1, indice_key: str | None = None,
                 path: str = "auto") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, False,
                         indice_key, path)

"""The same two sparse conv layers, computed by spconv 2.x (``pip install -e ".[spconv]"``).

The layers hold the canonical weight of :class:`~models.sparse.torch_backend.SparseConvBase`,
``(kD, kH, kW, C_in, C_out)``, so a state dict moves between backends unchanged; spconv 2.3.8
wants ``(C_out, kD, kH, kW, C_in)`` (``ALL_WEIGHT_IS_KRSC``; checked offset by offset against
``F.conv3d``: kD pairs with coords column 1 = z, and it is a cross-correlation like F.conv3d),
hence a ``permute`` per call. spconv is imported on first use only.

They call spconv's native indice-pair ops (``spconv.pytorch.ops.get_indice_pairs``,
``indice_conv``, ``indice_conv_backward``) through an autograd function of ours instead of
``spconv.pytorch.SubMConv3d``, which also sidesteps spconv#668 (in eval mode spconv's modules
may return SubM outputs without a gradient). Neighbour pairs are cached in the input's
``SparseTensor.cache`` under the layer's ``indice_key``. Only first derivatives exist
(spconv's backward is ``once_differentiable``); the Eikonal loss only needs second derivatives
through the trilinear sampling, not through the convs.

Three problems of the spconv 2.3.8 CPU wheel (with torch 2.13), measured here:

1. **Backward fails on CPU**: ``spconv.pytorch.cppcore.get_current_stream`` calls
   ``torch.cuda.current_stream()`` unconditionally (and ``ops``, ``hash``, ``utils`` import it
   by name). :func:`patch_cpu_streams` rebinds it to return stream 0 when CUDA is unavailable;
   gradients then equal dense ``F.conv3d``'s. The patch is explicit, idempotent and applied on
   the first use of this backend only.
2. **Non-contiguous indices are misread**: spconv ignores strides, and ``torch.nonzero`` returns
   a column-major tensor in torch 2.13 (``.int()`` keeps that layout), which silently yields
   wrong neighbour pairs. Indices and features are made contiguous before every call.
3. **A data race in the CPU scatter-add**: the wheel is built *with* OpenMP (it ships its own
   libgomp; a 48³ SubM conv took 3.5 ms on 1 thread, 2.7 ms on 2), and its parallel regions
   evidently run on the libgomp torch loaded first: ``torch.set_num_threads`` governs them,
   ``omp_set_num_threads`` on spconv's copy does not. ``GatherCPU::scatter_add`` shares its row
   pointers between threads (captured by reference), so with 2 threads a 48³ SubM conv was off
   by 0.2–0.5 of the output's magnitude; with 1 thread it matches F.conv3d to 1e-7. Every CPU
   call therefore runs under ``torch.set_num_threads(1)`` (restored afterwards): spconv's convs
   are single-threaded here, and the thread count is process-wide meanwhile.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch

from models.sparse.tensor import SparseTensor, linear_keys
from models.sparse.torch_backend import SparseConvBase, conv_output_shape

INSTALL_HINT = 'pip install -e ".[spconv]" (spconv==2.3.8)'


def import_spconv() -> ModuleType:
    """``spconv.pytorch``, patched for CPU; a PipelineError naming the extra if missing."""
    try:
        import spconv.pytorch as spconv_pytorch
    except ImportError as err:
        from models.errors import PipelineError

        raise PipelineError(f"the spconv sparse-conv backend needs spconv: {INSTALL_HINT} "
                            f"(or use sparse_backend 'torch'); import failed: {err}") from err
    patch_cpu_streams()
    return spconv_pytorch


def _cpu_stream() -> int:
    """Stream handle for CPU-only runs (spconv ignores it for CPU tensors)."""
    return 0


_cpu_stream.spconv_cpu_patch = True  # type: ignore[attr-defined]


def patch_cpu_streams() -> bool:
    """Make spconv's ``get_current_stream`` return 0 when CUDA is unavailable (idempotent).

    spconv 2.3.8 calls ``torch.cuda.current_stream()`` unconditionally in its backward, which
    raises on a CPU-only torch. Every loaded ``spconv.*`` module that bound the original
    function by name is rebound to :func:`_cpu_stream`. Returns True if anything was patched.
    """
    if torch.cuda.is_available():
        return False
    import spconv.pytorch.cppcore as cppcore

    original = cppcore.get_current_stream
    if getattr(original, "spconv_cpu_patch", False):
        return False
    for name, module in list(sys.modules.items()):
        if name.startswith("spconv") and getattr(module, "get_current_stream", None) is original:
            module.get_current_stream = _cpu_stream
    return True


@contextmanager
def single_threaded_on_cpu(device: torch.device) -> Iterator[None]:
    """``torch.set_num_threads(1)`` for the duration, on CPU (spconv's scatter-add race)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _SpconvConv(torch.autograd.Function):
    """spconv's native gather–GEMM–scatter: features ``(M_in, C_in)``, weight ``(C_out, kD, kH,
    kW, C_in)`` → ``(M_out, C_out)``."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, weight: torch.Tensor, pairs: torch.Tensor,
                pair_num: torch.Tensor, num_out: int, subm: bool) -> torch.Tensor:
        from spconv.pytorch import ops

        features, weight = features.contiguous(), weight.contiguous()
        ctx.save_for_backward(features, weight, pairs, pair_num)
        ctx.subm = subm
        with single_threaded_on_cpu(features.device):
            return ops.indice_conv(features, weight, pairs, pair_num, num_out, False, subm)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        from spconv.pytorch import ops

        features, weight, pairs, pair_num = ctx.saved_tensors
        with single_threaded_on_cpu(features.device):
            grad_in, grad_w = ops.indice_conv_backward(features, weight, grad.contiguous(),
                                                       pairs, pair_num, False, ctx.subm)
        return grad_in, grad_w, None, None, None, None


def spconv_pairs(t: SparseTensor, key: tuple, kernel: int, stride: int, padding: int,
                 subm: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """spconv's ``(out_coords (M_out, 4) int32, pairs (2, K³, ·), pair_num (K³,))``, cached."""
    hit = t.cache.get(key)
    if hit is not None:
        return hit
    spconv_pytorch = import_spconv()
    from spconv.core import ConvAlgo

    indices = t.coords.int().contiguous()
    with single_threaded_on_cpu(indices.device):
        out_coords, pairs, pair_num = spconv_pytorch.ops.get_indice_pairs(
            indices, t.batch_size, list(t.spatial_shape), ConvAlgo.Native, [kernel] * 3,
            [stride] * 3, [padding] * 3, [1] * 3, [0] * 3, subm, False)
    t.cache[key] = (out_coords, pairs, pair_num)
    return out_coords, pairs, pair_num


class _SpconvLayer(SparseConvBase):
    """Forward shared by the spconv layers (parameters as :class:`SparseConvBase`)."""

    def forward(self, t: SparseTensor) -> SparseTensor:
        """``t`` with features ``(M_in, C_in)`` → features ``(M_out, C_out)``; strided outputs
        are re-sorted by linear key, like the torch backend's."""
        self.check_input(t)
        key = ("spconv", self.indice_key, self.kernel_size, self.stride, self.padding, self.subm)
        out_coords, pairs, pair_num = spconv_pairs(t, key, self.kernel_size, self.stride,
                                                   self.padding, self.subm)
        weight = self.weight.permute(4, 0, 1, 2, 3)  # (C_out, kD, kH, kW, C_in)
        out = _SpconvConv.apply(t.features, weight, pairs, pair_num, out_coords.shape[0],
                                self.subm)
        if self.subm:
            return t.with_features(out)
        shape = conv_output_shape(t.spatial_shape, self.kernel_size, self.stride, self.padding)
        order = torch.argsort(linear_keys(out_coords, shape))
        return SparseTensor(out[order], out_coords[order].contiguous(), shape, t.batch_size)


class SubMConv3d(_SpconvLayer):
    """Submanifold sparse conv by spconv (same signature as the torch backend's)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 indice_key: str | None = None) -> None:
        import_spconv()
        super().__init__(in_channels, out_channels, kernel_size, 1, kernel_size // 2, True,
                         indice_key)


class SparseConv3d(_SpconvLayer):
    """Strided sparse conv by spconv (same signature as the torch backend's)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 2, padding: int = 1, indice_key: str | None = None) -> None:
        import_spconv()
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, False,
                         indice_key)

"""Choosing a sparse-conv backend: ``"torch"``, ``"spconv"`` or ``"auto"``.

``"auto"`` takes the backend measured fastest for SparseConvNet forward+backward on the device
type (benchmarks/sparse_conv_speed.py; :data:`FASTEST`). On the 2-core CPU with 2 threads the
pure-PyTorch backend (auto path) took 0.035 s at demo size and 0.345 s at paper size against
spconv 2.3.8's 0.052 s and 0.397 s: spconv's CPU convs must run single-threaded (a data race,
see :mod:`models.sparse.spconv_backend`). Single-threaded, spconv is faster at paper size
(0.45 s against 0.63 s) and level at demo size. CUDA: no GPU was available to measure, so the
torch backend stays the default there too. spconv is chosen by ``"auto"`` only where it is
importable and listed in :data:`FASTEST`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

BACKENDS = ("torch", "spconv", "auto")
FASTEST = MappingProxyType({"cpu": "torch", "cuda": "torch"})


@dataclass(frozen=True)
class SparseLayers:
    """The two layer classes of a backend (same constructor signatures, same parameters)."""

    name: str
    subm: type[nn.Module]
    conv: type[nn.Module]


def resolve_backend(backend: str, device: torch.device | str | None = None) -> str:
    """``"torch"`` or ``"spconv"`` for ``backend`` on ``device`` (default: CUDA if available)."""
    if backend not in BACKENDS:
        raise ValueError(f"sparse backend must be one of {BACKENDS}, not {backend!r}")
    if backend != "auto":
        return backend
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    choice = FASTEST.get(torch.device(device).type, "torch")
    if choice == "spconv" and importlib.util.find_spec("spconv") is None:
        return "torch"
    return choice


def make_layers(backend: str = "auto", device: torch.device | str | None = None
                ) -> SparseLayers:
    """The :class:`SparseLayers` of ``backend`` (see :func:`resolve_backend`).

    ``"spconv"`` imports spconv now and raises PipelineError naming the extra if it is missing.
    """
    name = resolve_backend(backend, device)
    if name == "spconv":
        from models.sparse import spconv_backend

        spconv_backend.import_spconv()
        return SparseLayers("spconv", spconv_backend.SubMConv3d, spconv_backend.SparseConv3d)
    from models.sparse import torch_backend

    return SparseLayers("torch", torch_backend.SubMConv3d, torch_backend.SparseConv3d)

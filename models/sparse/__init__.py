"""Sparse voxel tensors and 3D sparse convolutions (pure PyTorch, or spconv 2.x).

* :mod:`~models.sparse.tensor`: :class:`SparseTensor`, :func:`voxelize`, :func:`densify`.
* :mod:`~models.sparse.sampling`: :func:`sample_levels`, trilinear read-out of latent levels.
* :mod:`~models.sparse.torch_backend` / :mod:`~models.sparse.spconv_backend`: ``SubMConv3d``
  and ``SparseConv3d`` with one weight layout, ``(kD, kH, kW, C_in, C_out)``.
* :mod:`~models.sparse.layers`: :func:`make_layers` picks a backend (``torch``, ``spconv``,
  ``auto``).
"""

from models.sparse.layers import SparseLayers, make_layers, resolve_backend
from models.sparse.sampling import sample_levels
from models.sparse.tensor import SparseTensor, densify, voxelize

__all__ = [
    "SparseLayers",
    "SparseTensor",
    "densify",
    "make_layers",
    "resolve_backend",
    "sample_levels",
    "voxelize",
]

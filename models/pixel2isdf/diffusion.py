"""Latent-code diffusion: NeuralBody's SparseConvNet over the voxelised canonical body.

The fused per-vertex codes are scattered into a voxel grid around the canonical body
(:func:`~models.sparse.voxelize`), diffused by a sparse-conv encoder, and read back at query
points by trilinear sampling of four of its levels (NeuralBody, zju3dv/neuralbody
``lib/networks/latent_xyzc.py``; Pixel2ISDF report §3.3):

====== ============================== ======== ============
stage  layers (kernel 3, no bias)     channels output
====== ============================== ======== ============
conv0  2 × SubM                       C → 16
down0  strided conv (s 2, p 1)        16 → 32
conv1  2 × SubM                       32       level 1, stride 2
down1  strided conv                   32 → 64
conv2  3 × SubM                       64       level 2, stride 4
down2  strided conv                   64 → 128
conv3  3 × SubM                       128      level 3, stride 8
down3  strided conv                   128      (128 → 128)
conv4  3 × SubM                       128      level 4, stride 16
====== ============================== ======== ============

Every conv is followed by ``BatchNorm1d(eps=1e-3, momentum=0.01)`` on the sparse features
``(M, C)`` and a ReLU. Channel counts are multiplied by ``width`` (rounded, at least 4); at
width 1 the sampled feature has 32 + 64 + 128 + 128 = 352 channels. The SubM layers of a stage
share an ``indice_key`` so their neighbour map is built once.
"""

from __future__ import annotations

import torch
from torch import nn

from models.sparse import SparseTensor, make_layers, sample_levels, voxelize


class SparseBNReLU(nn.Module):
    """A sparse conv, then BatchNorm1d and ReLU on its ``(M, C)`` features."""

    def __init__(self, conv: nn.Module, channels: int, momentum: float = 0.01) -> None:
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm1d(channels, eps=1e-3, momentum=momentum)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, t: SparseTensor) -> SparseTensor:
        """features ``(M_in, C_in)`` → ``(M_out, C)``."""
        t = self.conv(t)
        return t.with_features(self.relu(self.bn(t.features)))


class SparseConvNet(nn.Module):
    """NeuralBody's sparse-conv encoder returning its four deeper levels.

    Args:
        in_channels: C, the code width.
        width: factor on every channel count (``max(4, round(n · width))``).
        backend: ``"torch"``, ``"spconv"`` or ``"auto"`` (:func:`models.sparse.make_layers`).
        bn_momentum: the batch norms' running-statistics momentum (NeuralBody's 0.01 suits
            its 400k-step runs; a run of a few hundred steps needs ~0.1, or its eval-mode
            statistics are still mostly the initial ones).

        fine_level: also return conv0's output (stride 1) as a fifth, first level.

    Attributes:
        strides: ``(2, 4, 8, 16)`` (``(1, 2, 4, 8, 16)`` with ``fine_level``), each level's
            stride relative to the input grid.
        level_channels: the levels' channel counts.
        out_channels: their sum, the width of :func:`diffuse_and_sample`'s output.
    """

    def __init__(self, in_channels: int, width: float = 1.0, backend: str = "auto",
                 bn_momentum: float = 0.01, fine_level: bool = False) -> None:
        super().__init__()
        self.fine_level = fine_level
        self.strides: tuple[int, ...] = (1, 2, 4, 8, 16) if fine_level else (2, 4, 8, 16)
        layers = make_layers(backend)
        self.backend = layers.name

        def ch(n: int) -> int:
            return max(4, round(n * width))

        def subm(c_in: int, c_out: int, n: int, key: str) -> nn.Sequential:
            blocks = [SparseBNReLU(layers.subm(c_in if i == 0 else c_out, c_out, 3,
                                               indice_key=key), c_out, bn_momentum)
                      for i in range(n)]
            return nn.Sequential(*blocks)

        def down(c_in: int, c_out: int, key: str) -> SparseBNReLU:
            return SparseBNReLU(layers.conv(c_in, c_out, 3, 2, 1, indice_key=key), c_out,
                                bn_momentum)

        c16, c32, c64, c128 = ch(16), ch(32), ch(64), ch(128)
        self.conv0 = subm(in_channels, c16, 2, "subm0")
        self.down0 = down(c16, c32, "down0")
        self.conv1 = subm(c32, c32, 2, "subm1")
        self.down1 = down(c32, c64, "down1")
        self.conv2 = subm(c64, c64, 3, "subm2")
        self.down2 = down(c64, c128, "down2")
        self.conv3 = subm(c128, c128, 3, "subm3")
        self.down3 = down(c128, c128, "down3")
        self.conv4 = subm(c128, c128, 3, "subm4")
        self.level_channels: tuple[int, ...] = (c32, c64, c128, c128)
        if fine_level:
            self.level_channels = (c16, *self.level_channels)
        self.out_channels = sum(self.level_channels)

    def forward(self, t: SparseTensor) -> list[SparseTensor]:
        """Input features ``(M, C)`` on a ``(D, H, W)`` grid → 4 levels, features ``(M_l,
        level_channels[l])`` on grids of ``(D, H, W)`` halved (``(n - 1) // 2 + 1``) 1…4
        times (with ``fine_level``, conv0's output on the input grid first)."""
        t = self.conv0(t)
        level1 = self.conv1(self.down0(t))
        level2 = self.conv2(self.down1(level1))
        level3 = self.conv3(self.down2(level2))
        level4 = self.conv4(self.down3(level3))
        return ([t] if self.fine_level else []) + [level1, level2, level3, level4]


def diffuse_and_sample(net: SparseConvNet, codes: torch.Tensor, vertices: torch.Tensor,
                       points: torch.Tensor, origin: torch.Tensor, voxel_size: torch.Tensor,
                       shape: tuple[int, int, int]) -> torch.Tensor:
    """Voxelise the codes, run ``net``, sample its levels at ``points``.

    Args:
        net: the SparseConvNet. codes: ``(B, N, C)``. vertices: ``(B, N, 3)`` canonical.
        points: ``(B, P, 3)`` canonical queries. origin: ``(B, 3)``, centre of voxel 0.
        voxel_size: ``(B,)``. shape: ``(D, H, W)``.

    Returns:
        ``(B, P, net.out_channels)``.
    """
    levels = net(voxelize(vertices, codes, origin, voxel_size, shape))
    return sample_levels(levels, points, origin, voxel_size, list(net.strides))

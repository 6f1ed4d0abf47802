"""PIFu's surface classifier: a 1×1 Conv1d MLP over per-point features, in which every
layer after the first also takes the input features (PIFu's residual form)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SurfaceClassifier(nn.Module):
    """``(B, D, P)`` point features → ``(B, 1, P)`` pre-activation logits.

    Layer widths ``D → h1 → … → hk → 1``; layer ``i ≥ 1`` reads ``[h_i, input]`` (so PIFu's
    257-d input gives layer inputs 257, 1281, 769, 513, 385). LeakyReLU(0.01) between
    layers; the last activation is the model's (:class:`models.pifu.model.PifuNet`).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        dims = [in_dim, *hidden, 1]
        self.layers = nn.ModuleList(
            nn.Conv1d(dims[i] + (in_dim if i > 0 else 0), dims[i + 1], 1)
            for i in range(len(dims) - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h if i == 0 else torch.cat([h, x], dim=1))
            if i < len(self.layers) - 1:
                h = F.leaky_relu(h, 0.01)
        return h

"""Fusion of a vertex's pixel-aligned features across views and poses (report §3.2).

For each body vertex, each of its K inputs (a view of some action) carries a feature. Each
input's feature is concatenated with the mean and the variance over the vertex's **valid**
inputs; a shared MLP turns that into a weight logit and a transformed feature per input; a
softmax over the valid inputs gives the weights, their weighted sum one fused feature, and a
second MLP the vertex's latent code. Nothing depends on K, so training can use K = 4 and
reconstruction any number of views. A vertex no input sees gets the code of a zero feature.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


def mlp(sizes: list[int], last_activation: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] → … → sizes[-1]`` with ReLU between (and after, if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def masked_mean_var(features: torch.Tensor, valid: torch.Tensor) -> tuple[
        torch.Tensor, torch.Tensor]:
    """Mean and (biased) variance over the input axis, valid inputs only.

    Args:
        features: ``(B, K, N, C)``. valid: ``(B, K, N)`` bool.

    Returns:
        mean, var: ``(B, N, C)`` (zero where a vertex has no valid input).
    """
    w = valid.unsqueeze(-1).to(features.dtype)
    count = w.sum(dim=1).clamp_min(1.0)
    mean = (features * w).sum(dim=1) / count
    var = (((features - mean.unsqueeze(1)) ** 2) * w).sum(dim=1) / count
    return mean, var


class ViewFusion(nn.Module):
    """Weighted fusion of K inputs per vertex into a latent code.

    Args:
        in_channels: C, the pixel-aligned feature width.
        hidden: width of both MLPs (and of the transformed per-input feature).
        latent_dim: d, the code width (64 at paper scale).
    """

    def __init__(self, in_channels: int, hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.per_input = mlp([3 * in_channels, hidden, hidden + 1])
        self.to_code = mlp([hidden, hidden, latent_dim])

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor]:
        """Fuse.

        Args:
            features: ``(B, K, N, C)`` pixel-aligned features (zero where invalid).
            valid: ``(B, K, N)`` bool.

        Returns:
            codes ``(B, N, d)`` and weights ``(B, K, N)`` (zero on invalid inputs; each
            vertex's weights sum to 1 when it has a valid input, else all zero).
        """
        mean, var = masked_mean_var(features, valid)
        k = features.shape[1]
        stats = torch.cat([mean, var], dim=-1).unsqueeze(1).expand(-1, k, -1, -1)
        out = self.per_input(torch.cat([features, stats], dim=-1))
        logits, transformed = out[..., 0], out[..., 1:]
        logits = logits.masked_fill(~valid, float("-inf"))
        seen = valid.any(dim=1, keepdim=True)
        weights = torch.softmax(torch.where(seen, logits, torch.zeros_like(logits)), dim=1)
        weights = weights * valid.to(weights.dtype)
        fused = (weights.unsqueeze(-1) * transformed).sum(dim=1)
        return self.to_code(fused), weights

"""PIFu's image encoder: a stem and stacked hourglasses (Newell et al.), one feature map
per stack for intermediate supervision. Sizes: ANCHORS.md, "PIFu"."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """GroupNorm with 32 groups (PIFu's choice; fewer when a small width is not divisible)
    or BatchNorm."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    return nn.BatchNorm2d(channels)


class ConvBlock(nn.Module):
    """Pre-activation residual block: three 3×3 convs of ``out/2``, ``out/4``, ``out/4``
    channels whose outputs are concatenated, plus the input (1×1 conv when the width
    changes). ``(B, in, H, W)`` → ``(B, out, H, W)``."""

    def __init__(self, c_in: int, c_out: int, norm: str) -> None:
        super().__init__()
        widths = (c_out // 2, c_out // 4, c_out - c_out // 2 - c_out // 4)
        ins = (c_in, widths[0], widths[1])
        self.norms = nn.ModuleList(norm_layer(norm, c) for c in ins)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1, bias=False)
                                   for a, b in zip(ins, widths, strict=True))
        self.skip = None if c_in == c_out else nn.Sequential(
            norm_layer(norm, c_in), nn.ReLU(inplace=True), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs, h = [], x
        for norm, conv in zip(self.norms, self.convs, strict=True):
            h = conv(F.relu(norm(h)))
            outs.append(h)
        residual = x if self.skip is None else self.skip(x)
        return torch.cat(outs, dim=1) + residual


class HourGlass(nn.Module):
    """Recursive hourglass of ``depth`` levels: each level keeps a full-resolution branch and
    a pooled branch, upsampled ×2 and added back. ``(B, C, H, W)`` → same shape."""

    def __init__(self, depth: int, channels: int, norm: str) -> None:
        super().__init__()
        self.up = ConvBlock(channels, channels, norm)
        self.down = ConvBlock(channels, channels, norm)
        self.inner = (HourGlass(depth - 1, channels, norm) if depth > 1
                      else ConvBlock(channels, channels, norm))
        self.after = ConvBlock(channels, channels, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.after(self.inner(self.down(F.avg_pool2d(x, 2, stride=2))))
        return self.up(x) + F.interpolate(low, scale_factor=2, mode="bicubic",
                                          align_corners=True)


class HGFilter(nn.Module):
    """Stem + ``n_stacks`` hourglasses.

    Stem: 7×7 conv stride 2 (3 → 64), norm, ReLU; ConvBlock 64 → 128; avg-pool 2;
    ConvBlock 128 → 128; ConvBlock 128 → C. Each stack: hourglass, ConvBlock, 1×1 conv,
    norm, ReLU, then a 1×1 conv to the stack's output; between stacks the running features
    add a 1×1 projection of both.

    ``(B, in_channels, S, S)`` → list of ``n_stacks`` maps ``(B, C, S/4, S/4)``.
    """

    def __init__(self, n_stacks: int, depth: int, channels: int, norm: str,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3), norm_layer(norm, 64),
            nn.ReLU(inplace=True), ConvBlock(64, 128, norm), nn.AvgPool2d(2, stride=2),
            ConvBlock(128, 128, norm), ConvBlock(128, channels, norm))
        self.hourglasses = nn.ModuleList(HourGlass(depth, channels, norm)
                                         for _ in range(n_stacks))
        self.heads = nn.ModuleList(nn.Sequential(
            ConvBlock(channels, channels, norm), nn.Conv2d(channels, channels, 1),
            norm_layer(norm, channels), nn.ReLU(inplace=True)) for _ in range(n_stacks))
        self.outs = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(n_stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(channels, channels, 1)
                                            for _ in range(n_stacks - 1))
        self.merge_outputs = nn.ModuleList(nn.Conv2d(channels, channels, 1)
                                           for _ in range(n_stacks - 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.stem(x)
        outputs = []
        for i, (hourglass, head, out) in enumerate(zip(self.hourglasses, self.heads, self.outs,
                                                       strict=True)):
            h = head(hourglass(features))
            y = out(h)
            outputs.append(y)
            if i < len(self.merge_features):
                features = features + self.merge_features[i](h) + self.merge_outputs[i](y)
        return outputs

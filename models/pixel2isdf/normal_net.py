"""Pixel2ISDF's normal network: image → camera-frame unit normal map, and its loss.

:class:`NormalNet` is a pix2pixHD ``GlobalGenerator`` as PIFuHD uses it for its front/back
normal nets (``define_G(3, 3, 64, "global", 4, 9, norm="instance")``): reflection-padded 7×7
conv, ``n_downsample`` stride-2 3×3 convs doubling the channels, ``n_blocks`` residual blocks,
``n_downsample`` stride-2 transposed convs halving them, reflection-padded 7×7 conv to 3
channels. PIFuHD ends with ``tanh`` and then divides by the norm; here the 7×7 output is
normalised directly (``tanh`` only compresses the vector before its direction is taken).

Conventions (docs/conventions.md):

* Camera frame: OpenCV axes, x right, y down, z forward (the viewing direction).
* Normals face the camera, so ``n_z < 0`` on the visible surface; the background is 0.
* The cache's ``oracle/normals`` and the synthetic ``<view>_normal.png`` store them as
  ``(n + 1) / 2 * 255`` uint8 with all-zero background pixels; :func:`decode_normals`
  inverts that.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["instance", "batch", "group"]
_MAX_GROUPS = 32


def norm_layer(kind: Norm, channels: int) -> nn.Module:
    """The normalisation layer ``kind`` over ``channels``: (B, C, H, W) -> (B, C, H, W).

    ``"instance"``: InstanceNorm2d without affine parameters (PIFuHD's choice); ``"batch"``:
    BatchNorm2d; ``"group"``: GroupNorm with ``gcd(32, channels)`` groups.
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(_MAX_GROUPS, channels), channels)
    raise ValueError(f"norm must be 'instance', 'batch' or 'group', got {kind!r}")


class ResnetBlock(nn.Module):
    """pix2pixHD residual block: x + (pad, conv3, norm, ReLU, pad, conv3, norm)(x).

    ``forward(x (B, C, H, W)) -> (B, C, H, W)``; H, W >= 2 (reflection padding).
    """

    def __init__(self, channels: int, norm: Norm) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x + self.body(x)


class NormalNet(nn.Module):
    """Image + alpha → camera-frame unit normals (pix2pixHD GlobalGenerator).

    The defaults are PIFuHD's sizes (ngf 64, 4 downsamplings, 9 residual blocks at 1024
    channels). H and W must be multiples of ``2 ** n_downsample`` and the bottleneck
    (``H / 2 ** n_downsample``) at least 2 pixels.
    """

    def __init__(self, in_channels: int = 3, ngf: int = 64, n_downsample: int = 4,
                 n_blocks: int = 9, norm: Norm = "instance") -> None:
        super().__init__()
        if in_channels < 1 or ngf < 1 or n_downsample < 0 or n_blocks < 0:
            raise ValueError(f"bad NormalNet sizes: in_channels={in_channels}, ngf={ngf}, "
                             f"n_downsample={n_downsample}, n_blocks={n_blocks}")
        self.in_channels = in_channels
        self.n_downsample = n_downsample
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7),
                                   norm_layer(norm, ngf), nn.ReLU(inplace=True)]
        channels = ngf
        for _ in range(n_downsample):
            layers += [nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
                       norm_layer(norm, 2 * channels), nn.ReLU(inplace=True)]
            channels *= 2
        layers += [ResnetBlock(channels, norm) for _ in range(n_blocks)]
        for _ in range(n_downsample):
            layers += [nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1,
                                          output_padding=1),
                       norm_layer(norm, channels // 2), nn.ReLU(inplace=True)]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, 3, 7)]
        self.model = nn.Sequential(*layers)

    def forward(self, image: Tensor, alpha: Tensor) -> Tensor:
        """Predict the normal map of the masked person.

        Args:
            image: (B, in_channels, H, W) in [0, 1].
            alpha: (B, 1, H, W) in [0, 1], the person's matte.

        Returns:
            (B, 3, H, W) unit camera-frame normals where ``alpha > 0.5``, 0 elsewhere.
        """
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"NormalNet expects an image (B, {self.in_channels}, H, W), got "
                             f"{tuple(image.shape)}")
        if alpha.shape != (image.shape[0], 1, *image.shape[2:]):
            raise ValueError(f"alpha must be {(image.shape[0], 1, *image.shape[2:])}, got "
                             f"{tuple(alpha.shape)}")
        step = 2 ** self.n_downsample
        height, width = image.shape[-2:]
        if height % step or width % step:
            raise ValueError(f"NormalNet with {self.n_downsample} downsamplings needs H and W "
                             f"multiples of {step}, got {height}x{width}")
        x = (image * 2.0 - 1.0) * alpha  # PIFuHD: Normalize(0.5, 0.5), background zeroed
        normals = F.normalize(self.model(x), dim=1)
        return normals * (alpha > 0.5).to(normals.dtype)


def decode_normals(encoded: Tensor, dim: int = -3) -> Tensor:
    """Unit normals from their ``(n + 1) / 2 * 255`` image encoding (cache, PNG files).

    Args:
        encoded: uint8 in [0, 255] or float in [0, 1] (the uint8 value / 255), channels on
            ``dim``: e.g. (B, 3, H, W) or (3, H, W) with the default ``dim=-3``, or the cache's
            (Nv, S, S, 3) layout with ``dim=-1``.
        dim: the channel dimension (size 3).

    Returns:
        float32 (float input: its dtype) unit normals of the same shape, 0 where the stored
        pixel is all-zero (background).
    """
    if encoded.shape[dim] != 3:
        raise ValueError(f"decode_normals needs 3 channels on dim {dim}, got shape "
                         f"{tuple(encoded.shape)}")
    if encoded.dtype == torch.uint8:
        values = encoded.to(torch.float32) / 255.0
    elif encoded.is_floating_point():
        values = encoded
    else:
        raise ValueError(f"decode_normals needs uint8 or float input, got {encoded.dtype}")
    foreground = (encoded != 0).any(dim=dim, keepdim=True)
    normals = F.normalize(values * 2.0 - 1.0, dim=dim)
    return normals * foreground.to(normals.dtype)


def normal_loss(pred: Tensor, target: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """L1 plus cosine loss of predicted normals over the masked pixels.

    Args:
        pred: (B, 3, H, W) predicted normals.
        target: (B, 3, H, W) target unit normals.
        mask: (B, 1, H, W) bool or float; pixels with ``mask > 0.5`` (bool: True) count.

    Returns:
        ``{"l1": (), "cos": (), "total": ()}``: ``l1`` the mean over masked pixels of the mean
        absolute difference over the 3 channels, ``cos`` the mean over masked pixels of
        ``1 - cos(pred, target)``, ``total = l1 + cos``. With an empty mask all are 0 and still
        depend on ``pred`` (a zero gradient, no NaN).
    """
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"pred and target must both be (B, 3, H, W), got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    if mask.shape != (pred.shape[0], 1, *pred.shape[2:]):
        raise ValueError(f"mask must be {(pred.shape[0], 1, *pred.shape[2:])}, got "
                         f"{tuple(mask.shape)}")
    weight = (mask if mask.dtype == torch.bool else mask > 0.5).to(pred.dtype)
    count = weight.sum().clamp(min=1.0)  # an empty mask gives 0 / 1, not 0 / 0
    l1 = ((pred - target).abs().mean(dim=1, keepdim=True) * weight).sum() / count
    cosine = F.cosine_similarity(pred, target, dim=1, eps=1e-8).unsqueeze(1)
    cos = ((1.0 - cosine) * weight).sum() / count
    return {"l1": l1, "cos": cos, "total": l1 + cos}

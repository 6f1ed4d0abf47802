"""Image tensors as the networks take them: uint8 or float to float [0, 1], square resizes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, S, S)`` → ``(B, C, size, size)`` (antialiased bilinear; identity if equal)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


def as_float_image(x: torch.Tensor) -> torch.Tensor:
    """uint8 0–255 or float [0, 1] images → float32 [0, 1]."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()

"""Square person crops: the box around a person, cutting and resizing, and coordinate maps.

A crop covers the square ``[x0 - 0.5, x0 - 0.5 + size) × [y0 - 0.5, y0 - 0.5 + size)`` of the
photo (pixel-edge coordinates; pixel centres are integers) resized to ``out_size`` pixels; what
lies outside the photo is zero. It is the affine map ``u' = s (u - x0 + 0.5) - 0.5`` with
``s = out_size / size``, the same as :meth:`pipeline.camera.Camera.with_crop`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class CropBox:
    """A square crop: origin ``x0, y0`` and side ``size`` in photo pixels, ``out_size`` output."""

    x0: float
    y0: float
    size: float
    out_size: int

    def __post_init__(self) -> None:
        if not (np.isfinite([self.x0, self.y0, self.size]).all() and self.size > 0
                and self.out_size > 0):
            raise ValueError(f"invalid crop {self}")

    @property
    def scale(self) -> float:
        return self.out_size / self.size

    def to_crop(self, uv: np.ndarray) -> np.ndarray:
        """Photo pixel coordinates ``(N, 2)`` → crop pixel coordinates ``(N, 2)``."""
        return self.scale * (np.asarray(uv, dtype=np.float64) - [self.x0, self.y0] + 0.5) - 0.5

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """Crop pixel coordinates ``(N, 2)`` → photo pixel coordinates ``(N, 2)``."""
        return (np.asarray(uv, dtype=np.float64) + 0.5) / self.scale + [self.x0, self.y0] - 0.5

    def box_to_crop(self, box_xyxy: np.ndarray) -> np.ndarray:
        """A photo box ``[x0, y0, x1, y1]`` (inclusive pixel extents) in crop pixels."""
        return self.to_crop(np.asarray(box_xyxy, dtype=np.float64).reshape(2, 2)).reshape(4)

    def cut(self, image: np.ndarray, resample: str = "bicubic") -> np.ndarray:
        """The crop of ``image`` ``(H, W[, C])`` uint8: ``(out_size, out_size[, C])``, zero
        outside the photo."""
        method = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                  "nearest": Image.Resampling.NEAREST}[resample]
        pil = Image.fromarray(np.ascontiguousarray(image))
        # PIL's pixel i spans [i, i + 1): our edge coordinate e is PIL's e + 0.5.
        extent = (self.x0, self.y0, self.x0 + self.size, self.y0 + self.size)
        out = pil.transform((self.out_size, self.out_size), Image.Transform.EXTENT, extent,
                            resample=method, fillcolor=0)
        return np.asarray(out)

    def to_dict(self) -> dict[str, float]:
        return {"x0": self.x0, "y0": self.y0, "size": self.size, "out_size": self.out_size}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CropBox:
        return cls(float(d["x0"]), float(d["y0"]), float(d["size"]), int(d["out_size"]))


def square_box(box_xyxy: np.ndarray, margin: float, out_size: int) -> CropBox:
    """The square crop centred on a person box, its longer side grown by ``margin`` each side.

    Args:
        box_xyxy: ``(4,)`` person box, inclusive pixel extents ``[x0, y0, x1, y1]``.
        margin: fraction of the box's longer side added on each side.
        out_size: crop side in output pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not (x1 >= x0 and y1 >= y0):
        raise ValueError(f"degenerate person box {box_xyxy}")
    side = max(x1 - x0 + 1.0, y1 - y0 + 1.0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return CropBox(x0=cx - side / 2.0 + 0.5, y0=cy - side / 2.0 + 0.5, size=side,
                   out_size=out_size)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boxes ``[x0, y0, x1, y1]`` with inclusive pixel extents."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1.0)
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1.0)
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0)  # noqa: E731
    union = area(a) + area(b) - inter
    return float(inter / union) if union > 0 else 0.0


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Tight ``[x0, y0, x1, y1]`` of a boolean mask, or None when it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)

"""Image files: reading photos as RGB, writing PNGs atomically with provenance text chunks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from pipeline.errors import PipelineError
from pipeline.io import atomic_path


def read_rgb(path: str | Path) -> np.ndarray:
    """A photo as ``(H, W, 3)`` uint8 RGB (grey, palette, alpha and CMYK are converted)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise PipelineError(f"cannot read image {path}: {exc}") from exc


def read_gray(path: str | Path) -> np.ndarray:
    """A single-channel PNG (mask, alpha) as ``(H, W)`` array of its stored dtype."""
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except (OSError, UnidentifiedImageError) as exc:
        raise PipelineError(f"cannot read image {path}: {exc}") from exc


def save_png(path: str | Path, array: np.ndarray, text: Mapping[str, str] | None = None) -> None:
    """Write ``array`` as PNG atomically; ``text`` goes into tEXt chunks (provenance)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG", pnginfo=info)


def save_jpeg(path: str | Path, rgb: np.ndarray, quality: int) -> None:
    """Write an RGB image as JPEG (no chroma subsampling) atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=quality, subsampling=0)

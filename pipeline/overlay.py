"""Overlay: one PNG per subject-action showing what preprocessing found, for people to check.

Each crop with the person box (yellow), the matte's contour (green) and the COCO-17 skeleton
(person's left in blue, right in red), tiled four per row, the view name in the corner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from pipeline.crop import CropBox
from pipeline.detect import CROP_FILE, OK
from pipeline.imageio import read_gray, read_rgb, save_png
from pipeline.io import read_json
from pipeline.skeleton import COCO17

TILE = 256
PER_ROW = 4
_EDGES = [("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
          ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
          ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
          ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
          ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
          ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
          ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
          ("right_eye", "right_ear")]
_INDEX = {name: i for i, name in enumerate(COCO17)}


MATTE_COLOUR = (40, 230, 60)


def paint_outline(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int],
                  width: int = 2) -> np.ndarray:
    """``image`` (S, S, 3) uint8 with the ``width``-pixel inner outline of the (S, S) bool
    ``mask`` painted in ``colour`` (in place; returned)."""
    edge = mask & ~ndimage.binary_erosion(mask, iterations=width)
    image[edge] = colour
    return image


def tile_sheet(tiles: list[Image.Image], per_row: int = PER_ROW) -> np.ndarray:
    """TILE² tiles, ``per_row`` to a row, as one (H, W, 3) uint8 sheet."""
    rows = (len(tiles) + per_row - 1) // per_row
    sheet = Image.new("RGB", (per_row * TILE, max(rows, 1) * TILE))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % per_row) * TILE, (i // per_row) * TILE))
    return np.asarray(sheet)


def draw_view(crop_rgb: np.ndarray, alpha: np.ndarray | None, box_in_crop: np.ndarray | None,
              coco17: np.ndarray | None, label: str) -> Image.Image:
    """One annotated crop, resized to TILE² pixels."""
    image = crop_rgb.copy()
    if alpha is not None:
        paint_outline(image, alpha > 127, MATTE_COLOUR)
    tile = Image.fromarray(image).resize((TILE, TILE), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(tile)
    s = TILE / crop_rgb.shape[0]
    if box_in_crop is not None:
        draw.rectangle([float(v) * s for v in box_in_crop], outline=(255, 220, 0), width=2)
    if coco17 is not None:
        pts = np.asarray(coco17)
        for a, b in _EDGES:
            pa, pb = pts[_INDEX[a]], pts[_INDEX[b]]
            if pa[2] > 0 and pb[2] > 0:
                colour = (60, 120, 255) if a.startswith("left") else (255, 60, 60)
                draw.line([pa[0] * s, pa[1] * s, pb[0] * s, pb[1] * s], fill=colour, width=2)
        for x, y, c in pts:
            if c > 0:
                draw.ellipse([x * s - 2, y * s - 2, x * s + 2, y * s + 2], fill=(255, 255, 255))
    draw.text((4, 4), label, fill=(255, 255, 255))
    return tile


def overlay_action(*, crops: Path, masks: Path, keypoints: Path, output: Path) -> None:
    """Tile every view's annotated crop into one PNG."""
    detected = read_json(Path(crops) / CROP_FILE)
    points = read_json(keypoints)["views"]
    tiles = []
    for view, record in detected["views"].items():
        if record["status"] != OK:
            continue
        rgb = read_rgb(Path(crops) / f"{view}.png")
        alpha_path = Path(masks) / f"{view}.png"
        alpha = read_gray(alpha_path) if alpha_path.is_file() else None
        box = CropBox.from_dict(record["crop"]).box_to_crop(np.asarray(record["box_xyxy"]))
        kp = points.get(view, {})
        coco = np.asarray(kp["coco17"]) if kp.get("status") == OK else None
        tiles.append(draw_view(rgb, alpha, box, coco, f"{view} ({detected['backend']})"))
    save_png(output, tile_sheet(tiles))


def run(*, subject: str, action: str, crops: Path, masks: Path, keypoints: Path,
        output: Path) -> None:
    """CLI entry: ``python -m pipeline overlay``."""
    del subject, action
    overlay_action(crops=crops, masks=masks, keypoints=keypoints, output=output)

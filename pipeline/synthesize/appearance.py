"""Appearance of the synthetic people: skin, hair, garment colours and
patterns, lighting and cluttered procedural backgrounds.

All colours are sRGB floats in [0, 1].  Garment patterns are evaluated on
CANONICAL (unposed) vertex positions, so they move with the garment when the
body is posed: stripes and checks in cylindrical coordinates (height, angle)
about the canonical vertical axis x = y = 0, dots as a 3D lattice of balls.
Per-vertex colours are interpolated across triangles by the renderer, so a
pattern period should be at least ~3 mesh edge lengths (sampled: 6-18 cm).

Skin detail: ``pipeline.synthesize.skin`` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pipeline.synthesize.render import Light
from pipeline.synthesize.skin import load_skin_texture, skin_detail_texture, skin_texture_names

__all__ = [
    "BOTTOM", "HAIR", "PATTERNS", "SHOES", "SKIN", "TOP", "Appearance", "GarmentStyle",
    "load_skin_texture", "pattern_mix", "photo_finish", "procedural_background",
    "sample_appearance", "sample_light", "skin_detail_texture", "skin_texture_names",
    "vertex_albedo",
]

SKIN, TOP, BOTTOM, HAIR, SHOES = 0, 1, 2, 3, 4
PATTERNS = ("plain", "stripes", "checks", "dots")
RGB = tuple[float, float, float]

# light -> dark skin tones (sRGB 0-255); sampled by interpolating along the list
_SKIN_TONES = np.array([
    [247, 224, 208], [238, 204, 182], [226, 186, 156], [208, 163, 128], [188, 139, 103],
    [163, 114, 82], [134, 90, 62], [106, 70, 48], [82, 55, 39], [60, 42, 32],
]) / 255.0
_HAIR = np.array([
    [22, 19, 18], [45, 32, 24], [78, 52, 35], [120, 85, 55], [160, 125, 80], [205, 175, 118],
    [120, 52, 28], [160, 72, 38], [140, 138, 135], [200, 198, 192],
]) / 255.0
_HAIR_P = np.array([0.25, 0.22, 0.17, 0.1, 0.06, 0.05, 0.04, 0.03, 0.05, 0.03])
_NEUTRALS = np.array([
    [20, 20, 22], [245, 245, 240], [128, 128, 128], [70, 70, 72], [30, 40, 75],
    [200, 185, 150], [60, 85, 125], [95, 115, 150], [110, 90, 60], [40, 60, 45],
]) / 255.0


@dataclass(frozen=True)
class GarmentStyle:
    """Colours and solid pattern of a garment.

    Attributes:
        colors: (primary, secondary) sRGB colours.
        pattern: one of PATTERNS.
        scale: pattern period in metres.
        angle_deg: stripe tilt; 0 = horizontal stripes, 90 = vertical.
        azimuth_deg: where the angular pattern coordinate wraps (about +Z).
    """

    colors: tuple[RGB, RGB]
    pattern: str = "plain"
    scale: float = 0.1
    angle_deg: float = 0.0
    azimuth_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if not self.scale > 0:
            raise ValueError(f"pattern scale must be positive, got {self.scale}")


@dataclass(frozen=True)
class Appearance:
    """Everything that colours one synthetic person (``dataclasses.asdict``
    gives a JSON-friendly dict)."""

    skin: RGB
    hair: RGB
    top: GarmentStyle
    bottom: GarmentStyle
    shoes: RGB
    light: Light


def _rgb(a: np.ndarray) -> RGB:
    c = np.clip(np.asarray(a, dtype=np.float64), 0.0, 1.0)
    return (float(c[0]), float(c[1]), float(c[2]))


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _sample_skin(rng: np.random.Generator) -> np.ndarray:
    x = rng.uniform(0.0, len(_SKIN_TONES) - 1)
    i = min(int(x), len(_SKIN_TONES) - 2)
    c = _SKIN_TONES[i] * (i + 1 - x) + _SKIN_TONES[i + 1] * (x - i)
    c = c * rng.uniform(0.95, 1.05) * (1 + rng.uniform(-0.03, 0.03, 3))  # brightness, hue
    return np.clip(c, 0.0, 1.0)


def _garment_colour(rng: np.random.Generator, neutral_p: float) -> np.ndarray:
    if rng.random() < neutral_p:
        c = _NEUTRALS[rng.integers(len(_NEUTRALS))] * rng.uniform(0.9, 1.1)
    else:
        c = _hsv_to_rgb(rng.random(), rng.uniform(0.25, 0.9), rng.uniform(0.25, 0.95))
    return np.clip(c, 0.0, 1.0)


def _sample_garment(rng: np.random.Generator, pattern_p: tuple[float, ...],
                    neutral_p: float) -> GarmentStyle:
    c1 = _garment_colour(rng, neutral_p)
    c2 = _garment_colour(rng, 0.4)
    if np.abs(c1 - c2).sum() < 0.4:  # make the pattern visible
        c2 = np.where(c1.mean() > 0.5, c1 * 0.35, 1.0 - 0.5 * (1.0 - c1))
    pattern = PATTERNS[rng.choice(len(PATTERNS), p=pattern_p)]
    angle = [0.0, 90.0, float(rng.uniform(20, 70))][rng.choice(3, p=[0.5, 0.35, 0.15])]
    scale = rng.uniform(0.1, 0.18) if pattern == "dots" else rng.uniform(0.06, 0.16)
    return GarmentStyle(colors=(_rgb(c1), _rgb(c2)), pattern=pattern,
                        scale=float(scale), angle_deg=angle,
                        azimuth_deg=float(rng.uniform(0.0, 180.0)))


def sample_light(rng: np.random.Generator) -> Light:
    """Directional light mostly from above (elevation 20-75 deg, any azimuth),
    intensity 0.6-1.1, ambient 0.2-0.5, slightly warm or cool colour."""
    az = rng.uniform(0.0, 2 * np.pi)
    el = np.deg2rad(rng.uniform(20.0, 75.0))
    warm = rng.uniform(-0.08, 0.08)
    return Light(direction=(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)),
                 intensity=float(rng.uniform(0.6, 1.1)), ambient=float(rng.uniform(0.2, 0.5)),
                 colour=(1.0 + warm, 1.0, 1.0 - warm))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Random skin tone (light to dark), natural hair colour, varied garments and light."""
    skin = _rgb(_sample_skin(rng))
    hair = _rgb(_HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] * rng.uniform(0.85, 1.15))
    top = _sample_garment(rng, (0.4, 0.25, 0.15, 0.2), neutral_p=0.35)
    bottom = _sample_garment(rng, (0.65, 0.1, 0.15, 0.1), neutral_p=0.6)
    shoes = _rgb(_garment_colour(rng, 0.7) * 0.8)
    return Appearance(skin=skin, hair=hair, top=top, bottom=bottom, shoes=shoes,
                      light=sample_light(rng))


_PATTERN_RADIUS = 0.15  # metres; arc-length scale of the angular pattern coordinate


def _surface_coords(points: np.ndarray, style: GarmentStyle) -> np.ndarray:
    """(N, 3) canonical points -> (N, 2) pattern coordinates in periods,
    rotated by ``angle_deg``: column 0 varies across the stripes.

    Cylindrical mapping about the vertical axis x = y = 0: height ``z`` and
    angle (an integer number of periods around, so horizontal and vertical
    patterns have no seam; ``azimuth_deg`` rotates where the angle wraps)."""
    p = np.asarray(points, dtype=np.float64)
    theta = np.mod(np.arctan2(p[:, 1], p[:, 0]) - np.deg2rad(style.azimuth_deg), 2 * np.pi)
    n_around = max(1, round(2 * np.pi * _PATTERN_RADIUS / style.scale))
    a = p[:, 2] / style.scale
    b = theta * (n_around / (2 * np.pi))
    al = np.deg2rad(style.angle_deg)
    return np.stack([a * np.cos(al) + b * np.sin(al), -a * np.sin(al) + b * np.cos(al)], axis=1)


def pattern_mix(points: np.ndarray, style: GarmentStyle) -> np.ndarray:
    """Weight of the secondary colour of a garment pattern: soft-edged
    stripes or gingham checks (``_surface_coords``), or dots (balls on a
    rotated 3D lattice, cut by the surface).

    Args:
        points: (N, 3) canonical positions in metres.
    Returns:
        (N,) float in [0, 1].
    """
    if style.pattern == "plain":
        return np.zeros(len(points))
    if style.pattern != "dots":
        q = _surface_coords(points, style)
        bands = 0.5 + 0.5 * np.tanh(4.0 * np.sin(2 * np.pi * q))  # (N, 2) soft square waves
        return bands[:, 0] if style.pattern == "stripes" else 0.5 * (bands[:, 0] + bands[:, 1])
    # dots: balls on a 3D lattice (isotropic on limbs too), rotated by the angles
    al, az = np.deg2rad(style.angle_deg), np.deg2rad(style.azimuth_deg)
    rot = np.array([[np.cos(az), np.sin(az), 0.0], [-np.sin(az), np.cos(az), 0.0], [0, 0, 1]])
    rot = np.array([[1.0, 0, 0], [0, np.cos(al), -np.sin(al)], [0, np.sin(al), np.cos(al)]]) @ rot
    r = np.asarray(points, dtype=np.float64) @ rot.T / style.scale
    d = np.linalg.norm(r - np.floor(r) - 0.5, axis=1)
    return np.clip((0.32 - d) / 0.05, 0.0, 1.0)


def _hair_streaks(points: np.ndarray) -> np.ndarray:
    """(N,) multiplicative strand-like variation, about 0.85-1.15."""
    p = np.asarray(points, dtype=np.float64)
    s = (np.sin(2 * np.pi * (37.0 * p[:, 0] + 5.0 * p[:, 2])) +
         np.sin(2 * np.pi * (53.0 * p[:, 1] - 7.0 * p[:, 2]) + 1.3) +
         np.sin(2 * np.pi * (23.0 * (p[:, 0] + p[:, 1])) + 0.7))
    return 1.0 + 0.05 * s


def _sample_bilinear(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(H, W, C) texture at (N, 2) UVs (u right, v up, OBJ convention) -> (N, C)."""
    H, W = tex.shape[:2]
    x = np.clip(uv[:, 0] * W - 0.5, 0.0, W - 1.0)
    y = np.clip((1.0 - uv[:, 1]) * H - 0.5, 0.0, H - 1.0)
    x0, y0 = np.minimum(x.astype(np.int64), W - 2), np.minimum(y.astype(np.int64), H - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((tex[y0, x0] * (1 - fx) + tex[y0, x0 + 1] * fx) * (1 - fy) +
            (tex[y0 + 1, x0] * (1 - fx) + tex[y0 + 1, x0 + 1] * fx) * fy)


def vertex_albedo(vertices_canonical: np.ndarray, labels: np.ndarray, appearance: Appearance,
                  skin_uv: np.ndarray | None = None,
                  skin_texture: np.ndarray | None = None) -> np.ndarray:
    """Per-vertex sRGB albedo.

    Args:
        vertices_canonical: (N, 3) canonical (unposed) positions, metres.
        labels: (N,) int in {SKIN, TOP, BOTTOM, HAIR, SHOES}.
        appearance: colours and patterns.
        skin_uv: (N, 2) body UVs (OBJ convention, v up); with ``skin_texture``
            (H, W, 3) the skin colour is ``skin * texture / median(texture)``
            (per channel), e.g. the map of ``skin_detail_texture``.
    Returns:
        (N, 3) float64 in [0, 1].
    """
    p = np.asarray(vertices_canonical, dtype=np.float64)
    lab = np.asarray(labels)
    if p.ndim != 2 or p.shape[1] != 3 or lab.shape != (len(p),):
        raise ValueError(f"need vertices (N, 3) and labels (N,), got {p.shape} and {lab.shape}")
    bad = ~np.isin(lab, (SKIN, TOP, BOTTOM, HAIR, SHOES))
    if np.any(bad):
        raise ValueError(f"unknown labels {np.unique(lab[bad]).tolist()}")
    out = np.zeros((len(p), 3))
    skin = np.flatnonzero(lab == SKIN)
    out[skin] = appearance.skin
    if (skin_uv is None) != (skin_texture is None):
        raise ValueError("skin_uv and skin_texture must be given together")
    if skin_texture is not None and len(skin):
        uv = np.asarray(skin_uv, dtype=np.float64)
        tex = np.asarray(skin_texture, dtype=np.float64)
        if uv.shape != (len(p), 2) or tex.ndim != 3 or tex.shape[2] != 3:
            raise ValueError(f"need skin_uv (N, 2) and skin_texture (H, W, 3); "
                             f"got {uv.shape}, {tex.shape}")
        med = np.maximum(np.median(tex.reshape(-1, 3), axis=0), 1e-6)
        out[skin] *= _sample_bilinear(tex, uv[skin]) / med
    for label, style in ((TOP, appearance.top), (BOTTOM, appearance.bottom)):
        idx = np.flatnonzero(lab == label)
        m = pattern_mix(p[idx], style)[:, None]
        out[idx] = np.asarray(style.colors[0]) * (1 - m) + np.asarray(style.colors[1]) * m
    hair = np.flatnonzero(lab == HAIR)
    out[hair] = np.asarray(appearance.hair) * _hair_streaks(p[hair])[:, None]
    out[lab == SHOES] = appearance.shoes
    return np.clip(out, 0.0, 1.0)


# ----------------------------------------------------------------- background
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int, ch: int) -> np.ndarray:
    """(h, w, ch) float32 smooth noise in [-1, 1] (bilinear upsampled grid)."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.uniform(0, 255, (gh, gw, ch)).astype(np.uint8)
    im = Image.fromarray(grid if ch == 3 else grid[..., 0])
    up = np.asarray(im.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    return (up.reshape(h, w, ch) / 127.5) - 1.0


def _clutter_colour(rng: np.random.Generator) -> np.ndarray:
    r = rng.random()
    if r < 0.2:
        return _sample_skin(rng)  # skin-like distractors
    if r < 0.5:
        return _garment_colour(rng, 0.4)  # clothing-like distractors
    return _hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.15, 0.95))


def _floor(rng: np.random.Generator, h: int, w: int, hz: int) -> np.ndarray:
    """(h - hz, w, 3) float32 floor below the horizon row hz, perspective tiles/planks."""
    rows = np.arange(hz, h, dtype=np.float32) - hz + 1.0
    z = (0.6 * h / rows)[:, None]  # pseudo depth per row
    x = (np.arange(w, dtype=np.float32) - rng.uniform(0.2, 0.8) * w)[None, :] * z / h
    base, other = _clutter_colour(rng), _clutter_colour(rng)
    kind = rng.integers(3)
    period = rng.uniform(0.2, 0.6)
    if kind == 0:  # tiles
        m = ((np.floor(x / period) + np.floor(z / period)) % 2).astype(np.float32)
    elif kind == 1:  # planks, staggered
        row = np.floor(x / (0.3 * period))
        m = (np.floor(z / (2 * period) + 0.37 * row) % 2).astype(np.float32) * 0.5 + (row % 2) * 0.5
    else:  # carpet-ish
        m = np.zeros((len(rows), w), np.float32) + 0.5
    fade = np.clip(rows / (0.25 * h), 0.0, 1.0)[:, None]  # blur distant texture to its mean
    m = 0.5 + (m - 0.5) * fade * rng.uniform(0.2, 0.9)
    c0 = base.astype(np.float32)
    c1 = (base * 0.5 + other * 0.5).astype(np.float32)
    return c0 * (1 - m[..., None]) + c1 * m[..., None]


def procedural_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Cluttered indoor-like background: wall gradient, perspective floor,
    "furniture" rectangles / ellipses / stripes / polygons (some skin- and
    clothing-coloured), smooth and fine noise, vignette, slight blur.

    Returns:
        (height, width, 3) uint8; different for every call of ``rng``.
    """
    h, w = int(height), int(width)
    if h < 2 or w < 2:
        raise ValueError(f"background size must be at least 2 x 2, got {h} x {w}")
    hh, wh = (h + 1) // 2, (w + 1) // 2  # smooth base layers at half resolution
    hz = int(rng.uniform(0.35, 0.8) * hh)
    top, bottom = _clutter_colour(rng), _clutter_colour(rng) * 0.7 + 0.3 * _clutter_colour(rng)
    t = np.linspace(0.0, 1.0, hh, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(top.astype(np.float32) * (1 - t) + bottom.astype(np.float32) * t,
                          (hh, wh, 3)).copy()
    img[hz:] = _floor(rng, hh, wh, hz)
    img += 0.08 * _smooth_noise(rng, hh, wh, max(4, wh // 12), 1)  # light blotches
    img += 0.025 * _smooth_noise(rng, hh, wh, max(4, wh // 8), 3)  # slight colour variation
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    pil = pil.resize((w, h), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(6, 18))):
        col = tuple(int(c) for c in np.clip(_clutter_colour(rng) * 255, 0, 255))
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(0.0, 1.0) * h
        sw, sh = rng.uniform(0.03, 0.35) * w, rng.uniform(0.05, 0.6) * h
        box = (cx - sw / 2, cy - sh / 2, cx + sw / 2, cy + sh / 2)
        kind = rng.integers(5)
        if kind == 0:
            draw.rectangle(box, fill=col)
        elif kind == 1:
            draw.ellipse(box, fill=col)
        elif kind == 2:  # striped panel
            col2 = tuple(int(c) for c in np.clip(_clutter_colour(rng) * 255, 0, 255))
            draw.rectangle(box, fill=col)
            n = int(rng.integers(3, 12))
            vertical = rng.random() < 0.5
            for k in range(0, n, 2):
                a, b = k / n, (k + 1) / n
                draw.rectangle((box[0] + a * sw, box[1], box[0] + b * sw, box[3]) if vertical else
                               (box[0], box[1] + a * sh, box[2], box[1] + b * sh), fill=col2)
        elif kind == 3:  # perspective-ish quad
            pts = [(box[0], box[1] + rng.uniform(0, 0.2) * sh), (box[2], box[1]),
                   (box[2], box[3]), (box[0], box[3] - rng.uniform(0, 0.2) * sh)]
            draw.polygon(pts, fill=col)
        else:  # thick line (pole, cable, frame edge)
            draw.line((box[0], box[1], box[2], box[3]), fill=col,
                      width=int(rng.uniform(0.003, 0.02) * w) + 1)
    pil = pil.filter(ImageFilter.BoxBlur(radius=float(rng.uniform(0.5, 1.5))))
    vy = 1.0 - rng.uniform(0.1, 0.35) * np.linspace(-1, 1, h, dtype=np.float32) ** 2
    vx = 1.0 - rng.uniform(0.1, 0.35) * np.linspace(-1, 1, w, dtype=np.float32) ** 2
    gain = (1.0 + 0.1 * _smooth_noise(rng, h, w, max(4, w // 48), 1))  # mottled texture
    gain *= (vy[:, None] * vx[None, :])[..., None] * np.float32(1.0 / 255.0)  # vignette
    img = np.asarray(pil, dtype=np.float32) * gain
    img += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(0.003, 0.012))
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def photo_finish(rng: np.random.Generator, rgb: np.ndarray,
                 noise_sigma: tuple[float, float] = (0.004, 0.015),
                 blur_radius: tuple[float, float] = (0.0, 0.6)) -> np.ndarray:
    """Camera-like post-processing of a composited render, applied to person
    and background alike (so noise / sharpness do not give the person away):
    a Gaussian blur and Gaussian sensor noise, each with a strength drawn
    uniformly from the given range (noise sigma in [0, 1] intensity units).

    Args:
        rgb: (H, W, 3) uint8.
    Returns:
        (H, W, 3) uint8.
    """
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"photo_finish needs (H, W, 3) uint8, got {img.dtype} {img.shape}")
    radius = float(rng.uniform(*blur_radius))
    sigma = np.float32(rng.uniform(*noise_sigma) * 255.0)
    if radius > 0.05:
        img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))
    noisy = img.astype(np.float32) + rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return np.clip(noisy + 0.5, 0.0, 255.0).astype(np.uint8)

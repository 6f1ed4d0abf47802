"""A coloured mesh made studio-ready: decimated to a face budget, unwrapped to a UV atlas and
its colour baked into a texture image.

- Decimation: quadric edge collapse (``fast-simplification``, the fast-quadric-mesh-
  simplification algorithm).
- Unwrap: ``xatlas`` (charts packed into one atlas; a vertex on a seam is split, and
  ``vmapping`` names the original vertex of each one).
- Bake: every texel inside a triangle of the atlas takes the colour of the closest point of
  the full-resolution coloured mesh to its 3D position (libigl AABB), interpolated in linear
  RGB; the texels just outside the charts copy their nearest chart texel, so that filtering
  at a chart's edge does not bring in the background.

UV convention (glTF 2.0): ``(0, 0)`` is the image's top-left corner, ``u`` to the right,
``v`` down; texel ``(x, y)`` covers ``[x, x + 1) / size × [y, y + 1) / size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import igl
import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from pipeline.errors import PipelineError
from pipeline.synthesize.render import linear_to_srgb, srgb_to_linear

MAX_TEXTURE_SIZE = 8192
"""The largest texture side written (``export.texture_size``): 8192² RGB is 192 MiB raw."""

PAD_TEXELS = 4
"""Texels around each chart filled from its edge."""


@dataclass(frozen=True)
class Atlas:
    """A mesh unwrapped: ``vertices (V', 3)``, ``faces (F, 3)``, ``uvs (V', 2)`` in [0, 1]
    and ``source (V',)``: the vertex of the unwrapped mesh each one was split from."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    source: np.ndarray


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """The mesh with about ``target_faces`` faces (itself when it has no more)."""
    import fast_simplification

    if len(faces) <= target_faces:
        return np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    v, f = fast_simplification.simplify(np.asarray(vertices, np.float32),
                                        np.asarray(faces, np.int32),
                                        target_count=int(target_faces))
    return np.asarray(v, np.float64), np.asarray(f, np.int64)


def unwrap(vertices: np.ndarray, faces: np.ndarray) -> Atlas:
    """xatlas's UV atlas of the mesh."""
    import xatlas

    source, indices, uvs = xatlas.parametrize(np.asarray(vertices, np.float32),
                                              np.asarray(faces, np.uint32))
    source = np.asarray(source, np.int64)
    return Atlas(np.asarray(vertices, np.float64)[source], np.asarray(indices, np.int64),
                 np.asarray(uvs, np.float64), source)


def triangle_ids(uvs: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """``(size, size)`` int: the index of the atlas triangle at each texel, -1 outside."""
    image = Image.new("I", (size, size), -1)
    draw = ImageDraw.Draw(image)
    corners = uvs[faces] * size - 0.5  # texel centres at integer coordinates
    for i, tri in enumerate(corners):
        draw.polygon([tuple(p) for p in tri], fill=i)
    return np.asarray(image, dtype=np.int64)


def barycentric(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                ) -> np.ndarray:
    """``(N, 3)`` barycentric coordinates of 2D or 3D ``points`` in the triangles
    ``(a, b, c)`` (each ``(N, D)``), clipped to the triangle and summing to 1."""
    v0, v1, v2 = b - a, c - a, points - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) > 1e-30, den, 1e-30)
    w1 = (d11 * d20 - d01 * d21) / den
    w2 = (d00 * d21 - d01 * d20) / den
    out = np.clip(np.stack([1.0 - w1 - w2, w1, w2], axis=1), 0.0, None)
    return out / np.maximum(out.sum(1, keepdims=True), 1e-30)


def bake(atlas: Atlas, source_vertices: np.ndarray, source_faces: np.ndarray,
         source_colours: np.ndarray, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8 sRGB texture of the atlas, coloured from the source mesh's
    ``(N, 3)`` sRGB [0, 1] vertex colours at the closest point to each texel's 3D point."""
    if not 1 <= size <= MAX_TEXTURE_SIZE:
        raise PipelineError(f"export.texture_size {size}: the texture side must be 1 to "
                            f"{MAX_TEXTURE_SIZE} texels")
    ids = triangle_ids(atlas.uvs, atlas.faces, size)
    ys, xs = np.nonzero(ids >= 0)
    face = ids[ys, xs]
    texel = (np.stack([xs, ys], axis=1) + 0.5) / size
    tri = atlas.faces[face]
    w = barycentric(texel, atlas.uvs[tri[:, 0]], atlas.uvs[tri[:, 1]], atlas.uvs[tri[:, 2]])
    points = np.einsum("nk,nkd->nd", w, atlas.vertices[tri])
    sv = np.asarray(source_vertices, np.float64)
    sf = np.asarray(source_faces, np.int64)
    tree = igl.AABB()
    tree.init(sv, sf)
    _, closest_face, closest = tree.squared_distance(sv, sf, points)
    stri = sf[closest_face]
    ws = barycentric(closest, sv[stri[:, 0]], sv[stri[:, 1]], sv[stri[:, 2]])
    linear = np.einsum("nk,nkc->nc", ws, srgb_to_linear(np.asarray(source_colours))[stri])
    image = np.zeros((size, size, 3), np.float64)
    image[ys, xs] = linear_to_srgb(linear)
    filled = ids >= 0
    if filled.any():
        distance, (iy, ix) = ndimage.distance_transform_edt(~filled, return_indices=True)
        pad = (~filled) & (distance <= PAD_TEXELS)
        image[pad] = image[iy[pad], ix[pad]]
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def sample_texture(image: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """``(N, 3)`` sRGB [0, 1] of the texels under ``(N, 2)`` UVs (nearest texel)."""
    size_y, size_x = image.shape[:2]
    x = np.clip(np.floor(uvs[:, 0] * size_x).astype(int), 0, size_x - 1)
    y = np.clip(np.floor(uvs[:, 1] * size_y).astype(int), 0, size_y - 1)
    return image[y, x, :3] / 255.0

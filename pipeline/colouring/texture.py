"""A coloured mesh made studio-ready: decimated to a face budget, unwrapped to a UV atlas and
its colour baked into a texture image.

- Decimation: quadric edge collapse (``fast-simplification``, the fast-quadric-mesh-
  simplification algorithm).
- Unwrap: ``xatlas``, one group of charts per bone segment (:func:`chart_groups`), all
  packed into one atlas; a vertex on a seam is split, and ``Atlas.source`` names the
  original vertex of each one.
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


MIN_GROUP_SHARE = 0.02
"""A bone whose faces are fewer than this share of the mesh's (a finger, a toe, an eye) is
unwrapped with the bone above it."""


def bone_depths(parents: np.ndarray) -> np.ndarray:
    """``(B,)`` each bone's number of ancestors (``parents`` ``(B,)``, -1 for a root)."""
    depth = np.zeros(len(parents), dtype=np.int64)
    for b in range(len(parents)):
        p = parents[b]
        while p >= 0:
            depth[b] += 1
            p = parents[p]
    return depth


def chart_groups(faces: np.ndarray, weights: np.ndarray, parents: np.ndarray,
                 min_share: float = MIN_GROUP_SHARE) -> np.ndarray:
    """``(F,)`` group ``0..G-1`` of each face, for :func:`unwrap`: the bone that weighs most
    on its three vertices, a bone with under ``min_share`` of the faces merged into its
    parent, the deepest bones first (a finger into the hand, a small hand into the forearm).
    Each group is a segment of the body between two joints.

    Args:
        faces: ``(F, 3)``; weights: ``(V, B)`` skinning weights; parents: ``(B,)``, -1 for
            a root.
    """
    parents = np.asarray(parents, dtype=np.int64)
    label = np.argmax(np.asarray(weights)[faces].sum(axis=1), axis=1)
    counts = np.bincount(label, minlength=len(parents))
    depth = bone_depths(parents)
    for bone in sorted(np.flatnonzero(counts), key=lambda b: -depth[b]):
        above = parents[bone]
        if above >= 0 and counts[bone] < min_share * len(faces):
            label[label == bone] = above
            counts[above] += counts[bone]
            counts[bone] = 0
    return np.unique(label, return_inverse=True)[1].reshape(-1)


def unwrap(vertices: np.ndarray, faces: np.ndarray, groups: np.ndarray | None = None
           ) -> Atlas:
    """xatlas's UV atlas of the mesh, all in one image.

    ``groups``: ``(F,)`` a group per face (:func:`chart_groups`; None: one group). Each
    group is unwrapped on its own, so no chart crosses from one group to another, and the
    groups are packed together. xatlas unwraps them on parallel threads, and many small
    groups take less time in all than one large one: at 20,000 faces, 30 bone groups took
    0.8 CPU seconds against 2.5 for the whole mesh (docs/results.md, "avatar_faces").
    """
    import xatlas

    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    groups = np.zeros(len(faces), np.int64) if groups is None else np.asarray(groups)
    atlas = xatlas.Atlas()
    members = []
    for g in np.unique(groups):
        used, local = np.unique(faces[groups == g], return_inverse=True)
        atlas.add_mesh(vertices[used].astype(np.float32),
                       local.reshape(-1, 3).astype(np.uint32))
        members.append(used)
    atlas.generate()
    if atlas.atlas_count != 1:
        raise PipelineError(f"xatlas made {atlas.atlas_count} atlases of one mesh; the "
                            "texture holds one")
    source, indices, uvs = [], [], []
    offset = 0
    for i, used in enumerate(members):
        mapping, index, uv = atlas.get_mesh(i)
        source.append(used[np.asarray(mapping, np.int64)])
        indices.append(np.asarray(index, np.int64) + offset)
        uvs.append(np.asarray(uv, np.float64))
        offset += len(mapping)
    src = np.concatenate(source)
    return Atlas(vertices[src], np.concatenate(indices), np.concatenate(uvs), src)


def triangle_ids(uvs: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """``(size, size)`` int: the index of the atlas triangle at each texel, -1 outside."""
    image = Image.new("I", (size, size), -1)
    draw = ImageDraw.Draw(image)
    corners = uvs[faces] * size - 0.5  # texel centres at integer coordinates
    for i, tri in enumerate(corners):
        draw.polygon([tuple(p) for p in tri], fill=i)
    return np.asarray(image, dtype=np.int64)


def barycentric(points: np.ndarray, corners: np.ndarray, face: np.ndarray) -> np.ndarray:
    """``(N, 3)`` barycentric coordinates of 2D or 3D ``points`` ``(N, D)`` in the triangles
    ``corners[face]`` (``corners``: ``(F, 3, D)``; ``face``: ``(N,)``), clipped to the
    triangle and summing to 1; the point's projection on the triangle's plane in 3D. A
    degenerate triangle gives its centroid's coordinates.

    The per-triangle part (the inverse of the edges' Gram matrix) is computed once per
    triangle, then two dot products per point.
    """
    a = corners[:, 0]
    v0, v1 = corners[:, 1] - a, corners[:, 2] - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    flat = np.abs(den) <= 1e-12 * np.maximum(d00 * d11, 1e-300)
    den = np.where(flat, 1.0, den)
    g1 = (d11[:, None] * v0 - d01[:, None] * v1) / den[:, None]  # w1 = g1 · (p - a)
    g2 = (d00[:, None] * v1 - d01[:, None] * v0) / den[:, None]  # w2 = g2 · (p - a)
    rel = points - a[face]
    w1 = np.einsum("nd,nd->n", rel, g1[face])
    w2 = np.einsum("nd,nd->n", rel, g2[face])
    out = np.clip(np.stack([1.0 - w1 - w2, w1, w2], axis=1), 0.0, None)
    out[flat[face]] = 1.0
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
    w = barycentric(texel, atlas.uvs[atlas.faces], face)
    points = np.einsum("nk,nkd->nd", w, atlas.vertices[atlas.faces[face]])
    sv = np.asarray(source_vertices, np.float64)
    sf = np.asarray(source_faces, np.int64)
    tree = igl.AABB()
    tree.init(sv, sf)
    _, closest_face, closest = tree.squared_distance(sv, sf, points)
    ws = barycentric(closest, sv[sf], closest_face)
    linear = np.einsum("nk,nkc->nc", ws,
                       srgb_to_linear(np.asarray(source_colours))[sf[closest_face]])
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

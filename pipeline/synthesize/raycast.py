"""Nearest-hit ray casting of triangle meshes (embree via trimesh), made
deterministic and precise in float64.

embree (float32) picks the nearest triangle per ray; the hit distance and
barycentrics are then recomputed in float64 (Moller-Trumbore on that
triangle).  Rays passing within ``EDGE_TOL`` (barycentric) of an edge or vertex
re-choose their face among the triangles around it by a fixed rule, so the
result does not depend on embree's BVH layout or thread scheduling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from trimesh.ray.ray_pyembree import RayMeshIntersector

from pipeline.camera import Camera

__all__ = [
    "EDGE_TOL", "Hits", "candidate_pixels", "canonical_edge_hits", "check_mesh", "empty_buffers",
    "interpolate", "make_intersector", "moller_trumbore", "primary_hits", "trace",
]

EDGE_TOL = 1e-5  # barycentric distance to an edge below which the hit face is re-chosen


def check_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: (N, 3) float64 vertices, (M, 3) int64 faces."""
    v = np.ascontiguousarray(vertices, dtype=np.float64)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (M, 3), got {f.shape}")
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError("faces reference vertices out of range")
    if not np.all(np.isfinite(v)):
        raise ValueError("vertices contain non-finite values")
    return v, f


@dataclass(frozen=True)
class Hits:
    """Nearest hits of K rays: face (K,) int64 (-1 = miss), t (K,), bary (K, 3)."""

    face: np.ndarray
    t: np.ndarray
    bary: np.ndarray


def make_intersector(v: np.ndarray, f: np.ndarray) -> RayMeshIntersector:
    """embree scene of the mesh (v (N, 3), f (M, 3)); reusable for many cameras."""
    mesh = trimesh.Trimesh(vertices=v, faces=f, process=False, validate=False)
    return RayMeshIntersector(mesh)


def moller_trumbore(v: np.ndarray, tri: np.ndarray, o: np.ndarray,
                     d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray/plane hit of K rays with K triangles (K, 3) in float64.

    Returns t (K,) and unclipped barycentrics (K, 3)."""
    p0, p1, p2 = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
    e1, e2 = p1 - p0, p2 - p0
    p = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, p)
    det = np.where(np.abs(det) < 1e-300, 1e-300, det)
    s = o - p0
    b1 = np.einsum("ij,ij->i", s, p) / det
    q = np.cross(s, e1)
    b2 = np.einsum("ij,ij->i", d, q) / det
    t = np.einsum("ij,ij->i", e2, q) / det
    return t, np.stack([1.0 - b1 - b2, b1, b2], axis=1)


def canonical_edge_hits(v: np.ndarray, f: np.ndarray, rows: np.ndarray, face: np.ndarray,
                         o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Deterministic choice of the hit face for rays that pass (within float32
    accuracy) through an edge or vertex of the embree hit triangle.

    Candidates are all faces sharing a vertex with that triangle; among those
    the ray hits (tolerance ``EDGE_TOL``) at the nearest depth, the one with
    the largest minimum barycentric wins, ties -> smallest face index.
    Args: rows (R,) ray indices, face (R,) embree faces, o, d (R, 3).
    Returns: (R,) chosen face per ray.
    """
    verts = f[face].ravel()  # (3R,)
    touched = np.zeros(len(v), dtype=bool)
    touched[verts] = True
    near_faces = np.flatnonzero(touched[f].any(axis=1))  # faces around those vertices
    flat = f[near_faces].ravel()
    order = np.argsort(flat, kind="stable")
    lo = np.searchsorted(flat[order], verts, side="left")
    lens = np.searchsorted(flat[order], verts, side="right") - lo
    owner = np.repeat(np.repeat(np.arange(len(rows)), 3), lens)
    offs = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    cand = near_faces[order[np.repeat(lo, lens) + offs] // 3]
    key = np.unique(owner * len(f) + cand)  # sorted by (ray, face), no duplicates
    owner, cand = key // len(f), key % len(f)
    t, b = moller_trumbore(v, f[cand], o[owner], d[owner])
    bmin = b.min(axis=1)
    ok = (bmin >= -EDGE_TOL) & (t > 0)
    t_best = np.full(len(rows), np.inf)
    np.minimum.at(t_best, owner[ok], t[ok])
    ok &= t <= t_best[owner] * (1.0 + 1e-6) + 1e-9
    # lexsort: primary owner, then -bmin, then face index (ascending)
    sel = np.flatnonzero(ok)
    srt = sel[np.lexsort((cand[sel], -bmin[sel], owner[sel]))]
    first = np.unique(owner[srt], return_index=True)[1]
    chosen = face.copy()
    chosen[owner[srt[first]]] = cand[srt[first]]
    return chosen


def trace(isect: RayMeshIntersector, v: np.ndarray, f: np.ndarray,
           origins: np.ndarray, dirs: np.ndarray) -> Hits:
    """Nearest hit per ray; face choice made deterministic near edges; t and
    barycentrics recomputed in float64."""
    face = np.asarray(isect.intersects_first(origins, dirs), dtype=np.int64)
    hit = face >= 0
    t = np.full(len(face), np.inf)
    bary = np.zeros((len(face), 3))
    if np.any(hit):
        rows = np.flatnonzero(hit)
        th, b = moller_trumbore(v, f[face[rows]], origins[rows], dirs[rows])
        near = b.min(axis=1) < EDGE_TOL
        if np.any(near):
            r = rows[near]
            face[r] = canonical_edge_hits(v, f, r, face[r], origins[r], dirs[r])
            th[near], b[near] = moller_trumbore(v, f[face[r]], origins[r], dirs[r])
        t[rows] = th
        b = np.clip(b, 0.0, 1.0)
        bary[rows] = b / np.maximum(b.sum(axis=1, keepdims=True), 1e-300)
    return Hits(face=face, t=t, bary=bary)


def interpolate(attr: np.ndarray, f: np.ndarray, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """(N, C) vertex attribute -> (K, C) values at K hits (all hits valid)."""
    tri = f[face]
    return (attr[tri[:, 0]] * bary[:, :1] + attr[tri[:, 1]] * bary[:, 1:2]
            + attr[tri[:, 2]] * bary[:, 2:3])


def candidate_pixels(v: np.ndarray, camera: Camera) -> np.ndarray:
    """(K,) flat indices of the pixels whose centre rays may hit the mesh: the
    bounding box of the projected vertices (+1 px), or all pixels when some
    vertex is not in front of the camera."""
    H, W = camera.height, camera.width
    uv, z = camera.project(v)
    if np.all(z > 1e-9) and np.all(np.isfinite(uv)):
        u0 = int(np.clip(np.floor(uv[:, 0].min()) - 1, 0, W))
        u1 = int(np.clip(np.ceil(uv[:, 0].max()) + 2, 0, W))
        v0 = int(np.clip(np.floor(uv[:, 1].min()) - 1, 0, H))
        v1 = int(np.clip(np.ceil(uv[:, 1].max()) + 2, 0, H))
    else:
        u0, u1, v0, v1 = 0, W, 0, H
    rows = np.arange(v0, v1, dtype=np.int64)
    cols = np.arange(u0, u1, dtype=np.int64)
    return (rows[:, None] * W + cols[None, :]).ravel()


def empty_buffers(H: int, W: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty mask (H, W) bool, depth (H, W) float32 inf, face_index (H, W) int32 -1."""
    return (np.zeros((H, W), bool), np.full((H, W), np.inf, np.float32),
            np.full((H, W), -1, np.int32))


def primary_hits(isect: RayMeshIntersector, v: np.ndarray, f: np.ndarray, camera: Camera):
    """Pixel-centre rays of the candidate pixels.

    Returns:
        pix (K,) flat pixel indices, origins (K, 3), dirs (K, 3), hits, and the
        (mask, depth, face_index) image buffers.
    """
    H, W = camera.height, camera.width
    pix = candidate_pixels(v, camera)
    origins, dirs = camera.rays(np.stack([pix % W, pix // W], axis=1).astype(np.float64))
    hits = trace(isect, v, f, origins, dirs)
    hit = hits.face >= 0
    mask, depth, face_index = empty_buffers(H, W)
    mask.ravel()[pix[hit]] = True
    depth.ravel()[pix[hit]] = hits.t[hit] * (dirs[hit] @ camera.R[2])
    face_index.ravel()[pix[hit]] = hits.face[hit]
    return pix, origins, dirs, hits, (mask, depth, face_index)

"""Connected components of a reconstruction: count them, and keep the person.

A mesh of one person is one surface. The reconstructions' extra components are small
closed floaters 1-3 cm outside the body (between the thighs, beside the hands): places where
the network's field hovers near zero because its training subjects disagree there (a skirt
or not), cut into islands by the silhouette carve (docs/evaluation.md, "Components").
``body`` keeps every component that holds some of the fitted body (the person, even a part
the field detached from the rest) and drops the floaters; ``largest`` keeps one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

MODES = ("all", "largest", "body")


@dataclass(frozen=True)
class Kept:
    """What :func:`keep_components` kept: arrays, and counts for the report."""

    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) int64
    components: int  # before
    kept: int
    removed_area_cm2: float


def _holds_body(part: trimesh.Trimesh, body_vertices: np.ndarray) -> bool:
    """Whether the closed ``part`` contains a fitted-body vertex (an open part is kept)."""
    if not part.is_watertight:
        return True
    lo, hi = part.bounds
    near = body_vertices[np.all((body_vertices >= lo) & (body_vertices <= hi), axis=1)]
    return bool(len(near)) and bool(part.contains(near).any())


def keep_components(vertices: np.ndarray, faces: np.ndarray, mode: str,
                    body_vertices: np.ndarray | None = None) -> Kept:
    """The mesh ``(V, 3), (F, 3)`` with the components ``mode`` keeps (:data:`MODES`);
    ``body`` needs the fitted canonical body's vertices ``(B, 3)`` in the mesh's frame. The
    largest component is always kept."""
    if mode not in MODES:
        raise ValueError(f"components mode {mode!r}; options: {MODES}")
    if len(faces) == 0:
        return Kept(vertices, faces, 0, 0, 0.0)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    parts = sorted(mesh.split(only_watertight=False), key=lambda p: -len(p.faces))
    if mode == "all" or len(parts) == 1:
        return Kept(vertices, faces, len(parts), len(parts), 0.0)
    if mode == "body" and body_vertices is None:
        raise ValueError("components mode 'body' needs the fitted body's vertices")
    keep = [parts[0]] + [p for p in parts[1:]
                         if mode == "body" and _holds_body(p, np.asarray(body_vertices))]
    removed = sum(p.area for p in parts) - sum(p.area for p in keep)
    out = trimesh.util.concatenate(keep) if len(keep) > 1 else keep[0]
    return Kept(np.asarray(out.vertices), np.asarray(out.faces, dtype=np.int64), len(parts),
                len(keep), round(float(removed) * 1e4, 3))


def count_components(vertices: np.ndarray, faces: np.ndarray) -> int:
    """Connected components (by shared vertices) of a mesh; 0 without faces."""
    if len(faces) == 0:
        return 0
    return len(trimesh.graph.connected_components(
        trimesh.Trimesh(vertices, faces, process=False).face_adjacency,
        nodes=np.arange(len(faces))))

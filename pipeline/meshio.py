"""Triangle meshes on disk: binary PLY, written atomically, read back with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from pipeline.errors import PipelineError
from pipeline.io import atomic_path


def write_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray,
              colors: np.ndarray | None = None) -> None:
    """Write a binary little-endian PLY.

    Args:
        vertices: ``(V, 3)`` positions (stored as float32, metres).
        faces: ``(F, 3)`` vertex indices.
        colors: optional ``(V, 3)`` vertex colours, floats in [0, 1] or uint8.
    """
    mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64),
                           np.asarray(faces, dtype=np.int64), process=False)
    if colors is not None:
        colors = np.asarray(colors)
        if colors.dtype != np.uint8:
            colors = np.round(np.clip(colors, 0.0, 1.0) * 255).astype(np.uint8)
        mesh.visual.vertex_colors = np.concatenate(
            [colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
    data = trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=False,
                                           include_attributes=False)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_obj(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a plain Wavefront OBJ (``v`` and 1-based ``f`` lines, full float precision),
    atomically."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"# {len(vertices)} vertices, {len(faces)} faces\n")
        np.savetxt(fh, vertices, fmt="v %.9g %.9g %.9g")
        np.savetxt(fh, faces + 1, fmt="f %d %d %d")


def read_ply(path: str | Path) -> trimesh.Trimesh:
    """Read a triangle mesh without merging or reordering vertices."""
    path = Path(path)
    try:
        mesh = trimesh.load(path, file_type="ply", process=False, force="mesh")
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise PipelineError(f"cannot read mesh {path}: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise PipelineError(f"{path} holds no triangle mesh")
    return mesh

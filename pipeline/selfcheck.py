"""Quality without truth: what can be said of a reconstruction from the subject's own inputs.

A first slice of the truth-free checks (the issue "Reconstruct people the pipeline has never
seen"): the functions, tested; the stage that runs them per subject comes next.

- **Reposing**: the canonical reconstruction carried into each input action by linear blend
  skinning, each vertex with the weights of its nearest fitted-body vertex and the fit's bone
  transforms (a reposed fitted body is the fit's posed body, exactly).
- **Reprojection**: the reposed mesh's silhouette in each input view (every projected
  triangle filled, :func:`pipeline.fitting.raster.fill_triangles`) against that view's matte,
  as IoU; the fitted body's from the same code is its baseline.
- **Mesh health**: closed and outward oriented or not, connected components, volume, height
  against the fitted body's.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from models.blocks.projection import project
from pipeline.errors import PipelineError
from pipeline.fitting.raster import fill_triangles, mask_iou
from pipeline.sdf import check_watertight


def nearest_body_vertex(vertices: np.ndarray, body: np.ndarray) -> np.ndarray:
    """``(V,)`` index of the nearest of the ``(N, 3)`` body vertices to each ``(V, 3)``
    vertex."""
    return cKDTree(np.asarray(body, dtype=np.float64)).query(
        np.asarray(vertices, dtype=np.float64), workers=-1)[1]


def vertex_transforms(weights: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """Blend-skinning transform of every body vertex per action: ``(N, B)`` weights and
    ``(A, B, 4, 4)`` bone transforms (canonical → posed) → ``(A, N, 3, 4)``."""
    return np.einsum("nb,abij->anij", np.asarray(weights, dtype=np.float64),
                     np.asarray(bones, dtype=np.float64)[:, :, :3, :])


def repose(vertices: np.ndarray, nearest: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Canonical ``(V, 3)`` vertices moved by the ``(A, N, 3, 4)`` transforms of their
    ``nearest`` body vertices → ``(A, V, 3)``, one mesh per action."""
    t = transforms[:, nearest]  # (A, V, 3, 4)
    return np.einsum("avij,vj->avi", t[..., :3], np.asarray(vertices, np.float64)) + t[..., 3]


def silhouette(vertices: np.ndarray, faces: np.ndarray, camera: Mapping[str, np.ndarray],
               size: int) -> np.ndarray:
    """``(S, S)`` bool silhouette of the mesh seen by one crop camera (``K, R, t`` or
    ``R, scale, trans``, the cache's ``camera/`` arrays of one view); triangles with a
    corner behind the camera are left out."""
    cams = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in camera.items()}
    uv, _, in_front = project(torch.tensor(np.asarray(vertices, np.float64)), cams)
    pixels = uv.numpy().copy()
    pixels[~in_front.numpy()] = np.nan
    return fill_triangles(pixels, np.asarray(faces), size)


def reprojection_iou(vertices: np.ndarray, faces: np.ndarray, cameras: Mapping[str, np.ndarray],
                     mattes: np.ndarray) -> np.ndarray:
    """IoU per view of the mesh's silhouette and the matte (alpha ≥ 0.5).

    Args:
        vertices: ``(T, V, 3)`` the mesh posed for each view (or ``(V, 3)`` for all).
        faces: ``(F, 3)``.
        cameras: camera arrays with a leading ``(T,)``.
        mattes: ``(T, S, S)`` uint8 alphas.

    Returns:
        ``(T,)`` float IoU.
    """
    mattes = np.asarray(mattes)
    n, size = mattes.shape[0], mattes.shape[-1]
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim == 2:
        vertices = np.broadcast_to(vertices, (n, *vertices.shape))
    if len(vertices) != n or any(len(v) != n for v in cameras.values()):
        raise PipelineError(f"reprojection: {len(vertices)} posed meshes, "
                            f"{[len(v) for v in cameras.values()]} cameras, {n} mattes")
    out = np.empty(n)
    for i in range(n):
        mask = silhouette(vertices[i], faces, {k: v[i] for k, v in cameras.items()}, size)
        out[i] = mask_iou(mask, mattes[i] >= 128)
    return out


def mesh_health(vertices: np.ndarray, faces: np.ndarray, body: np.ndarray,
                up: int = 2) -> dict[str, float | int | bool | str]:
    """Closedness, components, volume and height (extent along axis ``up``; Z for Anny)
    of a mesh, the height beside the ``(N, 3)`` body's."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if len(faces) == 0:
        return {"surface": False, "watertight": False, "problems": "no faces",
                "components": 0, "volume_m3": 0.0, "height_m": 0.0,
                "body_height_m": float(np.ptp(np.asarray(body)[:, up]))}
    try:
        check_watertight(vertices, faces, "reconstruction")
        watertight, problems = True, ""
    except PipelineError as exc:
        watertight, problems = False, str(exc)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    return {"surface": True, "watertight": watertight, "problems": problems,
            "components": int(mesh.body_count), "volume_m3": float(mesh.volume),
            "height_m": float(np.ptp(vertices[:, up])),
            "body_height_m": float(np.ptp(np.asarray(body)[:, up]))}

"""Quality without truth: what can be said of a reconstruction from the subject's own inputs.

The ``selfcheck`` stage (:func:`run`; in the ``assess`` job, ``rules/assess.smk``) runs them on each
reconstruction, with or without a scan of the subject:

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

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image, ImageDraw
from scipy.spatial import cKDTree

from models.cache_io import CAMERA_KEYS, open_cache, read_index
from pipeline.colouring.views import project_points
from pipeline.errors import PipelineError
from pipeline.fitting.raster import fill_triangles, mask_iou
from pipeline.fitting.scale import EXPECTED_HEIGHT_ERROR, scale_source
from pipeline.imageio import save_png
from pipeline.io import atomic_directory, read_json, write_json
from pipeline.meshio import read_ply, write_ply
from pipeline.overlay import MATTE_COLOUR, TILE, paint_outline, tile_sheet
from pipeline.sdf import check_watertight

log = logging.getLogger(__name__)

CACHE_ARRAYS = ("canonical_vertices", "faces", "skinning_weights", "bone_transforms",
                "posed_vertices", "alphas")
"""What the checks read from a subject's cache (its inputs, never its targets)."""


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
    uv, _, in_front = project_points(vertices, camera)
    pixels = uv.copy()
    pixels[~in_front] = np.nan
    return fill_triangles(pixels, np.asarray(faces), size)


def reprojection_iou(vertices: np.ndarray, faces: np.ndarray, cameras: Mapping[str, np.ndarray],
                     mattes: np.ndarray) -> np.ndarray:
    """IoU per view of the mesh's silhouette and the matte (alpha ≥ 0.5): the IoUs of
    :func:`reprojection`."""
    return reprojection(vertices, faces, cameras, mattes)[0]


def reprojection(vertices: np.ndarray, faces: np.ndarray, cameras: Mapping[str, np.ndarray],
                 mattes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU per view of the mesh's silhouette and the matte (alpha ≥ 0.5), and the
    silhouettes.

    Args:
        vertices: ``(T, V, 3)`` the mesh posed for each view (or ``(V, 3)`` for all).
        faces: ``(F, 3)``.
        cameras: camera arrays with a leading ``(T,)``.
        mattes: ``(T, S, S)`` uint8 alphas.

    Returns:
        ``(T,)`` float IoU and ``(T, S, S)`` bool silhouettes.
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
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        masks[i] = silhouette(vertices[i], faces, {k: v[i] for k, v in cameras.items()}, size)
        out[i] = mask_iou(masks[i], mattes[i] >= 128)
    return out, masks


RECON_COLOUR = (255, 40, 200)


def overlay_sheets(images: np.ndarray, mattes: np.ndarray, masks: np.ndarray,
                   labels: list[str], action_index: np.ndarray) -> dict[int, np.ndarray]:
    """Per action (its row in ``actions``), a sheet of its views: the ``(T, S, S, 3)`` crop
    with the matte's outline (green) and the reconstruction's silhouette outline (magenta)."""
    sheets = {}
    for a in np.unique(action_index):
        tiles = []
        for i in np.flatnonzero(action_index == a):
            image = paint_outline(np.array(images[i]), mattes[i] >= 128, MATTE_COLOUR)
            paint_outline(image, masks[i], RECON_COLOUR)
            tile = Image.fromarray(image).resize((TILE, TILE), Image.Resampling.BILINEAR)
            ImageDraw.Draw(tile).text((4, 4), labels[i], fill=(255, 255, 255))
            tiles.append(tile)
        sheets[int(a)] = tile_sheet(tiles)
    return sheets


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


def read_crops(cache: Path) -> np.ndarray:
    """``(Nv, S, S, 3)`` uint8 crops of every view: before the matte when the cache kept
    them, else the masked ones."""
    with open_cache(cache) as handle:
        name = "unmasked/images" if "unmasked/images" in handle else "images"
        return np.asarray(handle[name][()])


def read_cache_arrays(cache: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """The index and the arrays the checks read (``CACHE_ARRAYS`` and ``camera/<key>``) of
    a cache file."""
    with open_cache(cache) as handle:
        index = read_index(handle)
        try:
            arrays = {k: np.asarray(handle[k][()]) for k in CACHE_ARRAYS}
            arrays.update({f"camera/{k}": np.asarray(handle[f"camera/{k}"][()])
                           for k in CAMERA_KEYS[index.camera_model]})
        except KeyError as exc:
            raise PipelineError(f"cache file {cache} lacks {exc}; rebuild it with "
                                "`snakemake --forcerun cache`") from exc
    return index, arrays


def outside_fraction(masks: np.ndarray, mattes: np.ndarray) -> np.ndarray:
    """Per view, the silhouette's area outside the matte (alpha < 0.5) as a share of the
    matte's area: what a mesh adds where the photo shows background. ``(T, S, S)`` bool
    silhouettes and uint8 mattes → ``(T,)``."""
    matte = np.asarray(mattes) >= 128
    area = np.maximum(matte.sum(axis=(1, 2)), 1)
    return (masks & ~matte).sum(axis=(1, 2)) / area


def scale_of(fit_report: Path | None, camera_model: str) -> dict[str, Any]:
    """Where the subject's size comes from (the fit's ``scale``; docs/fit.md) and the
    expected error of its height."""
    scale = (read_json(fit_report).get("scale") if fit_report is not None else None) or {
        "source": scale_source(camera_model, None)}
    return {**scale, "expected_height_error": EXPECTED_HEIGHT_ERROR[scale["source"]]}


def run(*, mesh: Path, recon: Path, cache: Path, output: Path, reposed: Path,
        overlays: Path | None = None, fit: Path | None = None) -> dict[str, Any]:
    """Check one subject's canonical reconstruction against its own inputs.

    Writes the reconstruction reposed into every action as ``reposed/<action>.ply`` and
    ``output`` (JSON): the mesh's health, the reprojection IoU of every view (the mesh's and
    the fitted body's, from the same code), the share of each silhouette outside the matte
    (a surface the photos show as background), their means over the views that passed the
    fit's checks, and where the body's size comes from (``fit``: the fit's report). With
    ``overlays``, one PNG per action there: each view's crop with the matte's outline
    (green) and the reconstruction's (magenta).
    """
    start = time.perf_counter()
    summary = read_json(recon)
    index, arrays = read_cache_arrays(cache)
    body, body_faces = arrays["canonical_vertices"], arrays["faces"]
    if summary.get("surface", False):
        loaded = read_ply(mesh)
        vertices, faces = np.asarray(loaded.vertices), np.asarray(loaded.faces)
    else:
        vertices, faces = np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    transforms = vertex_transforms(arrays["skinning_weights"], arrays["bone_transforms"])
    posed = (repose(vertices, nearest_body_vertex(vertices, body), transforms) if len(faces)
             else np.zeros((len(index.actions), 0, 3)))
    with atomic_directory(reposed) as tmp:
        for a, action in enumerate(index.actions):
            write_ply(tmp / f"{action}.ply", posed[a], faces)
    rows = index.action_index
    cameras = {k[len("camera/"):]: v for k, v in arrays.items() if k.startswith("camera/")}
    ious, masks = (reprojection(posed[rows], faces, cameras, arrays["alphas"]) if len(faces)
                   else (np.zeros(len(rows)), np.zeros(arrays["alphas"].shape, dtype=bool)))
    body_ious, body_masks = reprojection(arrays["posed_vertices"][rows], body_faces, cameras,
                                        arrays["alphas"])
    outside = outside_fraction(masks, arrays["alphas"])
    body_outside = outside_fraction(body_masks, arrays["alphas"])
    ok = index.view_ok
    views = [{"action": str(index.actions[rows[i]]), "view": str(index.view_names[i]),
              "view_ok": bool(ok[i]), "iou": round(float(ious[i]), 4),
              "body_iou": round(float(body_ious[i]), 4),
              "outside": round(float(outside[i]), 4),
              "body_outside": round(float(body_outside[i]), 4)} for i in range(len(rows))]
    out = {"subject": summary.get("subject", mesh.stem), "split": summary.get("split"),
           "mesh": str(mesh), "health": mesh_health(vertices, faces, body),
           "iou_mean": round(float(ious[ok].mean()), 4) if ok.any() else None,
           "body_iou_mean": round(float(body_ious[ok].mean()), 4) if ok.any() else None,
           "outside_mean": round(float(outside[ok].mean()), 4) if ok.any() else None,
           "body_outside_mean": round(float(body_outside[ok].mean()), 4) if ok.any() else None,
           "scale": scale_of(fit, index.camera_model),
           "views": views, "reposed": [str(reposed / f"{a}.ply") for a in index.actions],
           "seconds": round(time.perf_counter() - start, 3)}
    if overlays is not None:
        labels = [f"{v['view']} IoU {v['iou']:.2f} (body {v['body_iou']:.2f})" for v in views]
        sheets = overlay_sheets(read_crops(cache), arrays["alphas"], masks, labels, rows)
        with atomic_directory(overlays) as tmp:
            for a, sheet in sheets.items():
                save_png(tmp / f"{index.actions[a]}.png", sheet)
    write_json(output, out)
    log.info("%s: reprojection IoU %.3f (fitted body %.3f) over %d views, %s", out["subject"],
             out["iou_mean"] or 0.0, out["body_iou_mean"] or 0.0, int(ok.sum()),
             "closed" if out["health"]["watertight"] else "not closed")
    return out


def load_selfchecks(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The selfcheck reports (``eval/<model>/<subject>.selfcheck.json``); PipelineError
    naming a file that is not one."""
    loaded = []
    for path in paths:
        data = read_json(path)
        missing = {"subject", "split", "iou_mean", "body_iou_mean", "health"} - set(data)
        if missing:
            raise PipelineError(f"{path} is not a selfcheck report (missing {sorted(missing)})")
        loaded.append(data)
    return loaded


def selfcheck_table(checks: Sequence[Mapping[str, Any]],
                    chamfer: Mapping[str, float]) -> str:
    """Markdown table of the truth-free checks, one row per subject, with the Chamfer
    distance where the subject has a truth (``chamfer``, cm) and "no truth" where not."""
    def cell(value: float | None, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = ["| subject | split | reprojection IoU | fitted body's IoU | outside matte "
             "| fitted body's outside matte | closed | components | height (m) | fitted "
             "body's height (m) | size from | Chamfer (cm) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        h = c["health"]
        truth = (f"{chamfer[c['subject']]:.3f}" if c["subject"] in chamfer else "no truth")
        scale = c.get("scale") or {}
        source = scale.get("source", "–")
        if scale.get("expected_height_error") is not None:
            source += f" (height ±{100 * scale['expected_height_error']:.0f} %)"
        if source.startswith("prior"):
            source += ": set fit.height_m"
        lines.append(f"| {c['subject']} | {c['split']} | {cell(c['iou_mean'])} | "
                     f"{cell(c['body_iou_mean'])} | {cell(c.get('outside_mean'))} | "
                     f"{cell(c.get('body_outside_mean'))} | "
                     f"{'yes' if h['watertight'] else 'no'} | "
                     f"{h['components']} | {h['height_m']:.3f} | {h['body_height_m']:.3f} | "
                     f"{source} | {truth} |")
    lines += ["", "Outside matte: the share of the reposed mesh's silhouette that falls where "
              "the photo shows background, relative to the matte's area (mean over the views "
              "that passed the fit's checks). Size from: calibrated cameras, a given height "
              "(fit.height_m) or the shape prior (no cameras, no height), with the height "
              "error measured for each (docs/fit.md)."]
    return "\n".join(lines)

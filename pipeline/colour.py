"""The ``colour`` stage: a reconstruction, and its fitted body as the baseline, coloured from
the subject's photos, with two colour measures.

Per subject (:func:`run`), for the reconstruction and for the fitted body alike:

1. **Colour from the photos.** The canonical mesh reposed into each action (the self-check's
   reposing: each vertex skinned like its nearest fitted-body vertex); in each view of the
   action the vertices it sees (facing the camera, no face in between: a ray to the camera)
   and, inside the view's matte, their colour in the photo's crop
   (:mod:`pipeline.colouring.views`).
2. **Blend** the views per vertex in linear RGB, weighted towards frontal and close views
   (:class:`pipeline.colouring.views.Weights`).
3. **Fill** the vertices no photo sees by diffusion over the mesh
   (:func:`pipeline.colouring.surface.fill_unseen`).
4. **Measures.** Held-out views: each scored view coloured from all the others, the mesh
   drawn into it with its fitted camera and compared with the photo inside the matte (PSNR,
   SSIM). Against the truth (when there is one): CIEDE2000 against the truth's per-vertex
   albedo at the nearest truth vertex. The photos' light is not removed: the colours carry
   the shading of the photos and the albedo does not, for both meshes alike.

Writes the coloured ``.ply`` files and a JSON report. A view the fit rejected
(``view_ok``) is left out and named in the log; a subject with no usable view is written
grey, with the reason in the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.colouring.surface import GREY, fill_unseen, psnr_ssim, truth_colour_error
from pipeline.colouring.views import ViewSample, Weights, blend, draw, sample_view
from pipeline.errors import PipelineError
from pipeline.io import read_json, write_json
from pipeline.meshio import read_ply, write_ply
from pipeline.selfcheck import (
    nearest_body_vertex,
    read_cache_arrays,
    read_crops,
    repose,
    vertex_transforms,
)
from pipeline.synthesize.raycast import make_intersector
from pipeline.synthesize.render import compute_vertex_normals, linear_to_srgb

log = logging.getLogger(__name__)


def view_samples(posed: np.ndarray, faces: np.ndarray, views: Sequence[int],
                 action_of: np.ndarray, cameras: Mapping[str, np.ndarray], images: np.ndarray,
                 alphas: np.ndarray, weights: Weights) -> dict[int, ViewSample]:
    """Each view's colours and weights on the mesh posed as in its action.

    Args:
        posed: ``(A, V, 3)`` the mesh in each action. faces: ``(F, 3)``.
        views: the view rows to use; action_of: ``(N,)`` each view row's action.
        cameras: ``(N, ...)`` camera arrays. images: ``(N, S, S, 3)`` uint8 crops.
        alphas: ``(N, S, S)`` uint8 mattes.
    """
    out: dict[int, ViewSample] = {}
    for a in sorted({int(action_of[i]) for i in views}):
        scene = make_intersector(posed[a], faces)
        normals = compute_vertex_normals(posed[a], faces)
        for i in views:
            if action_of[i] == a:
                camera = {k: v[i] for k, v in cameras.items()}
                out[i] = sample_view(posed[a], faces, normals, camera, images[i], alphas[i],
                                     scene, weights)
    return out


def to_srgb(faces: np.ndarray, samples: Sequence[ViewSample]) -> tuple[np.ndarray, float]:
    """The blended, filled ``(V, 3)`` sRGB [0, 1] colours and the share of vertices seen."""
    linear, seen = blend(list(samples))
    return fill_unseen(faces, linear_to_srgb(linear), seen), float(seen.mean())


def held_out_scores(posed: np.ndarray, faces: np.ndarray, samples: Mapping[int, ViewSample],
                    scored: Sequence[int], action_of: np.ndarray,
                    cameras: Mapping[str, np.ndarray], images: np.ndarray,
                    alphas: np.ndarray) -> list[dict[str, float]]:
    """PSNR and SSIM of each ``scored`` view drawn from the colours of all the other views."""
    rows = []
    scenes: dict[int, Any] = {}
    for j in scored:
        others = [s for i, s in samples.items() if i != j]
        colours, _ = to_srgb(faces, others)
        inside = alphas[j] >= 128
        if not inside.any():
            continue
        a = int(action_of[j])
        if a not in scenes:
            scenes[a] = make_intersector(posed[a], faces)
        pixels = np.argwhere(inside)[:, ::-1]
        drawn_rgb, _ = draw(posed[a], faces, colours, {k: v[j] for k, v in cameras.items()},
                            scenes[a], pixels)
        drawn = images[j].copy()
        drawn[inside] = np.round(drawn_rgb * 255.0).astype(np.uint8)
        psnr, ssim = psnr_ssim(drawn, images[j], inside)
        rows.append({"view": int(j), "psnr": psnr, "ssim": ssim})
    return rows


def colour_one(name: str, canonical: np.ndarray, posed: np.ndarray, faces: np.ndarray,
               usable: Sequence[int], scored: Sequence[int], arrays: Mapping[str, Any],
               weights: Weights, truth: tuple[np.ndarray, np.ndarray] | None
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """Colours and measures of one mesh (``canonical`` ``(V, 3)``, ``posed`` ``(A, V, 3)``)."""
    start = time.perf_counter()
    if not usable:
        grey = np.full((len(canonical), 3), GREY)
        return grey, {"seen": 0.0, "fallback": "grey: no usable view for colour"}
    samples = view_samples(posed, faces, usable, arrays["action_of"], arrays["cameras"],
                           arrays["images"], arrays["alphas"], weights)
    colours, seen = to_srgb(faces, samples.values())
    seconds = time.perf_counter() - start
    held = held_out_scores(posed, faces, samples, scored, arrays["action_of"],
                           arrays["cameras"], arrays["images"], arrays["alphas"])
    report: dict[str, Any] = {
        "seen": round(seen, 4), "seconds": round(seconds, 2),
        "held_out": {"views": len(held),
                     "psnr": round(float(np.mean([r["psnr"] for r in held])), 3) if held else None,
                     "ssim": round(float(np.mean([r["ssim"] for r in held])), 4) if held else None,
                     "per_view": [{**r, "psnr": round(r["psnr"], 3), "ssim": round(r["ssim"], 4)}
                                  for r in held]}}
    if truth is not None:
        error = truth_colour_error(canonical, colours, *truth)
        report["truth_ciede2000"] = {"mean": round(float(error.mean()), 3),
                                     "p95": round(float(np.percentile(error, 95)), 3)}
    log.info("%s: %.0f %% of vertices seen, held-out PSNR %s over %d views, %.1f s", name,
             100 * seen, report["held_out"]["psnr"], len(held), seconds)
    return colours, report


TRUTH_MESH = "canonical_clothed.ply"


def read_truth_colours(truth: Path) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """The truth canonical mesh's vertices and per-vertex albedo (sRGB [0, 1]) of a truth
    folder, or None and why not (a scan without vertex colours)."""
    path = Path(truth) / TRUTH_MESH
    if not path.is_file():
        raise PipelineError(f"{path}: no truth mesh in the truth folder {truth}")
    mesh = read_ply(path)
    kind = getattr(mesh.visual, "kind", None)
    if kind != "vertex":
        return None, f"absent: {path} has no vertex colours"
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
    return (np.asarray(mesh.vertices, np.float64), colours), f"present: {path}"


def run(*, mesh: Path, recon: Path, cache: Path, output: Path, body_output: Path,
        report: Path, params: dict[str, Any], truth: Path | None = None) -> dict[str, Any]:
    """CLI entry: ``python -m pipeline colour``; ``truth``: the subject's truth folder (its
    ``canonical_clothed.ply`` with vertex colours: the synthetic albedo), or None."""
    weights = Weights(cos_power=float(params.get("cos_power", 2.0)),
                      min_cos=float(params.get("min_cos", 0.2)),
                      erode_px=int(params.get("erode_px", 2)))
    summary = read_json(recon)
    index, arrays = read_cache_arrays(cache)
    loaded = read_ply(mesh) if summary.get("surface", False) else None
    vertices = np.asarray(loaded.vertices) if loaded is not None else np.zeros((0, 3))
    faces = np.asarray(loaded.faces) if loaded is not None else np.zeros((0, 3), np.int64)
    rows = index.action_index
    usable = [i for i in range(len(rows)) if index.view_ok[i]]
    for i in range(len(rows)):
        if not index.view_ok[i]:
            log.warning("%s/%s: left out of the colour (the fit rejected the view)",
                        index.actions[rows[i]], index.view_names[i])
    every = int(params.get("held_out_every", 1))
    scored = usable[::every]
    shared = {"action_of": rows, "images": read_crops(cache), "alphas": arrays["alphas"],
              "cameras": {k[len("camera/"):]: v for k, v in arrays.items()
                          if k.startswith("camera/")}}
    truth_colours, truth_note = (read_truth_colours(truth) if truth is not None
                                 else (None, "absent: no truth"))
    body, body_faces = arrays["canonical_vertices"], arrays["faces"]
    transforms = vertex_transforms(arrays["skinning_weights"], arrays["bone_transforms"])
    out: dict[str, Any] = {"subject": summary.get("subject", Path(mesh).stem),
                           "split": summary.get("split"), "weights": weights.__dict__,
                           "views_used": len(usable), "views_left_out": len(rows) - len(usable),
                           "held_out_every": every, "truth_colours": truth_note}
    if len(faces):
        posed = repose(vertices, nearest_body_vertex(vertices, body), transforms)
        colours, out["model"] = colour_one("reconstruction", vertices, posed, faces, usable,
                                           scored, shared, weights, truth_colours)
        write_ply(output, vertices, faces, colours)
    else:
        out["model"] = {"seen": 0.0, "fallback": "no surface to colour"}
        write_ply(output, vertices, faces)
    body_colours, out["fitted_body"] = colour_one(
        "fitted body", body, arrays["posed_vertices"], body_faces, usable, scored, shared,
        weights, truth_colours)
    write_ply(body_output, body, body_faces, body_colours)
    write_json(report, out)
    return out

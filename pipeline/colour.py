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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.colouring.surface import (
    GREY,
    adjacency,
    fill_unseen,
    psnr_only,
    psnr_ssim,
    truth_colour_error,
)
from pipeline.colouring.views import Stacked, ViewSample, Weights, blend, draw, sample_view
from pipeline.errors import PipelineError
from pipeline.imageio import save_png
from pipeline.io import read_json, write_json
from pipeline.meshio import read_ply, write_ply
from pipeline.overlay import draw_view, tile_sheet
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
                 alphas: np.ndarray, weights: Weights, scenes: dict[int, Any] | None = None
                 ) -> dict[int, ViewSample]:
    """Each view's colours and weights on the mesh posed as in its action.

    Args:
        posed: ``(A, V, 3)`` the mesh in each action. faces: ``(F, 3)``.
        views: the view rows to use; action_of: ``(N,)`` each view row's action.
        cameras: ``(N, ...)`` camera arrays. images: ``(N, S, S, 3)`` uint8 crops.
        alphas: ``(N, S, S)`` uint8 mattes.
        scenes: the ray scenes of the posed meshes by action, built where missing and
            added (so that the held-out measure casts its rays in the same ones).
    """
    out: dict[int, ViewSample] = {}
    scenes = {} if scenes is None else scenes
    for a in sorted({int(action_of[i]) for i in views}):
        if a not in scenes:
            scenes[a] = make_intersector(posed[a], faces)
        scene = scenes[a]
        normals = compute_vertex_normals(posed[a], faces)
        for i in views:
            if action_of[i] == a:
                camera = {k: v[i] for k, v in cameras.items()}
                out[i] = sample_view(posed[a], faces, normals, camera, images[i], alphas[i],
                                     scene, weights)
    return out


def to_srgb(faces: np.ndarray, samples: Sequence[ViewSample], robust_scale: float = 0.0
            ) -> tuple[np.ndarray, float]:
    """The blended, filled ``(V, 3)`` sRGB [0, 1] colours and the share of vertices seen."""
    return filled_srgb(faces, blend(list(samples), robust_scale))


def filled_srgb(faces: np.ndarray, blended: tuple[np.ndarray, np.ndarray],
                edges: Any = None) -> tuple[np.ndarray, float]:
    """A blend (linear ``(V, 3)``, ``(V,)`` seen) as filled ``(V, 3)`` sRGB [0, 1] colours
    and the share of vertices seen; ``edges``: the mesh's adjacency, when already made."""
    linear, seen = blended
    return (fill_unseen(faces, linear_to_srgb(linear), seen, edges), float(seen.mean()))


def held_out_scores(posed: np.ndarray, faces: np.ndarray, samples: Mapping[int, ViewSample],
                    scored: Sequence[int], action_of: np.ndarray,
                    cameras: Mapping[str, np.ndarray], images: np.ndarray,
                    alphas: np.ndarray, keep: Sequence[int] = (), robust_scale: float = 0.0,
                    scenes: dict[int, Any] | None = None
                    ) -> tuple[list[dict[str, float]], dict[int, np.ndarray]]:
    """Each ``scored`` view drawn from the colours of all the other views: PSNR and SSIM
    against the photo over the matte's pixels the mesh covers, and ``coverage``, the share of
    the matte's pixels it covers (a matte pixel the mesh misses is a matter of geometry,
    which the reprojection IoU measures; counted as black it would outweigh the colour).
    ``psnr_misses_black``: the PSNR over the whole matte with the missed pixels black (the
    first definition, kept for comparison). Also the drawn images of the views in ``keep``:
    the photo outside the matte, black where the mesh misses the matte. ``scenes``: the ray
    scenes by action (:func:`view_samples`'s), built where missing. A view with no other
    view to colour from is not scored."""
    rows = []
    kept: dict[int, np.ndarray] = {}
    scenes = {} if scenes is None else scenes
    stacked = Stacked.of(samples) if samples else None
    everything = stacked.blend(robust_scale) if stacked is not None else None
    edges = adjacency(faces, len(posed[0]))
    for j in scored:
        if stacked is None or not any(i != j for i in samples):
            log.warning("view row %d: no other view to colour from; not scored", j)
            continue
        colours, _ = filled_srgb(faces, stacked.blend_without(j, everything, robust_scale)
                                 if j in samples else everything, edges)
        inside = alphas[j] >= 128
        if not inside.any():
            continue
        a = int(action_of[j])
        if a not in scenes:
            scenes[a] = make_intersector(posed[a], faces)
        pixels = np.argwhere(inside)
        drawn_rgb, hit = draw(posed[a], faces, colours, {k: v[j] for k, v in cameras.items()},
                              scenes[a], pixels[:, ::-1])
        covered = np.zeros_like(inside)
        covered[tuple(pixels[hit].T)] = True
        drawn = images[j].copy()
        drawn[covered] = np.round(drawn_rgb[hit] * 255.0).astype(np.uint8)
        if not covered.any():
            log.warning("view row %d: the mesh covers none of its matte; not scored", j)
            continue
        psnr, ssim = psnr_ssim(drawn, images[j], covered)
        blacked = drawn.copy()
        blacked[inside & ~covered] = 0
        rows.append({"view": int(j), "psnr": psnr, "ssim": ssim,
                     "coverage": float(covered.sum() / inside.sum()),
                     "psnr_misses_black": psnr_only(blacked, images[j], inside)})
        if j in keep:
            kept[int(j)] = blacked
    return rows, kept


@dataclass(frozen=True)
class Coloured:
    """One mesh coloured: ``colours (V, 3)`` sRGB [0, 1], its ``report`` (JSON-ready) and
    the held-out views drawn for the figure (view row → ``(S, S, 3)`` uint8)."""

    colours: np.ndarray
    report: dict[str, Any]
    drawn: dict[int, np.ndarray]


def colour_one(name: str, canonical: np.ndarray, posed: np.ndarray, faces: np.ndarray,
               usable: Sequence[int], scored: Sequence[int], arrays: Mapping[str, Any],
               weights: Weights, truth: tuple[np.ndarray, np.ndarray] | None,
               figure_views: Sequence[int] = ()) -> Coloured:
    """Colours and measures of one mesh (``canonical`` ``(V, 3)``, ``posed`` ``(A, V, 3)``)."""
    start = time.perf_counter()
    if not usable:
        grey = np.full((len(canonical), 3), GREY)
        return Coloured(grey, {"seen": 0.0, "fallback": "grey: no usable view for colour"}, {})
    scenes: dict[int, Any] = {}
    samples = view_samples(posed, faces, usable, arrays["action_of"], arrays["cameras"],
                           arrays["images"], arrays["alphas"], weights, scenes)
    colours, seen = to_srgb(faces, samples.values(), weights.robust_scale)
    seconds = time.perf_counter() - start
    held, drawn = held_out_scores(posed, faces, samples, scored, arrays["action_of"],
                                  arrays["cameras"], arrays["images"], arrays["alphas"],
                                  keep=figure_views, robust_scale=weights.robust_scale,
                                  scenes=scenes)
    mean = {k: round(float(np.mean([r[k] for r in held])), 4) if held else None
            for k in ("psnr", "ssim", "coverage", "psnr_misses_black")}
    report: dict[str, Any] = {
        "seen": round(seen, 4), "seconds": round(seconds, 2),
        "held_out": {"views": len(held), **mean,
                     "per_view": [{k: round(x, 4) if isinstance(x, float) else x
                                   for k, x in r.items()} for r in held]}}
    if truth is not None:
        error = truth_colour_error(canonical, colours, *truth)
        report["truth_ciede2000"] = {"mean": round(float(error.mean()), 3),
                                     "p95": round(float(np.percentile(error, 95)), 3)}
    log.info("%s: %.0f %% of vertices seen, held-out PSNR %s over %d views, %.1f s", name,
             100 * seen, report["held_out"]["psnr"], len(held), seconds)
    return Coloured(colours, report, drawn)


FIGURE_VIEWS = 4
"""Views of the first action in the report's figure."""


def figure(photos: np.ndarray, rows: Mapping[str, Coloured], views: Sequence[int],
           names: Sequence[str]) -> np.ndarray:
    """The report's colour figure: a row of photos, then one row per coloured mesh with the
    same views drawn from the colours of the other views, each labelled with its PSNR."""
    tiles = [draw_view(photos[j], None, None, None, f"photo {names[j]}") for j in views]
    for label, coloured in rows.items():
        psnr = {r["view"]: r["psnr"] for r in coloured.report.get("held_out", {})
                .get("per_view", [])}
        for j in views:
            image = coloured.drawn.get(j, np.zeros_like(photos[j]))
            tiles.append(draw_view(image, None, None, None,
                                   f"{label} {psnr.get(j, float('nan')):.1f} dB"))
    return tile_sheet(tiles, per_row=max(1, len(views)))


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


def read_views(cache: Path) -> tuple[Any, dict[str, np.ndarray], dict[str, Any], list[int]]:
    """A cache's index and arrays (:func:`pipeline.selfcheck.read_cache_arrays`), what the
    colouring reads of its views (``action_of``, ``images``, ``alphas``, ``cameras``) and the
    usable view rows: those the fit kept and whose matte is not empty (the others named in
    the log)."""
    index, arrays = read_cache_arrays(cache)
    rows = index.action_index
    has_matte = (arrays["alphas"] >= 128).any(axis=(1, 2))
    usable = [i for i in range(len(rows)) if index.view_ok[i] and has_matte[i]]
    for i in sorted(set(range(len(rows))) - set(usable)):
        log.warning("%s/%s: left out of the colour (%s)", index.actions[rows[i]],
                    index.view_names[i], "the fit rejected the view" if not index.view_ok[i]
                    else "its matte is empty")
    shared = {"action_of": rows, "images": read_crops(cache), "alphas": arrays["alphas"],
              "cameras": {k[len("camera/"):]: v for k, v in arrays.items()
                          if k.startswith("camera/")}}
    return index, arrays, shared, usable


def repose_like_body(vertices: np.ndarray, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Canonical ``(V, 3)`` vertices carried into every action of the cache ``arrays`` by
    the self-check's skinning: ``(A, V, 3)``."""
    transforms = vertex_transforms(arrays["skinning_weights"], arrays["bone_transforms"])
    return repose(vertices, nearest_body_vertex(vertices, arrays["canonical_vertices"]),
                  transforms)


def run(*, mesh: Path, recon: Path, cache: Path, output: Path, body_output: Path,
        report: Path, params: dict[str, Any], truth: Path | None = None,
        figure_output: Path | None = None) -> dict[str, Any]:
    """CLI entry: ``python -m pipeline colour``; ``truth``: the subject's truth folder (its
    ``canonical_clothed.ply`` with vertex colours: the synthetic albedo), or None;
    ``figure_output``: the report's PNG (photos beside the held-out views drawn)."""
    weights = Weights.from_params(params)
    summary = read_json(recon)
    index, arrays, shared, usable = read_views(cache)
    loaded = read_ply(mesh) if summary.get("surface", False) else None
    vertices = np.asarray(loaded.vertices) if loaded is not None else np.zeros((0, 3))
    faces = np.asarray(loaded.faces) if loaded is not None else np.zeros((0, 3), np.int64)
    rows = index.action_index
    every = int(params.get("held_out_every", 1))
    scored = usable[::every]
    shown = [i for i in scored if rows[i] == rows[scored[0]]][:FIGURE_VIEWS] if scored else []
    truth_colours, truth_note = (read_truth_colours(truth) if truth is not None
                                 else (None, "absent: no truth"))
    body, body_faces = arrays["canonical_vertices"], arrays["faces"]
    out: dict[str, Any] = {"subject": summary.get("subject", Path(mesh).stem),
                           "split": summary.get("split"), "weights": weights.__dict__,
                           "views_used": len(usable), "views_left_out": len(rows) - len(usable),
                           "held_out_every": every, "truth_colours": truth_note}
    coloured: dict[str, Coloured] = {}
    if len(faces):
        posed = repose_like_body(vertices, arrays)
        coloured["reconstruction"] = colour_one("reconstruction", vertices, posed, faces,
                                                usable, scored, shared, weights,
                                                truth_colours, shown)
        out["model"] = coloured["reconstruction"].report
        write_ply(output, vertices, faces, coloured["reconstruction"].colours)
    else:
        out["model"] = {"seen": 0.0, "fallback": "no surface to colour"}
        write_ply(output, vertices, faces)
    coloured["fitted body"] = colour_one("fitted body", body, arrays["posed_vertices"],
                                         body_faces, usable, scored, shared, weights,
                                         truth_colours, shown)
    out["fitted_body"] = coloured["fitted body"].report
    write_ply(body_output, body, body_faces, coloured["fitted body"].colours)
    if figure_output is not None:
        save_png(figure_output, figure(shared["images"], coloured, shown,
                                       [str(n) for n in index.view_names]))
    write_json(report, out)
    return out

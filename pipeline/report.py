"""Figures for the Snakemake report: reconstructions beside the truth, and training curves.

``render`` (one PNG per subject): the reconstruction from the front, the side and the back,
each vertex coloured by its distance to the truth surface (cm, with a colour bar), above the
truth drawn in grey from the same cameras. ``clip`` (one PNG per test subject of the PIFu
branch): a clip's frames side by side, a row per PIFu model and the truth. ``curves`` (one
PNG): every loss term and validation score of each training run against the step, from its
``train.json``.
The HTML report itself is Snakemake's (``snakemake --report report.html``); the rules mark
what goes in it. Rendering is the synthetic data's ray caster (CPU, deterministic).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from pipeline.evaluate import prediction
from pipeline.io import atomic_path, read_json
from pipeline.meshio import read_ply
from pipeline.metrics import CM_PER_M, load_truth, surface_distances
from pipeline.scans import read_mesh
from pipeline.synthesize.render import orbit_views

log = logging.getLogger(__name__)

VIEWS = {"front": -90.0, "side": 0.0, "back": 90.0}
"""Camera azimuths (degrees about +Z; the canonical body faces -Y)."""

GREY = (0.72, 0.72, 0.72)


def distance_colours(distance_cm: np.ndarray, vmax_cm: float,
                     cmap: str = "viridis") -> np.ndarray:
    """``(V, 3)`` sRGB in [0, 1]: each distance (cm) through ``cmap`` over [0, ``vmax_cm``]
    (farther is clipped to the top colour)."""
    scaled = np.clip(np.asarray(distance_cm, dtype=np.float64) / vmax_cm, 0.0, 1.0)
    return np.asarray(matplotlib.colormaps[cmap](scaled))[:, :3]


def _save(figure: Figure, output: Path) -> None:
    """Write a figure as PNG atomically (Agg canvas; no pyplot, no global figure state)."""
    with atomic_path(output, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def comparison_figure(pred: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray],
                      *, size: int, vmax_cm: float, title: str) -> Figure:
    """Reconstruction (distance-coloured) above truth (grey), front/side/back, colour bar."""
    tv, tf = truth
    lo, hi = tv.min(axis=0), tv.max(axis=0)
    centre, radius = 0.5 * (lo + hi), 0.5 * float(np.max(hi - lo))
    pv, pf = pred
    if len(pf):
        distance_cm = surface_distances(pv, tv, tf)[0] * CM_PER_M
        colours = distance_colours(distance_cm, vmax_cm)
    else:
        colours = np.zeros((len(pv), 3))
    rows = {"reconstruction": orbit_views(pv, pf, colours, list(VIEWS.values()), centre,
                                          radius, size=size),
            "truth": orbit_views(tv, tf, np.broadcast_to(GREY, tv.shape), list(VIEWS.values()),
                                 centre, radius, size=size)}
    figure = Figure(figsize=(3 * len(VIEWS) + 1, 6.6), layout="constrained")
    axes = figure.subplots(2, len(VIEWS), squeeze=False)
    for r, (row, images) in enumerate(rows.items()):
        for c, (view, image) in enumerate(zip(VIEWS, images, strict=True)):
            axes[r, c].imshow(image)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            axes[r, c].set_title(f"{row}, {view}" + (" (no surface)" if r == 0 and
                                                     not len(pf) else ""), fontsize=9)
    mappable = ScalarMappable(norm=Normalize(0.0, vmax_cm), cmap="viridis")
    bar = figure.colorbar(mappable, ax=axes[0, :].tolist(), shrink=0.9)
    bar.set_label(f"distance to the truth surface (cm, clipped at {vmax_cm:g})")
    figure.suptitle(title, fontsize=11)
    return figure


def render(*, mesh: Path, recon: Path, truth: Path, output: Path,
           params: dict[str, Any]) -> None:
    """One subject's reconstruction beside its truth (see the module docstring); the truth
    may be a scan with holes (drawn as it is)."""
    report = read_json(recon)
    figure = comparison_figure(prediction(mesh, report), read_mesh(truth),
                               size=params["size"], vmax_cm=params["colour_max_cm"],
                               title=f"{report.get('subject', mesh.stem)} "
                                     f"({report.get('split', 'test')} subject, "
                                     f"{report.get('n_views')} views)")
    _save(figure, output)
    log.info("wrote %s", output)


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(h["step"], h[key]) for h in history if key in h and h[key] is not None]
    return np.array([p[0] for p in points]), np.array([p[1] for p in points], dtype=float)


def curves(*, summaries: list[Path], output: Path, params: dict[str, Any]) -> None:
    """Training curves: per run, its losses and its validation scores (log scales)."""
    del params  # the rule passes the report section; the curves have no settings
    runs = [(path.parent.name, read_json(path)) for path in summaries]
    figure = Figure(figsize=(11, 3.4 * len(runs)), layout="constrained")
    axes = figure.subplots(len(runs), 2, squeeze=False)
    for r, (name, data) in enumerate(runs):
        history = data.get("history", [])
        keys = sorted({k for h in history for k in h})
        for c, prefix in enumerate(("loss/", "val/")):
            ax = axes[r, c]
            for key in (k for k in keys if k.startswith(prefix)):
                steps, values = _series(history, key)
                ax.plot(steps, values, marker="o" if prefix == "val/" else None,
                        markersize=3, label=key)
            if any(k.startswith(prefix) for k in keys):
                ax.set_yscale("log")  # terms of very different sizes (degrees beside ratios)
            ax.set_xlabel("step")
            ax.set_title(f"{name}: {'training losses' if c == 0 else 'validation'} "
                         f"({data.get('steps')} steps, seed {data.get('seed')})", fontsize=9)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "nothing logged", ha="center", transform=ax.transAxes)
    _save(figure, output)
    log.info("wrote %s", output)


def _posed(folder: Path, mesh: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A posed reconstruction moved to the world (empty when it has no surface)."""
    if not mesh["surface"]:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    loaded = read_ply(folder / mesh["file"])
    to_world = np.asarray(mesh["camera_to_world"])
    return (np.asarray(loaded.vertices) @ to_world[:3, :3].T + to_world[:3, 3],
            np.asarray(loaded.faces))


def clip(*, recons: list[Path], truth: Path, output: Path, params: dict[str, Any]) -> None:
    """One clip of a test subject, frames side by side: a row per model (its posed
    reconstructions of the first reconstructed view) and the truth, seen from that view's
    camera position, grey."""
    runs = [(folder.parent.name, read_json(folder / "recon.json")) for folder in recons]
    first = runs[0][1]["meshes"]
    view = first[0]["view"]
    frames = [m for m in first if m["view"] == view][: params["clip_frames"]]
    rows: dict[str, list[np.ndarray]] = {}
    truths = [load_truth(truth / m["action"] / "clothed.ply") for m in frames]
    for (name, summary), folder in zip(runs, recons, strict=True):
        by_key = {(m["action"], m["view"]): m for m in summary["meshes"]}
        rows[name] = [_view_from_camera(_posed(folder, by_key[(m["action"], view)]), t, m)
                      for m, t in zip(frames, truths, strict=True)]
    rows["truth"] = [_view_from_camera(t, t, m) for m, t in zip(frames, truths, strict=True)]
    figure = Figure(figsize=(2.6 * len(frames), 2.9 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(frames), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c, image in enumerate(images):
            axes[r, c].imshow(image)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            axes[r, c].set_title(f"{name}, {frames[c]['action']}", fontsize=8)
    figure.suptitle(f"{runs[0][1]['subject']}: view {view}", fontsize=10)
    _save(figure, output)


def _view_from_camera(mesh: tuple[np.ndarray, np.ndarray],
                      truth: tuple[np.ndarray, np.ndarray], record: dict[str, Any],
                      size: int = 192) -> np.ndarray:
    """Grey render from the reconstructed view's camera position, framed on the truth."""
    to_world = np.asarray(record["camera_to_world"])
    lo, hi = truth[0].min(axis=0), truth[0].max(axis=0)
    centre, radius = 0.5 * (lo + hi), 0.5 * float(np.max(hi - lo))
    direction = to_world[:3, 3] - centre
    azimuth = float(np.degrees(np.arctan2(direction[1], direction[0])))
    v, f = mesh
    return orbit_views(v, f, np.broadcast_to(GREY, v.shape), [azimuth], centre, radius,
                       size=size, elevation_deg=0.0)[0]

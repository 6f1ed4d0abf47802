"""The ``reconstruct`` stage: a subject's canonical clothed mesh from its photos.

Loads a Pixel2ISDF checkpoint, takes the subject's views from its cache (every ``view_ok``
view of every action, or K views across actions or from one action:
:func:`models.data.select_views`), computes the latent volume **once**,
evaluates the SDF coarse to fine on an R³ grid over the volume's cube
(:func:`models.grid_eval.evaluate_grid`), runs marching cubes at level 0 and keeps the
components ``components`` says (by default those holding the fitted body: floaters go;
:mod:`pipeline.components`). Writes the mesh
as PLY in metres in the body model's canonical frame (outward faces), and a JSON with the
views used, the network queries and the seconds. A field that never crosses zero gives a PLY
with no faces and ``"surface": false`` (the metrics say "no surface").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.measure import marching_cubes

from models.cache_io import canonical_body, load_index
from models.cpu import use_cpu
from models.data import Pixel2ISDFDataset, select_views
from models.grid_eval import GridResult, evaluate_grid
from models.pixel2isdf import Pixel2ISDF, get_model
from models.pixel2isdf.body_prior import BodySDF
from models.pixel2isdf.config import Pixel2ISDFConfig
from models.pixel2isdf.hull import HullViews, hull_features
from pipeline.components import keep_components
from pipeline.errors import PipelineError
from pipeline.io import write_json
from pipeline.meshio import write_ply
from pipeline.training.checkpoint import load_checkpoint, load_state, model_config
from pipeline.training.distributed import World, resolve_device
from pipeline.training.given import differing_keys

log = logging.getLogger(__name__)


def check_model_config(found: dict[str, Any], expected: dict[str, Any], path: Path) -> None:
    """PipelineError naming the checkpoint and every differing key when the network it holds
    was built from other ``train.model`` settings than ``expected`` (the current config's)."""
    differ = differing_keys(Pixel2ISDFConfig, found, expected, path, "train.model")
    if differ:
        raise PipelineError(f"checkpoint {path} does not match the config's train.model "
                            f"({', '.join(differ)}); retrain it (snakemake --forcerun train) "
                            "or point the config at the settings it was trained with")


def load_model(path: Path, device: torch.device,
               expected: dict[str, Any] | None = None) -> Pixel2ISDF:
    """The Pixel2ISDF network a checkpoint holds (eval mode); PipelineError naming the file
    when it is not one, was trained with other settings than ``expected`` (a
    ``train.model`` mapping) or its weights do not fit its own config."""
    data = load_checkpoint(path, kind="pixel2isdf")
    config = model_config(data, path)
    if expected is not None:
        check_model_config(config.get("model", {}), expected, path)
    try:
        model = get_model(config["model"], config.get("normal"),
                          config.get("freeze_normal", True))
    except (KeyError, TypeError, ValueError) as exc:
        raise PipelineError(f"checkpoint {path}: its model config does not build a network "
                            f"({exc})") from exc
    load_state(model, data["model"], path)
    return model.to(device).eval()


def subject_batch(cache: Path, views: int | None, seed: int, oracle: bool,
                  masked: bool = True, selection: str = "across",
                  with_body_sdf: bool = False, with_hull: bool = False) -> tuple[
                      dict[str, torch.Tensor], list[str]]:
    """The views of a subject that :func:`models.data.select_views` picks (``views`` of them,
    or all, by ``selection`` with ``seed``) as a batch of one, with the names
    ``<action>/<view>`` of the views used."""
    index = load_index(cache)
    rows = select_views(index, views, selection, seed)
    dataset = Pixel2ISDFDataset([cache], n_views=len(rows), n_points=0, seed=seed,
                                uint8_images=True, with_normals=oracle, masked=masked,
                                rows=[rows], with_body_sdf=with_body_sdf,
                                with_hull=with_hull)
    item = dataset[0]
    rows = item["view_index"].tolist()
    names = [f"{index.actions[index.action_index[r]]}/{index.view_names[r]}" for r in rows]
    batch = {k: v[None] for k, v in item.items()}
    return batch, names


def extract_mesh(grid: GridResult) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes at 0 with outward faces, in the grid's world frame; empty arrays when
    the field does not cross zero."""
    values = grid.values
    if not (values.min() < 0 < values.max()):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    verts, faces, _, _ = marching_cubes(values, 0.0, spacing=tuple(grid.spacing),
                                        gradient_direction="descent")
    return verts + grid.lo, np.asarray(faces, dtype=np.int64)


def body_band_field(body: BodySDF, band: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x ↦ d_body(x) − band`` on ``(B, P, 3)`` points: the signed distance to the fitted
    canonical body (the cache's volume, as the body prior reads it) grown by ``band`` metres.
    Its max with the network's SDF is the CSG intersection of the two solids: nothing
    farther than ``band`` from the body, where no training sample lies."""
    return lambda points: body(points) - band


HULL_SLOPE = 0.1
"""Metres per unit of matte of the silhouette carve's field: ±5 cm at mean mattes 0 and 1
around a threshold of 0.5, the order of the network's SDF values near the surface."""


def hull_carve_field(views: HullViews, threshold: float, body: BodySDF | None = None
                     ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x ↦ HULL_SLOPE · (threshold − mean matte)``: positive where fewer of the subject's
    photos show the person at x than ``threshold`` on average. Its max with the network's SDF
    carves away what the photos show as background (a soft visual hull over every input
    view, each point reposed by its nearest body vertex's skinning).

    With ``body`` (the fitted body's signed distance) the field is ``min(carve, d_body)``:
    the carve never cuts into the fitted body, so a matte with holes (dark trousers against
    a dark background) cannot cut off a limb the fit placed from keypoints and silhouettes."""
    def carve(points: torch.Tensor) -> torch.Tensor:
        values = HULL_SLOPE * (threshold - hull_features(views, points)[..., 0])
        return values if body is None else torch.minimum(values, body(points))
    return carve


def run(*, checkpoint: Path, cache: Path, output: Path, report: Path, split: str = "test",
        train_model: str | None = None, params: dict[str, Any]) -> dict[str, Any]:
    """Reconstruct one subject (see the module docstring); ``split`` labels it train/test.
    ``train_model``: the config's ``train.model`` as JSON; the checkpoint must match it."""
    start = time.perf_counter()
    use_cpu(params["threads"])
    device = resolve_device(params["device"], World())
    expected = None if train_model is None else json.loads(train_model)
    model = load_model(checkpoint, device, expected)
    band = params["body_band"]
    keep_body = params["hull_carve"] is not None and params["hull_keeps_body"]
    batch, names = subject_batch(cache, params["views"], params["seed"],
                                 model.cfg.input == "oracle_normal", model.cfg.masked_input,
                                 params["view_selection"],
                                 with_body_sdf=model.cfg.prior == "body" or band is not None
                                 or keep_body,
                                 with_hull=model.cfg.hull_feature
                                 or params["hull_carve"] is not None)
    batch = {k: v.to(device) for k, v in batch.items()}
    t0 = time.perf_counter()
    with torch.no_grad():
        volume = model.encode(batch)
    encode_s = time.perf_counter() - t0
    centre, half = volume.centre[0].cpu().numpy(), float(volume.half[0])
    body_sdf = BodySDF.from_batch(batch) if band is not None or keep_body else None
    body = None if band is None else body_band_field(body_sdf, band)
    carve = (None if params["hull_carve"] is None
             else hull_carve_field(HullViews.from_batch(batch), params["hull_carve"],
                                   body_sdf if keep_body else None))

    def sdf(points: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            p = torch.as_tensor(points, dtype=torch.float32, device=device)[None]
            values = model.query(volume, p)
            if body is not None:
                values = torch.maximum(values, body(p))
            if carve is not None:
                values = torch.maximum(values, carve(p))
            return values[0].double().cpu().numpy()

    t0 = time.perf_counter()
    grid = evaluate_grid(sdf, centre - half, centre + half, resolution=params["resolution"],
                         init_resolution=params["init_resolution"],
                         lipschitz=params["lipschitz"], batch=params["batch_points"])
    grid_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    verts, faces = extract_mesh(grid)
    kept = keep_components(verts, faces, params["components"],
                           canonical_body(cache)[0]
                           if params["components"] == "body" else None)
    verts, faces = kept.vertices, kept.faces
    mc_s = time.perf_counter() - t0
    write_ply(output, verts, faces)
    surface = len(faces) > 0
    if not surface:
        log.warning("%s: the network's SDF never crosses zero on the grid: no surface",
                    cache.stem)
    summary = {
        "subject": cache.stem, "split": split, "checkpoint": str(checkpoint),
        "surface": surface, "vertices": len(verts), "faces": len(faces),
        "components": {"mode": params["components"], "found": kept.components,
                       "kept": kept.kept, "removed_area_cm2": kept.removed_area_cm2},
        "views": names, "n_views": len(names), "view_selection": params["view_selection"],
        "actions": sorted({name.split("/")[0] for name in names}),
        "resolution": params["resolution"],
        "body_band": band, "hull_carve": params["hull_carve"],
        "hull_keeps_body": keep_body, "prior": model.cfg.prior,
        "queries": grid.queries, "dense_queries": grid.dense_queries,
        "query_reduction": round(grid.dense_queries / grid.queries, 2),
        "seconds": {"encode": round(encode_s, 3), "grid": round(grid_s, 3),
                    "marching_cubes": round(mc_s, 3),
                    "total": round(time.perf_counter() - start, 3)},
        "frame": "canonical body-model frame, metres", "device": str(device)}
    write_json(report, summary)
    log.info("%s (%s): %d vertices, %d queries (%.1fx fewer than dense), %.1f s", cache.stem,
             split, len(verts), grid.queries, summary["query_reduction"],
             summary["seconds"]["total"])
    return summary

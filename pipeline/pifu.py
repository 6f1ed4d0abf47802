"""PIFu stages after training: posed reconstructions per test frame and view, and their
evaluation (the second report's Table 2 scores on held-out points, Chamfer/P2S against the
posed truth), gathered into one table of both models beside the report's numbers.

Reconstruction (:func:`reconstruct`): for every frame (action) of a test subject and every
chosen view, the occupancy is evaluated coarse to fine (:func:`models.grid_eval.evaluate_grid`
at level 0.5 with a fixed band) on a grid over the posed fitted body's padded box **in the
crop camera's frame**, and marching cubes gives the mesh. Each mesh is written in that camera
frame (metres) with its 4×4 camera-to-world transform in ``recon.json``. docs/pifu.md.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.measure import marching_cubes

from models.cpu import use_cpu
from models.grid_eval import evaluate_grid
from models.pifu import PifuNet, get_model
from models.pifu.data import PifuDataset, clip_frames
from pipeline.errors import PipelineError
from pipeline.evaluate import html_page
from pipeline.io import atomic_directory, atomic_path, read_json, write_json
from pipeline.meshio import read_ply, write_ply
from pipeline.metrics import compare_meshes, load_truth
from pipeline.training.checkpoint import load_checkpoint, load_state, model_config
from pipeline.training.distributed import World, resolve_device

log = logging.getLogger(__name__)


def load_pifu(path: Path, model: str, device: torch.device) -> PifuNet:
    """The network of a ``pifu`` or ``temporal_pifu`` checkpoint (eval mode); PipelineError
    naming the file when it holds the other model, or its weights do not fit."""
    data = load_checkpoint(path, kind=model)
    config = model_config(data, path)
    try:
        net = get_model(config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PipelineError(f"checkpoint {path}: its model config does not build a PIFu "
                            f"network ({exc})") from exc
    load_state(net, data["model"], path)
    return net.to(device).eval()


def camera_to_world(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4×4 transform of camera-frame points to the world (``x_cam = R X + t``)."""
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def _item_of(dataset: PifuDataset, row: int) -> dict[str, torch.Tensor]:
    index = dataset.items.index((0, row))
    return {k: v[None] for k, v in dataset[index].items()}


def _mesh(model: PifuNet, item: dict[str, torch.Tensor], body: np.ndarray,
          params: dict[str, Any], device: torch.device) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray, int]:
    """Occupancy grid over the body's padded box in the centre frame's camera frame →
    marching cubes at 0.5: vertices (camera frame), faces, camera-to-world, queries."""
    frame = model.cfg.frames // 2
    R = item["camera_R"].reshape(-1, 3, 3)[frame].double().numpy()
    t = item["camera_t"].reshape(-1, 3)[frame].double().numpy()
    cam_body = body @ R.T + t
    lo, hi = cam_body.min(axis=0) - params["padding"], cam_body.max(axis=0) + params["padding"]
    batch = {k: v.to(device) for k, v in item.items()}
    with torch.no_grad():
        features = model.encode(batch)

    def occupancy(points_cam: np.ndarray) -> np.ndarray:
        world = (points_cam - t) @ R  # X = Rᵀ (x_cam − t)
        with torch.no_grad():
            p = torch.as_tensor(world, dtype=torch.float32, device=device)[None]
            return model.query(features, batch, p)[0].double().cpu().numpy()

    grid = evaluate_grid(occupancy, lo, hi, resolution=params["resolution"],
                         init_resolution=params["init_resolution"], level=0.5,
                         band=params["band"], lipschitz=None, batch=params["batch_points"])
    if not (grid.values.min() < 0.5 < grid.values.max()):
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), camera_to_world(R, t), grid.queries
    verts, faces, _, _ = marching_cubes(grid.values, 0.5, spacing=tuple(grid.spacing),
                                        gradient_direction="ascent")
    return verts + grid.lo, faces, camera_to_world(R, t), grid.queries


def reconstruct(*, model: str, checkpoint: Path, cache: Path, output: Path,
                params: dict[str, Any]) -> dict[str, Any]:
    """Posed meshes of one test subject: ``output/<action>_<view>.ply`` (camera frame) and
    ``output/recon.json`` (per mesh: frame, view, camera-to-world, queries, seconds)."""
    use_cpu(params["threads"])
    device = resolve_device(params["device"], World())
    net = load_pifu(checkpoint, model, device)
    dataset = PifuDataset([cache], temporal=net.cfg.temporal, window=net.cfg.window,
                          n_points=2, seed=params["seed"], uint8_images=True)
    index = dataset.indexes[0]
    views = params["views"]
    rows = [row for _, row in dataset.items
            if views is None or str(index.view_names[row]) in views]
    if not rows:
        raise PipelineError(f"pifu.reconstruct.views {views} match no view_ok view of {cache}")
    posed = dataset.caches.array(0, "posed_vertices")
    meshes = []
    with atomic_directory(output) as tmp:
        for row in rows:
            start = time.perf_counter()
            action, view = str(index.actions[index.action_index[row]]), str(index.view_names[row])
            verts, faces, to_world, queries = _mesh(net, _item_of(dataset, row),
                                                    posed[index.action_index[row]].astype(
                                                        np.float64), params, device)
            name = f"{action}_{view}.ply"
            write_ply(tmp / name, verts, faces)
            meshes.append({"file": name, "action": action, "view": view,
                           "surface": len(faces) > 0, "faces": len(faces), "queries": queries,
                           "dense_queries": params["resolution"] ** 3,
                           "camera_to_world": to_world.round(9).tolist(),
                           "seconds": round(time.perf_counter() - start, 3)})
            log.info("%s %s/%s: %d faces, %d queries, %.1f s", model, action, view, len(faces),
                     queries, meshes[-1]["seconds"])
        summary = {"model": model, "subject": index.subject, "checkpoint": str(checkpoint),
                   "frame": "each mesh in its crop camera's frame (OpenCV axes, metres); "
                            "camera_to_world maps it to the world", "meshes": meshes}
        write_json(tmp / "recon.json", summary)
    return summary


REPORT_TABLE2 = {"pifu": {"iou": 0.8118, "mse": 0.0649, "precision": 0.8565, "accuracy": 0.9381},
                 "temporal_pifu": {"iou": 0.8599, "mse": 0.0462, "precision": 0.8980,
                                   "accuracy": 0.9515}}
"""The second report's Table 2 (100 SURREAL test meshes; no recall given)."""

COUNTS = ("tp", "fp", "fn", "tn")


def _motion_cm(dataset: PifuDataset, s: int, row: int) -> float:
    """Mean displacement (cm) of the fitted body's vertices between the frames before and
    after ``row``'s frame in its clip (clamped at the ends), halved: per-frame motion."""
    index = dataset.indexes[s]
    actions = index.actions.tolist()
    frames = clip_frames(actions, str(index.actions[index.action_index[row]]))
    at = frames.index(str(index.actions[index.action_index[row]]))
    before, after = frames[max(at - 1, 0)], frames[min(at + 1, len(frames) - 1)]
    posed = dataset.caches.array(s, "posed_vertices")
    a, b = actions.index(before), actions.index(after)
    steps = max(1, frames.index(after) - frames.index(before))
    return float(100.0 * np.linalg.norm(posed[b] - posed[a], axis=1).mean() / steps)


def held_out_scores(net: PifuNet, caches: list[Path], params: dict[str, Any],
                    device: torch.device) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Table 2 scores over every test item (``eval_points`` balanced points each, a stream
    apart from training's), and per item its accuracy and the body's motion."""
    dataset = PifuDataset(caches, temporal=net.cfg.temporal, window=net.cfg.window,
                          n_points=params["points"], seed=params["seed"] + 7919,
                          uint8_images=True)
    totals = dict.fromkeys(COUNTS, 0)
    squared, n_points, items = 0.0, 0, []
    for i in range(len(dataset)):
        batch = {k: v[None].to(device) for k, v in dataset[i].items()}
        with torch.no_grad():
            occ = net(batch, batch["points"].float())[0].double().cpu().numpy()
        truth = batch["inside"][0].cpu().numpy() > 0.5
        pred = occ > 0.5
        counts = {"tp": int(np.sum(pred & truth)), "fp": int(np.sum(pred & ~truth)),
                  "fn": int(np.sum(~pred & truth)), "tn": int(np.sum(~pred & ~truth))}
        for k in COUNTS:
            totals[k] += counts[k]
        squared += float(np.sum((occ - truth) ** 2))
        n_points += len(occ)
        s, row = dataset.items[i]
        index = dataset.indexes[s]
        items.append({"subject": index.subject,
                      "action": str(index.actions[index.action_index[row]]),
                      "view": str(index.view_names[row]),
                      "accuracy": (counts["tp"] + counts["tn"]) / len(occ),
                      "motion_cm": round(_motion_cm(dataset, s, row), 4)})
    tp, fp, fn, tn = (totals[k] for k in COUNTS)

    def ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    scores = {"iou": ratio(tp, tp + fp + fn), "mse": squared / max(1, n_points),
              "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
              "accuracy": ratio(tp + tn, n_points), "points": n_points, "items": len(items)}
    return scores, items


def posed_surface_scores(recons: list[Path], truth: Path,
                         params: dict[str, Any]) -> dict[str, Any]:
    """Chamfer and P2S (cm) of every posed reconstruction, moved to the world, against
    ``truth/<subject>/<action>/clothed.ply``; means over the meshes that have a surface."""
    rows = []
    for folder in recons:
        summary = read_json(folder / "recon.json")
        for mesh in summary["meshes"]:
            target = load_truth(truth / summary["subject"] / mesh["action"] / "clothed.ply")
            if mesh["surface"]:
                loaded = read_ply(folder / mesh["file"])
                to_world = np.asarray(mesh["camera_to_world"])
                verts = np.asarray(loaded.vertices) @ to_world[:3, :3].T + to_world[:3, 3]
                faces = np.asarray(loaded.faces)
            else:
                verts, faces = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
            m = compare_meshes(verts, faces, *target, n_samples=params["samples"],
                               n_iou=params["samples"], seed=params["seed"],
                               mvp_samples=params["samples"])
            rows.append({"subject": summary["subject"], "action": mesh["action"],
                         "view": mesh["view"], **m.to_dict()})
    scored = [r for r in rows if r["surface"]]

    def mean(key: str) -> float | None:
        return float(np.mean([r[key] for r in scored])) if scored else None

    return {"chamfer_cm": mean("chamfer_cm"), "p2s_cm": mean("p2s_cm"),
            "meshes": len(rows), "no_surface": len(rows) - len(scored), "rows": rows}


def evaluate(*, model: str, checkpoint: Path, caches: list[Path], recons: list[Path],
             truth: Path, output: Path, params: dict[str, Any]) -> dict[str, Any]:
    """One model's Table 2 scores on the test subjects' held-out points and its posed
    reconstructions' Chamfer/P2S → ``output`` (JSON)."""
    start = time.perf_counter()
    use_cpu(params["threads"])
    device = resolve_device(params["device"], World())
    net = load_pifu(checkpoint, model, device)
    scores, items = held_out_scores(net, caches, params, device)
    surface = posed_surface_scores(recons, truth, params)
    result = {"model": model, "table2": scores, "surface": surface, "items": items,
              "test_subjects": [p.stem for p in caches],
              "seconds": round(time.perf_counter() - start, 3)}
    write_json(output, result)
    log.info("%s: IoU %.4f, accuracy %.4f, Chamfer %s cm over %d meshes", model, scores["iou"],
             scores["accuracy"], surface["chamfer_cm"], surface["meshes"])
    return result


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def motion_rows(reports: dict[str, dict[str, Any]], bins: int = 3) -> list[list[str]]:
    """Accuracy of each model per tercile of the body's per-frame motion (cm)."""
    motions = np.array([i["motion_cm"] for r in reports.values() for i in r["items"]])
    if not len(motions):
        return []
    edges = np.quantile(motions, np.linspace(0, 1, bins + 1))
    rows = []
    for b in range(bins):
        lo, hi = edges[b], edges[b + 1]
        cells = [f"{lo:.2f}–{hi:.2f}"]
        for report in reports.values():
            acc = [i["accuracy"] for i in report["items"]
                   if lo <= i["motion_cm"] <= hi and (b == bins - 1 or i["motion_cm"] < hi)]
            cells.append(_fmt(float(np.mean(acc)) if acc else None))
        rows.append(cells)
    return rows


def table(*, reports: list[Path], csv_output: Path, markdown: Path,
          html_output: Path) -> None:
    """PIFu beside Temporal PIFu, and the report's Table 2 beside ours (CSV, Markdown,
    HTML), with the posed Chamfer/P2S and accuracy against the body's motion."""
    loaded = {r["model"]: r for r in (read_json(p) for p in reports)}
    models = [m for m in ("pifu", "temporal_pifu") if m in loaded]
    names = {"pifu": "PIFu", "temporal_pifu": "Temporal PIFu"}
    header = ["metric"] + [f"{names[m]} (report)" for m in models] + \
             [f"{names[m]} (ours)" for m in models]
    rows = []
    for key in ("iou", "mse", "precision", "recall", "accuracy"):
        rows.append([key] + [_fmt(REPORT_TABLE2[m].get(key)) for m in models]
                    + [_fmt(loaded[m]["table2"][key]) for m in models])
    for key, label in (("chamfer_cm", "Chamfer (cm), posed"), ("p2s_cm", "P2S (cm), posed")):
        rows.append([label] + ["—" for _ in models]
                    + [_fmt(loaded[m]["surface"][key], 2) for m in models])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    first = loaded[models[0]]
    text = (f"# PIFu and Temporal PIFu\n\nTable 2 scores on held-out points of the test "
            f"subjects ({', '.join(first['test_subjects'])}; {first['table2']['points']} points "
            f"over {first['table2']['items']} items), and posed reconstructions against the "
            f"truth ({first['surface']['meshes']} meshes per model). The report's numbers come "
            "from 100 SURREAL test meshes: a scale, not a target.\n\n" + "\n".join(lines) + "\n")
    motion = motion_rows({m: loaded[m] for m in models})
    if motion:
        text += ("\n## Accuracy against the body's motion between frames\n\n"
                 "| motion per frame (cm) | " + " | ".join(names[m] for m in models) + " |\n|"
                 + "---|" * (len(models) + 1) + "\n"
                 + "\n".join("| " + " | ".join(r) + " |" for r in motion) + "\n")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_path(csv_output) as tmp:
        tmp.write_text(out.getvalue(), encoding="utf-8")
    with atomic_path(markdown) as tmp:
        tmp.write_text(text, encoding="utf-8")
    with atomic_path(html_output) as tmp:
        tmp.write_text(html_page(text, "PIFu and Temporal PIFu"), encoding="utf-8")

"""Quality of the body fit against the synthetic truth, with ablations.

``python -m pipeline.fit_quality --config config.yaml`` (after ``make demo``) scores, over every
view of every subject, for several variants of the fit:

* ``default``: the run's own fits (``results/<dataset>/fit/<subject>.npz``);
* ``no_silhouette``: refitted from the run's preprocessing with ``fit.silhouette: none``;
* ``oracle``: refitted from oracle crops, masks and keypoints (the synthetic truth), which
  separates the fitting error from the preprocessing error;
* ``oracle_no_silhouette``: both.

Refits go to ``results/<dataset>/fit_quality/<variant>/`` and are reused when present (delete
the folder to recompute). Metrics: median keypoint reprojection error (crop pixels) against the
fit's input keypoints and against the truth keypoints, silhouette IoU of the fitted naked body
against the truth naked-body silhouette, and per-vertex error PVE (cm) against the truth posed
body (same Anny topology; weak-perspective fits are first aligned by a similarity transform).
The table is printed and written to ``results/<dataset>/fit_quality/metrics.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from pipeline.camera import Camera
from pipeline.config import load_config, stage_params
from pipeline.detect import CROP_FILE
from pipeline.errors import PipelineError
from pipeline.fitting.cameras import kabsch
from pipeline.fitting.raster import fill_triangles, mask_iou
from pipeline.io import read_json, write_json

VARIANTS = ("default", "no_silhouette", "oracle", "oracle_no_silhouette")
log = logging.getLogger(__name__)


def _oracle_inputs(config: dict[str, Any], results: Path, truth: Path, scratch: Path,
                   subject: str, actions: list[str]) -> None:
    """Oracle crops, masks and keypoints of a subject under ``scratch``."""
    from pipeline import detect, keypoints, mask

    manifest = results / "manifest" / f"{subject}.json"
    for action in actions:
        crops = scratch / "crop" / subject / action
        if not (crops / CROP_FILE).is_file():
            detect.run(subject=subject, action=action, manifest=manifest, truth=truth / subject,
                       output=crops, params={**stage_params(config, "detect"),
                                             "backend": "oracle"})
        masks = scratch / "mask" / subject / action
        if not masks.is_dir():
            mask.run(subject=subject, action=action, crops=crops, truth=truth / subject,
                     output=masks, params={**stage_params(config, "mask"), "backend": "oracle",
                                           "matting": "none"})
        points = scratch / "keypoints" / subject / f"{action}.json"
        if not points.is_file():
            keypoints.run(subject=subject, action=action, crops=crops, truth=truth / subject,
                          output=points, params={**stage_params(config, "keypoints"),
                                                 "backend": "oracle"})


def fit_variant(config: dict[str, Any], variant: str, subject: str) -> tuple[Path, Path]:
    """The variant's fit npz of ``subject`` (computed when missing) and its crops folder."""
    from pipeline.fit import fit_to_files

    dataset = config["data"]["dataset"]
    results = Path(config["results"]) / dataset
    if variant == "default":
        path = results / "fit" / f"{subject}.npz"
        if not path.is_file():
            raise PipelineError(f"{path} does not exist: run the workflow (make demo) first")
        return path, results / "crop"
    truth = Path(config["data"]["root"]) / dataset / "truth"
    manifest = results / "manifest" / f"{subject}.json"
    actions = sorted(read_json(manifest)["actions"])
    scratch = results / "fit_quality" / variant
    inputs = results
    if variant.startswith("oracle"):
        inputs = results / "fit_quality" / "oracle_inputs"
        _oracle_inputs(config, results, truth, inputs, subject, actions)
    params = stage_params(config, "fit")
    if variant.endswith("no_silhouette"):
        params = {**params, "silhouette": "none"}
    path = scratch / f"{subject}.npz"
    if not path.is_file():
        log.info("fitting %s for variant %s", subject, variant)
        fit_to_files(subject=subject, manifest=manifest, crops=inputs / "crop" / subject,
                     masks=inputs / "mask" / subject, keypoints=inputs / "keypoints" / subject,
                     output=path, report=scratch / f"{subject}.json",
                     overlays=scratch / subject, params=params)
    return path, inputs / "crop"


def similarity_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``source`` (N, 3) moved by the similarity (rotation, uniform scale, translation) that
    best matches ``target`` (N, 3): Procrustes with scale, for weak-perspective fits."""
    rotation, _ = kabsch(source, target)
    centred = (source - source.mean(0)) @ rotation.T
    scale = (centred * (target - target.mean(0))).sum() / (centred ** 2).sum()
    return scale * centred + target.mean(0)


def score_subject(fit_path: Path, crops: Path, truth: Path, subject: str) -> list[dict]:
    """Per view: keypoint errors (px), silhouette IoU; per action: PVE (cm)."""
    rows = []
    with np.load(fit_path, allow_pickle=False) as fit:
        data = {k: fit[k] for k in fit.files}
    calibrated = str(data["camera_model"]) == "calibrated"
    size = int(data["crop_size"])
    for a, action in enumerate(data["actions"]):
        action_truth = truth / subject / str(action)
        body = trimesh.load(action_truth / "body.ply", process=False)
        fitted = data["posed_vertices"][a].astype(np.float64)
        if not calibrated:
            fitted = similarity_align(fitted, body.vertices)
        pve = float(np.linalg.norm(fitted - body.vertices, axis=1).mean() * 100)
        truth_3d = np.asarray(read_json(action_truth / "body.json")["keypoints_coco17_3d"])
        crop_views = read_json(crops / subject / str(action) / CROP_FILE)["views"]
        for v, view in enumerate(data["views"][a]):
            if not view or not data["view_valid"][a, v]:
                continue
            camera = Camera.from_dict(crop_views[str(view)]["camera"])
            truth_px = camera.project(truth_3d)[0]
            truth_mask = fill_triangles(camera.project(body.vertices)[0], body.faces, size)
            row = {"subject": subject, "action": str(action), "view": str(view), "pve_cm": pve,
                   "keypoint_error_px": float(data["keypoint_error_px"][a, v])}
            if calibrated:
                fitted_px = camera.project(data["posed_keypoints"][a].astype(np.float64))[0]
                row["keypoint_error_truth_px"] = float(np.median(
                    np.linalg.norm(fitted_px - truth_px, axis=1)))
                fitted_mask = fill_triangles(camera.project(fitted)[0], data["faces"], size)
                row["silhouette_iou_truth"] = mask_iou(fitted_mask, truth_mask)
            rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict[str, Any]:
    def stats(key: str) -> dict[str, float] | None:
        values = np.array([r[key] for r in rows if key in r], dtype=np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            return None
        return {"mean": float(values.mean()), "median": float(np.median(values)),
                "max": float(values.max())}

    per_action = {(r["subject"], r["action"]): r["pve_cm"] for r in rows}
    worst = max(per_action.items(), key=lambda kv: kv[1]) if per_action else None
    pve = np.array(list(per_action.values()))
    return {"views": len(rows), "actions": len(per_action),
            "pve_cm": {"mean": float(pve.mean()), "median": float(np.median(pve)),
                       "max": float(pve.max())} if len(pve) else None,
            "worst_action": f"{worst[0][0]}/{worst[0][1]} ({worst[1]:.1f} cm)" if worst else None,
            **{k: stats(k) for k in ("keypoint_error_px", "keypoint_error_truth_px",
                                     "silhouette_iou_truth")}}


def table(summaries: dict[str, dict[str, Any]]) -> str:
    def cell(summary: dict[str, Any], key: str, field: str = "mean", fmt: str = ".2f") -> str:
        value = summary.get(key)
        return "-" if value is None else format(value[field], fmt)

    lines = ["| variant | kp err vs input px (median of views) | kp err vs truth px | "
             "silhouette IoU vs truth | PVE cm mean | PVE cm median | PVE cm max | worst |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        lines.append(f"| {name} | {cell(s, 'keypoint_error_px', 'median', '.1f')} | "
                     f"{cell(s, 'keypoint_error_truth_px', 'median', '.1f')} | "
                     f"{cell(s, 'silhouette_iou_truth', 'mean', '.3f')} | "
                     f"{cell(s, 'pve_cm')} | {cell(s, 'pve_cm', 'median')} | "
                     f"{cell(s, 'pve_cm', 'max')} | {s['worst_action']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    dataset = config["data"]["dataset"]
    truth = Path(config["data"]["root"]) / dataset / "truth"
    summaries = {}
    for variant in args.variants:
        rows = []
        for subject in config["data"]["subjects"]:
            fit_path, crops = fit_variant(config, variant, subject)
            rows += score_subject(fit_path, crops, truth, subject)
        summaries[variant] = summarise(rows)
    write_json(Path(config["results"]) / dataset / "fit_quality" / "metrics.json", summaries)
    print(table(summaries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

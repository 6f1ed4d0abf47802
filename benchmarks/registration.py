"""Scan registration on the MVP-Human-like stand-in, against what the generator applied.

    .venv/bin/python benchmarks/registration.py --write docs/results.md

Needs the stand-in registered first (``presets/mvp_human.yaml``, rule ``register``; the
``all`` target does it). For each subject of ``<data>/standin_truth/`` with a registration
in ``<results>/register/<subject>/``:

- **map**: each vertex of the registered scan, unposed into the pipeline's frame
  (``canonical_clothed.ply``), to the native canonical truth's surface (the clothed mesh the
  stand-in was made from, in the pipeline's frame): mean and 95th percentile, mm; the same
  from the truth to the registered scan;
- **frame offset**: the translation between the registered scan's frame and the truth's
  (the registered naked body sits in the clothes, not on the skin, so its soles, which
  define z = 0, are not the truth body's), and the map's error once it is removed;
- **rotation**: the angle between the registered map's rotation and the one the generator
  applied (its axes; the file's own rotation Q is the rotation file's, undone before);
- **origin**: where the registered body's pelvis lands in the data set's frame, whose origin
  the generator put at the truth body's pelvis (mm);
- **scale**: not fitted (the stated unit's): the registered body's height against the truth
  body's, which is where a size error would show.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import igl
import numpy as np
import torch

from pipeline.bodymodel import make_body_model
from pipeline.frames import Similarity, rotation_angle_deg
from pipeline.io import read_json
from pipeline.meshio import read_ply
from pipeline.registration import pose_body, surface_distance
from pipeline.results_doc import publish


def offset(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
           steps: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The translation that best moves ``points`` onto the surface (ICP, translation only)
    and the points' distances to it once moved: ``(3,)`` metres and ``(N,)`` metres."""
    shift = np.zeros(3)
    for _ in range(steps):
        closest = igl.point_mesh_squared_distance(points + shift, vertices, faces)[2]
        shift = shift + (closest - (points + shift)).mean(axis=0)
    return shift, surface_distance(points + shift, vertices, faces)


def _mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    mesh = read_ply(path)
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/mvp_standin"))
    parser.add_argument("--results", type=Path, default=Path("results/mvp_standin"))
    parser.add_argument("--write", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    model = make_body_model("anny", {})
    lines = ["| subject | scan → truth mean / p95 (mm) | truth → scan mean / p95 (mm) "
             "| frame offset (mm) | scan → truth after it, mean / p95 (mm) "
             "| rotation error (°) | pelvis from origin (mm) | height registered / truth (m) "
             "| residual median (mm) | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for folder in sorted((args.data / "standin_truth").iterdir()):
        subject = folder.name
        report_path = args.results / "register" / subject / "registration.json"
        if not report_path.is_file():
            print(f"{subject}: not registered ({report_path} missing); skipped")
            continue
        report = read_json(report_path)
        standin = read_json(folder / "standin.json")
        scan_v, _ = _mesh(args.results / "register" / subject / "canonical_clothed.ply")
        truth_v, truth_f = _mesh(folder / "canonical_clothed.ply")
        body_v, _ = _mesh(folder / "canonical_body.ply")
        to_truth = 1000.0 * surface_distance(scan_v, truth_v, truth_f)
        scan_mesh = read_ply(args.results / "register" / subject / "canonical_clothed.ply")
        to_scan = 1000.0 * surface_distance(truth_v, scan_v, np.asarray(scan_mesh.faces))
        shift, aligned = offset(scan_v, truth_v, truth_f)
        aligned = 1000.0 * aligned
        similarity = Similarity.from_dict(report["to_dataset_frame"])
        applied_rotation = np.asarray(standin["axes"], dtype=np.float64)
        rotation_error = rotation_angle_deg(similarity.rotation, applied_rotation)
        pelvis = pose_body(model, torch.tensor(report["shape"], dtype=torch.float32),
                           torch.tensor(report["pose"], dtype=torch.float32)).pelvis
        origin_mm = 1000.0 * float(np.linalg.norm(similarity.apply(pelvis[None])[0]))
        truth_height = float(np.ptp(body_v[:, 2]))
        row = (np.mean(to_truth), np.percentile(to_truth, 95), np.mean(to_scan),
               np.percentile(to_scan, 95), 1000.0 * np.linalg.norm(shift), np.mean(aligned),
               np.percentile(aligned, 95), rotation_error, origin_mm)
        rows.append(row)
        moved = ", ".join(f"{1000.0 * v:+.0f}" for v in shift)
        lines.append(f"| {subject} | {row[0]:.1f} / {row[1]:.1f} | {row[2]:.1f} / {row[3]:.1f} "
                     f"| ({moved}) | {row[5]:.1f} / {row[6]:.1f} "
                     f"| {rotation_error:.2f} | {origin_mm:.1f} | {report['height_m']:.3f} / "
                     f"{truth_height:.3f} | {report['residual_mm']['median']:.1f} | "
                     f"{report['seconds']:.0f} |")
    if not rows:
        raise SystemExit(f"no registered stand-in subject under {args.results}/register")
    mean = np.mean(rows, axis=0)
    lines.append(f"| **mean** | {mean[0]:.1f} / {mean[1]:.1f} | {mean[2]:.1f} / {mean[3]:.1f} "
                 f"| {mean[4]:.0f} | {mean[5]:.1f} / {mean[6]:.1f} | {mean[7]:.2f} | "
                 f"{mean[8]:.1f} | | | |")
    text = (f"The stand-in's scans ({args.data}: da-pose, Y up, pelvis origin, holes, a random "
            "rotation file) registered and unposed into the pipeline's frame, against the "
            "native canonical truth they were made from. Scale: the stated unit's, not fitted "
            "(the heights compare the registered naked body with the truth's).\n\n"
            + "\n".join(lines))
    print(text)
    for doc in args.write:
        publish(doc, "registration", text)


if __name__ == "__main__":
    main()

"""Invented garments: how much surface a model adds that the truth does not have, with and
without the silhouette carve, on people in trousers or shorts.

    .venv/bin/python benchmarks/invented_garments.py \\
        --configfile config.yaml presets/learning_curve.yaml \\
        --checkpoint n5=results/curve/curve/n5/seed1/checkpoint.pt \\
                     n24=results/curve/curve/n24/seed1/checkpoint.pt \\
                     hull24=results/curve/curve/hull_feature/n24/seed1/checkpoint.pt \\
        --write docs/results.md

For each checkpoint and each test subject whose truth wears trousers or shorts (no garment
bridges the legs), reconstructs the subject from all its views with the config's carve and
without it, and measures the area of the mesh farther than 2 cm from the truth's surface
(cm²; surface the person does not have, such as a skirt between the legs) and the share of
it between the thighs (|x| under the hips' half-width, z between the knees and the crotch of
the fitted body), beside the fitted body's. Meshes are kept under
``results/<dataset>/invented/<label>/`` and reused; with the config's carve, the workflow's
own mesh of that checkpoint is read when there is one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from models.cache_io import canonical_body
from pipeline.config import load_configs, stage_params
from pipeline.meshio import read_ply
from pipeline.metrics import load_truth, surface_distances
from pipeline.reconstruct import run as reconstruct
from pipeline.results_doc import publish

OFF_CM = 2.0


def invented(vertices: np.ndarray, faces: np.ndarray, truth: tuple[np.ndarray, np.ndarray],
             body: np.ndarray) -> tuple[float, float]:
    """Area (cm²) of the mesh farther than 2 cm from the truth, and its share between the
    thighs of the fitted canonical body ``body (B, 3)``."""
    if len(faces) == 0:
        return 0.0, 0.0
    tri = vertices[faces]
    centres = tri.mean(axis=1)
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    distance = surface_distances(centres, *truth)[0] * 100.0
    off = distance > OFF_CM
    z, x = body[:, 2], body[:, 0]
    height = z.max() - z.min()
    crotch, knee = z.min() + 0.47 * height, z.min() + 0.28 * height
    half = np.abs(x[(z > crotch) & (z < crotch + 0.1 * height)]).max()
    between = off & (np.abs(centres[:, 0]) < half) & (centres[:, 2] > knee) & (
        centres[:, 2] < crotch)
    total = float(areas[off].sum()) * 1e4
    return total, float(areas[between].sum() * 1e4 / total) if total else 0.0


def run_reconstruction(results: Path, checkpoint: Path, subject: str) -> Path | None:
    """The workflow's own mesh of ``subject`` from ``checkpoint`` (``<results>/<run>/
    checkpoint.pt`` → ``<results>/recon/<run>/<subject>.ply``), when it exists."""
    try:
        run = checkpoint.resolve().parent.relative_to(results.resolve())
    except ValueError:
        return None
    mesh = results / "recon" / run / f"{subject}.ply"
    return mesh if mesh.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", type=Path, default=[Path("config.yaml")])
    parser.add_argument("--checkpoint", nargs="+", required=True, help="label=path ...")
    parser.add_argument("--subjects", nargs="*", help="default: the test subjects in "
                        "trousers or shorts")
    parser.add_argument("--write", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    config = load_configs(args.configfile)
    results = Path(config["results"]) / config["data"]["dataset"]
    truth_root = Path(config["data"]["root"]) / config["data"]["dataset"] / "truth"
    subjects = args.subjects or [
        s for s in config["data"]["test_subjects"]
        if json.loads((truth_root / s / "subject.json").read_text())["outfit"]["bottom"]
        in ("trousers", "shorts")]
    base = stage_params(config, "reconstruct")
    rows: list[dict[str, Any]] = []
    for subject in subjects:
        truth = load_truth(truth_root / subject / "canonical_clothed.ply")
        cache = results / "cache" / f"{subject}.h5"
        body_v, body_f = canonical_body(cache)
        row = {"subject": subject, "body": invented(body_v, body_f, truth, body_v)}
        for item in args.checkpoint:
            label, path = item.split("=", 1)
            for carve in (None, base["hull_carve"]):
                out = results / "invented" / label / f"{subject}_carve{carve}.ply"
                run_mesh = run_reconstruction(results, Path(path), subject)
                if carve == base["hull_carve"] and run_mesh is not None:
                    out = run_mesh  # the run's own mesh, made with these settings
                if not out.is_file():
                    out.parent.mkdir(parents=True, exist_ok=True)
                    reconstruct(checkpoint=Path(path), cache=cache, output=out,
                                report=out.with_suffix(".json"),
                                params={**base, "hull_carve": carve})
                mesh = read_ply(out)
                row[f"{label}/carve{carve}"] = invented(
                    np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64), truth,
                    body_v)
        rows.append(row)
        print(row, flush=True)
    keys = [k for k in rows[0] if k not in ("subject", "body")]
    lines = ["| subject | fitted body | " + " | ".join(
        k.replace("/carveNone", ", no carve").replace("/carve", ", carve ") for k in keys)
        + " |", "|---|---|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{r[k][0]:.0f} ({100 * r[k][1]:.0f} %)" for k in ["body", *keys]]
        lines.append(f"| {r['subject']} | " + " | ".join(cells) + " |")
    body = "\n".join([
        f"Area (cm²) of each mesh farther than {OFF_CM:.0f} cm from the truth's surface, and "
        "in brackets the share of it between the thighs, on the test subjects in trousers or "
        "shorts (no garment there). Checkpoints: " + ", ".join(args.checkpoint) + ".", "",
        *lines])
    print(body)
    for doc in args.write:
        publish(doc, "invented_garments", body)


if __name__ == "__main__":
    main()

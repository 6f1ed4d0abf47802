"""What the avatar's face budget (``export.faces``) costs in geometry and what it saves in
time: Chamfer of the decimated mesh against the undecimated one, and the seconds to
decimate, unwrap (xatlas, one group of charts per bone segment) and bake the texture, per
budget.

    .venv/bin/python benchmarks/avatar_faces.py                 # after make demo
    .venv/bin/python benchmarks/avatar_faces.py --subjects s003 s006 --faces 20000 50000 0
    .venv/bin/python benchmarks/avatar_faces.py --write docs/results.md

For each subject's coloured reconstruction (``recon/<model>/coloured/<subject>.ply``) and
each budget (0: no decimation, the baseline), the export's own steps
(``pipeline.colouring.texture``, with the subject's fit for the bone groups) run one after
the other, timed (the unwrap in wall and CPU seconds); the decimated mesh is
scored against the undecimated one by the evaluation's Chamfer (``pipeline.metrics``,
100,000 samples each way). Rows are means over the subjects.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.colouring.texture import bake, chart_groups, decimate, unwrap
from pipeline.config import load_config, stage_params
from pipeline.export import vertex_weights
from pipeline.meshio import read_ply
from pipeline.metrics import compare_meshes
from pipeline.results_doc import publish
from pipeline.submission import read_fit


def one(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray, budget: int,
        size: int, rig: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, float]:
    """The export's steps at one face budget (0: none) and the decimation's Chamfer (cm);
    ``rig``: the fit's canonical vertices, skinning weights and bone parents."""
    body, skin, parents = rig
    start = time.perf_counter()
    v, f = decimate(vertices, faces, budget) if budget else (vertices, faces)
    decimated, cpu = time.perf_counter(), time.process_time()
    atlas = unwrap(v, f, chart_groups(f, vertex_weights(v, body, skin), parents))
    unwrapped, unwrap_cpu = time.perf_counter(), time.process_time() - cpu
    bake(atlas, vertices, faces, colours, size)
    baked = time.perf_counter()
    chamfer = (compare_meshes(v, f, vertices, faces, n_samples=100_000, n_iou=1,
                              mvp_samples=1).chamfer_cm if budget else 0.0)
    return {"faces": len(f), "chamfer_cm": chamfer, "decimate_s": decimated - start,
            "unwrap_s": unwrapped - decimated, "unwrap_cpu_s": unwrap_cpu,
            "bake_s": baked - unwrapped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--model", default="pixel2isdf")
    parser.add_argument("--subjects", nargs="*", help="default: the config's test subjects")
    parser.add_argument("--faces", nargs="*", type=int, default=[20_000, 50_000, 0])
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose avatar_faces section to rewrite")
    args = parser.parse_args()
    config = load_config(args.config)
    results = Path(config["results"]) / config["data"]["dataset"]
    subjects = args.subjects or list(config["data"]["test_subjects"])
    size = int(stage_params(config, "export")["texture_size"])
    fit_params = stage_params(config, "fit")
    rows: dict[int, list[dict[str, float]]] = {b: [] for b in args.faces}
    full_faces = []
    for subject in subjects:
        mesh = read_ply(results / "recon" / args.model / "coloured" / f"{subject}.ply")
        vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        colours = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
        full_faces.append(len(faces))
        arrays, model = read_fit(results / "fit" / f"{subject}.npz", fit_params)
        rig = (arrays["canonical_vertices"], arrays["skinning_weights"],
               model.skeleton(torch.from_numpy(arrays["shape"])).parents)
        for budget in args.faces:
            rows[budget].append(one(vertices, faces, colours, budget, size, rig))
            print(subject, budget, rows[budget][-1], flush=True)
    lines = [f"Subjects {', '.join(subjects)} ({args.model}; {statistics.fmean(full_faces):,.0f} "
             f"faces before), texture {size}², one process, one after the other.", "",
             "| export.faces | faces | Chamfer to the undecimated mesh (cm) | decimate (s) "
             "| unwrap, xatlas (s) | unwrap, CPU (s) | bake (s) |",
             "|---|---|---|---|---|---|---|"]
    for budget, got in rows.items():
        mean = {k: statistics.fmean(r[k] for r in got) for k in got[0]}
        lines.append(f"| {budget or 'null (all)'} | {mean['faces']:,.0f} | "
                     f"{mean['chamfer_cm']:.4f} | {mean['decimate_s']:.2f} | "
                     f"{mean['unwrap_s']:.1f} | {mean['unwrap_cpu_s']:.1f} | "
                     f"{mean['bake_s']:.1f} |")
    text = "\n".join(lines)
    print(text)
    for doc in args.write:
        publish(doc, "avatar_faces", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

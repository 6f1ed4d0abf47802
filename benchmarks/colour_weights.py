"""The colour stage's view weights chosen on the validation subjects: held-out-view PSNR and
SSIM of the reconstruction's colour for each setting, beside the config's.

    .venv/bin/python benchmarks/colour_weights.py                 # after make demo
    .venv/bin/python benchmarks/colour_weights.py --write docs/results.md

For every setting (``cos_power`` × ``footprint_power`` of the grid below, then ``min_cos``,
``erode_px`` and the robust blend's ``robust_scale`` one at a time) and every validation
subject of ``--config`` (``data.val_subjects``: the test subjects choose nothing), the
reconstruction of ``make demo`` is coloured from its photos by the stage's own code and each
usable view is drawn from the colours of all the others (``pipeline.colour``). A row is the
mean over the subjects' held-out views. The best PSNR is marked; the config's setting is
marked too, so a difference between the two shows.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import numpy as np

from pipeline.colour import colour_one, read_views, repose_like_body
from pipeline.colouring.views import Weights
from pipeline.config import load_config, stage_params
from pipeline.meshio import read_ply
from pipeline.results_doc import publish

GRID = {"cos_power": (0.0, 1.0, 2.0, 4.0, 8.0), "footprint_power": (0.0, 2.0, 8.0),
        "min_cos": (0.2,), "erode_px": (2,)}
EXTRA = ({"cos_power": 2.0, "footprint_power": 2.0, "min_cos": 0.05, "erode_px": 2},
         {"cos_power": 2.0, "footprint_power": 2.0, "min_cos": 0.4, "erode_px": 2},
         {"cos_power": 2.0, "footprint_power": 2.0, "min_cos": 0.2, "erode_px": 0},
         {"cos_power": 2.0, "footprint_power": 2.0, "min_cos": 0.2, "erode_px": 4},
         *({"cos_power": 0.0, "footprint_power": 0.0, "min_cos": 0.2, "erode_px": 2,
            "robust_scale": scale} for scale in (0.0, 0.1, 0.2, 0.5)))


def subject_inputs(results: Path, model: str, subject: str) -> dict:
    """What ``colour_one`` reads of one subject: its mesh posed per action and the views
    (the stage's own loaders)."""
    _, arrays, shared, usable = read_views(results / "cache" / f"{subject}.h5")
    mesh = read_ply(results / "recon" / model / f"{subject}.ply")
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    return {"vertices": vertices, "faces": faces, "posed": repose_like_body(vertices, arrays),
            "usable": usable, "shared": shared}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--model", default="pixel2isdf")
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose colour_weights section to rewrite")
    args = parser.parse_args()
    config = load_config(args.config)
    subjects = list(config["data"]["val_subjects"])
    if not subjects:
        raise SystemExit(f"{args.config}: no data.val_subjects to choose the weights on")
    results = Path(config["results"]) / config["data"]["dataset"]
    chosen = Weights.from_params(stage_params(config, "colour"))
    settings = [dict(zip(GRID, values, strict=True))
                for values in itertools.product(*GRID.values())] + list(EXTRA)
    inputs = {s: subject_inputs(results, args.model, s) for s in subjects}
    rows = []
    for setting in settings:
        weights = Weights(**setting)
        psnr, ssim, seconds = [], [], []
        for subject, x in inputs.items():
            start = time.perf_counter()
            out = colour_one(subject, x["vertices"], x["posed"], x["faces"], x["usable"],
                             x["usable"], x["shared"], weights, None)
            seconds.append(time.perf_counter() - start)
            psnr += [r["psnr"] for r in out.report["held_out"]["per_view"]]
            ssim += [r["ssim"] for r in out.report["held_out"]["per_view"]]
        rows.append((weights, statistics.fmean(psnr), statistics.stdev(psnr) if len(psnr) > 1
                     else 0.0, statistics.fmean(ssim), len(psnr)))
        print(f"{weights}: PSNR {rows[-1][1]:.3f} dB, SSIM {rows[-1][3]:.4f}", flush=True)
    best = max(rows, key=lambda r: r[1])
    lines = [f"Validation subjects {', '.join(subjects)} of {args.config} ({args.model}, "
             f"{rows[0][4]} held-out views); mean held-out PSNR and SSIM per setting.", "",
             "| cos_power | footprint_power | min_cos | erode_px | robust_scale | PSNR (dB) "
             "| ± sd over views | SSIM | |", "|---|---|---|---|---|---|---|---|---|"]
    for w, p, sd, s, _ in rows:
        marks = [m for m, hit in (("best", w == best[0]), ("config", w == chosen)) if hit]
        lines.append(f"| {w.cos_power:g} | {w.footprint_power:g} | {w.min_cos:g} | "
                     f"{w.erode_px} | {w.robust_scale:g} | {p:.3f} | {sd:.2f} | {s:.4f} | "
                     f"{', '.join(marks)} |")
    config_row = next((r for r in rows if r[0] == chosen), None)
    lines += ["", f"Best: {best[0]} at {best[1]:.3f} dB; the config's "
              + (f"{chosen} at {config_row[1]:.3f} dB." if config_row
                 else f"{chosen} is not in the grid.")
              + f" Standard error of a row's mean over its views: about "
              f"{best[2] / best[4] ** 0.5:.2f} dB."]
    text = "\n".join(lines)
    print(text)
    for doc in args.write:
        publish(doc, "colour_weights", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

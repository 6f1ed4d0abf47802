"""The demo's colour measures per test subject, beside Chamfer, from the files ``make demo``
wrote (``eval/<model>/<subject>.colour.json`` and ``eval/<model>/<subject>.json``).

    .venv/bin/python benchmarks/colour_demo.py                  # after make demo
    .venv/bin/python benchmarks/colour_demo.py --write docs/results.md

One row per test subject (``data.test_subjects``) and their mean: held-out-view PSNR and
SSIM over the matte's pixels the mesh covers, the share it covers and the PSNR with the
missed pixels counted black (the first definition), CIEDE2000 against the truth's albedo
(mean, 95th percentile), each as
"reconstruction / fitted body", the Chamfer distance of both, and the seconds to colour and
texture the reconstruction beside the reconstruction's own seconds. Colouring: the stage's
``seconds`` (without the held-out measure); texturing: the export's steps run here on the
coloured mesh with the config's ``export`` section (decimate, unwrap, bake), timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from pipeline.colouring.texture import bake, decimate, unwrap
from pipeline.config import load_config, stage_params
from pipeline.io import read_json
from pipeline.meshio import read_ply
from pipeline.results_doc import publish


def texture_seconds(path: Path, export: dict) -> float:
    """Seconds of the export's texture steps on one coloured mesh."""
    mesh = read_ply(path)
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
    start = time.perf_counter()
    v, f = decimate(vertices, faces, export["faces"]) if export["faces"] else (vertices, faces)
    bake(unwrap(v, f), vertices, faces, colours, export["texture_size"])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--model", default="pixel2isdf")
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose colour_demo section to rewrite")
    args = parser.parse_args()
    config = load_config(args.config)
    results = Path(config["results"]) / config["data"]["dataset"]
    subjects = list(config["data"]["test_subjects"])
    export = stage_params(config, "export")
    rows = []
    for s in subjects:
        colour = read_json(results / "eval" / args.model / f"{s}.colour.json")
        scores = read_json(results / "eval" / args.model / f"{s}.json")["metrics"]
        recon = read_json(results / "recon" / args.model / f"{s}.json")
        m, b = colour["model"], colour["fitted_body"]
        rows.append({
            "subject": s, "psnr": (m["held_out"]["psnr"], b["held_out"]["psnr"]),
            "ssim": (m["held_out"]["ssim"], b["held_out"]["ssim"]),
            "coverage": (m["held_out"]["coverage"], b["held_out"]["coverage"]),
            "black": (m["held_out"]["psnr_misses_black"], b["held_out"]["psnr_misses_black"]),
            "de": (m["truth_ciede2000"]["mean"], b["truth_ciede2000"]["mean"]),
            "de95": (m["truth_ciede2000"]["p95"], b["truth_ciede2000"]["p95"]),
            "chamfer": (scores["model"]["chamfer_cm"], scores["fitted_body"]["chamfer_cm"]),
            "seconds": (m["seconds"] + texture_seconds(
                results / "recon" / args.model / "coloured" / f"{s}.ply", export),
                float(recon["seconds"]["total"]))})
    rows.append({"subject": f"**mean of {len(rows)}**",
                 **{k: tuple(statistics.fmean(r[k][i] for r in rows) for i in (0, 1))
                    for k in ("psnr", "ssim", "coverage", "black", "de", "de95", "chamfer",
                              "seconds")}})
    lines = [f"Test subjects of {args.config} ({args.model}), from `make demo`'s files. Each "
             "pair: reconstruction / fitted body, coloured by the same code from the same "
             "photos (docs/colour.md). Seconds: colouring (without the held-out measure) "
             f"and texturing (export.faces {export['faces']}, texture "
             f"{export['texture_size']}²) / the reconstruction itself.", "",
             "| subject | held-out PSNR (dB) | held-out SSIM | matte covered | PSNR, misses "
             "black (dB) | ΔE00 mean | ΔE00 p95 | Chamfer (cm) | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['subject']} | {r['psnr'][0]:.2f} / {r['psnr'][1]:.2f} | "
                     f"{r['ssim'][0]:.3f} / {r['ssim'][1]:.3f} | "
                     f"{r['coverage'][0]:.3f} / {r['coverage'][1]:.3f} | "
                     f"{r['black'][0]:.2f} / {r['black'][1]:.2f} | {r['de'][0]:.2f} / "
                     f"{r['de'][1]:.2f} | {r['de95'][0]:.2f} / {r['de95'][1]:.2f} | "
                     f"{r['chamfer'][0]:.3f} / {r['chamfer'][1]:.3f} | "
                     f"{r['seconds'][0]:.1f} / {r['seconds'][1]:.1f} |")
    above = sum(r["psnr"][0] > r["psnr"][1] for r in rows[:-1])
    share = rows[-1]["seconds"][0] / rows[-1]["seconds"][1]
    lines += ["", f"Held-out PSNR above the fitted body's on {above} of {len(rows) - 1} test "
              f"subjects (target: all). Colouring and texturing {100 * share:.0f} % of the "
              "reconstruction's (target ≤ 20 %)."]
    text = "\n".join(lines)
    print(text)
    for doc in args.write:
        publish(doc, "colour_demo", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The body band of a one-photo reconstruction: Chamfer against the band, on a subject that
``benchmarks/hidden_truth.py`` has already run (its ``one_photo_weak`` case).

    .venv/bin/python benchmarks/hidden_truth.py --configfile config.yaml \\
        presets/learning_curve.yaml --subject s007 --cases one_photo_weak \\
        --checkpoint results/curve/curve/few_views/n12/seed1/checkpoint.pt \\
        --label few_views_n12
    .venv/bin/python benchmarks/one_photo_band.py --subject s007 --label few_views_n12 \\
        --bands 0.03 0.1 0.4

Reconstructs the subject from that run's cache with each ``reconstruct.body_band`` (metres:
how far the surface may stand off the fitted body) and scores it against the truth, beside
the fitted body. Choose the band on a validation subject, never a test subject.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import evaluate
from pipeline.config import load_configs, stage_params
from pipeline.reconstruct import run as reconstruct
from pipeline.results_doc import publish

DEFAULT = [Path("config.yaml"), Path("presets/learning_curve.yaml")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", type=Path, default=DEFAULT)
    parser.add_argument("--subject", required=True)
    parser.add_argument("--label", required=True, help="hidden_truth.py's --label")
    parser.add_argument("--checkpoint", type=Path,
                        default=Path("results/curve/curve/few_views/n12/seed1/checkpoint.pt"))
    parser.add_argument("--bands", nargs="+", type=float, default=[0.03, 0.1, 0.4])
    parser.add_argument("--out", type=Path, default=Path("results/hidden_truth"))
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose one_photo_band_<subject> section to rewrite")
    args = parser.parse_args()
    config = load_configs(args.configfile)
    run = args.out / args.subject / args.label
    cache = run / "results" / "one_photo_weak" / "cache" / f"{args.subject}.h5"
    truth = Path(config["data"]["root"]) / config["data"]["dataset"] / "truth" / args.subject
    lines = [f"{args.subject}, one photo without its camera, checkpoint {args.checkpoint}.", "",
             "| body band (m) | Chamfer mesh (cm) | Chamfer fitted body (cm) | F@1cm mesh |",
             "|---|---|---|---|"]
    print("\n".join(lines))
    for band in args.bands:
        stem = run / "bands" / f"band_{band:g}"
        params = {**stage_params(config, "reconstruct"), "body_band": band}
        reconstruct(checkpoint=args.checkpoint, cache=cache, output=stem.with_suffix(".ply"),
                    report=stem.with_suffix(".json"), params=params)
        scores = evaluate.run(mesh=stem.with_suffix(".ply"), recon=stem.with_suffix(".json"),
                              truth=truth / "canonical_clothed.ply", cache=cache,
                              output=stem.with_suffix(".eval.json"),
                              params=stage_params(config, "evaluate"))["metrics"]
        lines.append(f"| {band:g} | {scores['model']['chamfer_cm']:.2f} | "
                     f"{scores['fitted_body']['chamfer_cm']:.2f} | "
                     f"{scores['model']['fscore_1cm']:.3f} |")
        print(lines[-1], flush=True)
    for doc in args.write:
        publish(doc, f"one_photo_band_{args.subject}", "\n".join(lines))


if __name__ == "__main__":
    main()

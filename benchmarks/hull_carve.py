"""Choosing ``reconstruct.hull_carve``: the demo's checkpoint reconstructed with each threshold
(and without the carve, the baseline of the same run), scored against the truth, per subject.

    .venv/bin/python benchmarks/hull_carve.py                       # after `make demo`
    .venv/bin/python benchmarks/hull_carve.py --thresholds none 0.6 0.7 0.8 --subjects s000

The threshold is chosen by the mean Chamfer over the TRAINING subjects only; the test
subjects' rows are printed for the record and play no part in the choice. (The training
subjects favour a light carve: the network already fits them. A held-out validation subject
would be the better judge; the demo has none to spare.)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from pipeline import evaluate, reconstruct
from pipeline.config import load_config, stage_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--thresholds", nargs="+", default=["none", "0.7", "0.8", "0.85", "0.9"])
    parser.add_argument("--subjects", nargs="+", default=None, help="default: data.subjects")
    args = parser.parse_args()
    config = load_config(args.config)
    results = Path(config["results"]) / config["data"]["dataset"]
    truth = Path(config["data"]["root"]) / config["data"]["dataset"] / "truth"
    subjects = args.subjects or config["data"]["subjects"]
    test = set(config["data"]["test_subjects"])
    thresholds = [None if t == "none" else float(t) for t in args.thresholds]
    chamfer: dict[tuple[str, float | None], float] = {}
    fitted: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for subject in subjects:
            cache = results / "cache" / f"{subject}.h5"
            for t in thresholds:
                out = Path(tmp) / f"{subject}_{t}.ply"
                params = {**stage_params(config, "reconstruct"), "hull_carve": t}
                reconstruct.run(checkpoint=results / "train" / "pixel2isdf" / "checkpoint.pt",
                                cache=cache, output=out, report=out.with_suffix(".json"),
                                params=params)
                scores = evaluate.run(mesh=out, recon=out.with_suffix(".json"),
                                      truth=truth / subject / "canonical_clothed.ply",
                                      truth_body=truth / subject / "canonical_body.ply",
                                      cache=cache, output=Path(tmp) / f"{subject}_{t}.json",
                                      params=stage_params(config, "evaluate"))
                chamfer[subject, t] = scores["metrics"]["model"]["chamfer_cm"]
                fitted[subject] = scores["metrics"]["fitted_body"]["chamfer_cm"]
    names = ["none" if t is None else f"{t:g}" for t in thresholds]
    print("Chamfer (cm) per subject and hull_carve threshold\n")
    print("| subject | split | " + " | ".join(names) + " | fitted naked body |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for subject in subjects:
        split = "test" if subject in test else "train"
        cells = " | ".join(f"{chamfer[subject, t]:.2f}" for t in thresholds)
        print(f"| {subject} | {split} | {cells} | {fitted[subject]:.2f} |")
    train = [s for s in subjects if s not in test]
    if train:
        means = [float(np.mean([chamfer[s, t] for s in train])) for t in thresholds]
        print("| mean | train | " + " | ".join(f"{m:.2f}" for m in means) + " | "
              f"{np.mean([fitted[s] for s in train]):.2f} |")
        best = names[int(np.argmin(means))]
        print(f"\nchosen by the training subjects' mean Chamfer: hull_carve {best}")


if __name__ == "__main__":
    main()

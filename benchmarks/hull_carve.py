"""Choosing ``reconstruct.hull_carve``: reconstructions with each threshold (and without the
carve, the baseline of the same run), scored against the truth, per subject.

    .venv/bin/python benchmarks/hull_carve.py --leave-one-out        # after `make demo`
    .venv/bin/python benchmarks/hull_carve.py                        # the demo's checkpoint
    .venv/bin/python benchmarks/hull_carve.py --thresholds none 0.6 0.7 0.8 --subjects s000

Two ways to judge, neither looks at the test subjects:

- ``--leave-one-out`` (the one the demo's setting comes from): for each training subject,
  a network is trained on the OTHER training subjects (the config's ``train`` section, same
  seed and steps) and that held-out subject is reconstructed with each threshold. The
  threshold with the best mean held-out Chamfer is chosen. This is the situation the carve
  is for: a subject the network has not seen.
- default: the demo's own checkpoint on the training subjects. Biased towards a light carve,
  since the network already fits the subjects it trained on.

The test subjects' rows are printed for the record (from the demo's checkpoint) and play no
part in either choice.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import evaluate, reconstruct, train
from pipeline.config import load_config, stage_params


def sweep(config: dict[str, Any], checkpoint: Path, subject: str,
          thresholds: list[float | None], tmp: Path) -> tuple[dict[float | None, float], float]:
    """Chamfer (cm) of ``subject`` per threshold, and the fitted naked body's."""
    results = Path(config["results"]) / config["data"]["dataset"]
    truth = Path(config["data"]["root"]) / config["data"]["dataset"] / "truth" / subject
    cache = results / "cache" / f"{subject}.h5"
    chamfer: dict[float | None, float] = {}
    fitted = float("nan")
    for t in thresholds:
        out = tmp / f"{checkpoint.parent.name}_{subject}_{t}.ply"
        params = {**stage_params(config, "reconstruct"), "hull_carve": t}
        reconstruct.run(checkpoint=checkpoint, cache=cache, output=out,
                        report=out.with_suffix(".json"), params=params)
        scores = evaluate.run(mesh=out, recon=out.with_suffix(".json"),
                              truth=truth / "canonical_clothed.ply",
                              truth_body=truth / "canonical_body.ply", cache=cache,
                              output=out.with_suffix(".eval.json"),
                              params=stage_params(config, "evaluate"))
        chamfer[t] = scores["metrics"]["model"]["chamfer_cm"]
        fitted = scores["metrics"]["fitted_body"]["chamfer_cm"]
    return chamfer, fitted


def print_table(title: str, rows: list[tuple[str, str, dict[float | None, float], float]],
                thresholds: list[float | None]) -> str:
    """Markdown table of Chamfer per subject and threshold; returns the best threshold's name
    by the mean over the rows whose split is not ``test``."""
    names = ["none" if t is None else f"{t:g}" for t in thresholds]
    print(f"\n{title}\n")
    print("| subject | split | " + " | ".join(names) + " | fitted naked body |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for subject, split, chamfer, fitted in rows:
        cells = " | ".join(f"{chamfer[t]:.2f}" for t in thresholds)
        print(f"| {subject} | {split} | {cells} | {fitted:.2f} |")
    judged = [r for r in rows if r[1] != "test"]
    if not judged:
        return ""
    means = [float(np.mean([r[2][t] for r in judged])) for t in thresholds]
    print(f"| mean | {judged[0][1]} | " + " | ".join(f"{m:.2f}" for m in means) + " | "
          f"{np.mean([r[3] for r in judged]):.2f} |")
    return names[int(np.argmin(means))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--thresholds", nargs="+", default=["none", "0.7", "0.8", "0.85", "0.9"])
    parser.add_argument("--subjects", nargs="+", default=None, help="default: data.subjects")
    parser.add_argument("--leave-one-out", action="store_true",
                        help="train without each training subject and judge on it")
    parser.add_argument("--out", type=Path, default=Path("results/hull_carve"),
                        help="checkpoints of --leave-one-out")
    args = parser.parse_args()
    config = load_config(args.config)
    results = Path(config["results"]) / config["data"]["dataset"]
    subjects = args.subjects or config["data"]["subjects"]
    test = set(config["data"]["test_subjects"])
    training = [s for s in config["data"]["subjects"] if s not in test]
    thresholds = [None if t == "none" else float(t) for t in args.thresholds]
    demo_checkpoint = results / "train" / "pixel2isdf" / "checkpoint.pt"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows = [(s, "test" if s in test else "train",
                 *sweep(config, demo_checkpoint, s, thresholds, tmp)) for s in subjects]
        best = print_table("Chamfer (cm), the demo's checkpoint", rows, thresholds)
        print(f"\nchosen by the training subjects' mean Chamfer: hull_carve {best}")
        if not args.leave_one_out:
            return
        held_rows = []
        for held in training:
            others = [s for s in training if s != held]
            out = args.out / f"without_{held}"
            train.run(train_caches=[results / "cache" / f"{s}.h5" for s in others],
                      test_caches=[results / "cache" / f"{held}.h5"],
                      normal=results / "train" / "normal_net" / "checkpoint.pt",
                      output=out / "checkpoint.pt", summary=out / "train.json",
                      params=stage_params(config, "train"))
            held_rows.append((held, "held out",
                              *sweep(config, out / "checkpoint.pt", held, thresholds, tmp)))
        best = print_table("Chamfer (cm), each training subject held out of training",
                           held_rows, thresholds)
        print(f"\nchosen by the held-out training subjects' mean Chamfer: hull_carve {best}")


if __name__ == "__main__":
    main()

"""Choosing ``reconstruct.hull_carve``: reconstructions with each threshold (and without the
carve, the baseline of the same run), scored against the truth, per subject.

    .venv/bin/python benchmarks/hull_carve.py --write docs/results.md   # after `make demo`
    .venv/bin/python benchmarks/hull_carve.py --leave-one-out
    .venv/bin/python benchmarks/hull_carve.py --thresholds none 0.6 0.7 0.8

The threshold is chosen on the validation subjects (``data.val_subjects``), never on a test
subject (those are not even reconstructed here):

- default (the one the demo's setting comes from): the demo's checkpoint, which never trained
  on the validation subjects, reconstructs each of them with each threshold; the threshold
  with the best mean Chamfer is chosen.
- ``--leave-one-out`` as well: for each training subject, a network is trained on the OTHER
  training subjects (the config's ``train`` section, same seed and steps, its checkpoint kept
  on the validation subjects) and that held-out subject is reconstructed with each
  threshold: more subjects to judge on, at one training each.

With ``--write`` the tables go into section ``hull_carve`` of the given files.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import evaluate, reconstruct, train
from pipeline.config import load_config, stage_params
from pipeline.results_doc import publish


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


def markdown_table(title: str,
                   rows: list[tuple[str, str, dict[float | None, float], float]],
                   thresholds: list[float | None]) -> tuple[str, str]:
    """Markdown table of Chamfer per subject and threshold, with the mean row, and the best
    threshold's name by that mean."""
    names = ["none" if t is None else f"{t:g}" for t in thresholds]
    lines = [f"{title}", "", "| subject | split | " + " | ".join(names) + " | fitted body |",
             "|---|---|" + "---|" * (len(names) + 1)]
    for subject, split, chamfer, fitted in rows:
        cells = " | ".join(f"{chamfer[t]:.2f}" for t in thresholds)
        lines.append(f"| {subject} | {split} | {cells} | {fitted:.2f} |")
    means = [float(np.mean([r[2][t] for r in rows])) for t in thresholds]
    lines.append(f"| mean | {rows[0][1]} | " + " | ".join(f"{m:.2f}" for m in means) + " | "
                 f"{np.mean([r[3] for r in rows]):.2f} |")
    best = names[int(np.argmin(means))]
    lines += ["", f"Chosen by the mean Chamfer: hull_carve {best}."]
    return "\n".join(lines), best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--thresholds", nargs="+", default=["none", "0.7", "0.8", "0.85", "0.9"])
    parser.add_argument("--leave-one-out", action="store_true",
                        help="also train without each training subject and judge on it")
    parser.add_argument("--out", type=Path, default=Path("results/hull_carve"),
                        help="checkpoints of --leave-one-out")
    parser.add_argument("--write", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    config = load_config(args.config)
    data = config["data"]
    results = Path(config["results"]) / data["dataset"]
    val = list(data["val_subjects"])
    if not val:
        raise SystemExit(f"{args.config}: data.val_subjects is empty; the carve threshold is "
                         "chosen on validation subjects only")
    held = set(val) | set(data["test_subjects"]) | set(data["predict_subjects"])
    training = [s for s in data["subjects"] if s not in held]
    thresholds = [None if t == "none" else float(t) for t in args.thresholds]
    demo_checkpoint = results / "train" / "pixel2isdf" / "checkpoint.pt"
    sections = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows = [(s, "val", *sweep(config, demo_checkpoint, s, thresholds, tmp)) for s in val]
        sections.append(markdown_table("Chamfer (cm) of the validation subjects, the demo's "
                                       "checkpoint:", rows, thresholds)[0])
        if args.leave_one_out:
            held_rows = []
            for subject in training:
                others = [s for s in training if s != subject]
                out = args.out / f"without_{subject}"
                train.run(train_caches=[results / "cache" / f"{s}.h5" for s in others],
                          val_caches=[results / "cache" / f"{s}.h5" for s in val],
                          held_out=data["test_subjects"],
                          normal=results / "train" / "normal_net" / "checkpoint.pt",
                          output=out / "checkpoint.pt", summary=out / "train.json",
                          params=stage_params(config, "train"))
                held_rows.append((subject, "held out",
                                  *sweep(config, out / "checkpoint.pt", subject, thresholds,
                                         tmp)))
            sections.append(markdown_table("Chamfer (cm), each training subject held out of "
                                           "training:", held_rows, thresholds)[0])
    text = "\n\n".join(sections)
    print(text)
    for doc in args.write:
        publish(doc, "hull_carve", text)


if __name__ == "__main__":
    main()

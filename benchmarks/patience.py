"""Choosing ``train.run.patience`` (early stopping) on validation curves only.

    .venv/bin/python benchmarks/patience.py                    # after `make demo` (and curves)
    .venv/bin/python benchmarks/patience.py --write docs/results.md

Reads the ``train.json`` of finished Pixel2ISDF runs that trained their whole budget
(``stopped_at`` null) under ``--results`` (default: every run under ``results/``: the demo's,
the learning curve's, the stand-in's). Each holds the validation subjects' selection metric at
every ``val_every`` steps; no test subject enters. For each patience P it replays the curve as
the trainer would (stop after P validations in a row that did not beat the best) and compares
the step kept with the full run's, the baseline of the same curve: how often it is the same
step, how much worse its validation metric is, and the share of the budget's steps trained.

The rule: the smallest P whose kept step is on average within 1 % of the full run's
validation metric (set after a first look at the replay: P = 3 loses 1.8 %, P = 4 0.4 %).
Part of the full run's edge is selection bias: the minimum over more noisy validations is
lower whether or not later steps are better.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from pipeline.results_doc import publish

TOLERANCE = 0.01
"""The largest mean relative increase of the kept step's validation metric the rule accepts."""


@dataclass(frozen=True)
class Curve:
    """One finished run: its name, budget, selection metric's mode and validations."""

    name: str
    steps: int
    mode: str
    values: list[tuple[int, float]]


def read_curves(root: Path) -> tuple[list[Curve], list[str]]:
    """The full-budget Pixel2ISDF runs under ``root``, and the names of those left out (why)."""
    curves, skipped = [], []
    for path in sorted(map(Path, glob.glob(str(root / "**" / "train.json"), recursive=True))):
        summary = json.loads(path.read_text())
        if summary.get("kind") != "pixel2isdf":
            continue
        name = str(path.parent.relative_to(root))
        selected = summary.get("selected", {})
        if selected.get("keep") != "best":
            skipped.append(f"{name} (keep: last)")
            continue
        if summary.get("stopped_at") is not None:
            skipped.append(f"{name} (stopped early at step {summary['stopped_at']})")
            continue
        key = selected["metric"]
        values = [(row["step"], row[key]) for row in summary["history"] if key in row]
        if len(values) < 3:
            skipped.append(f"{name} ({len(values)} validations)")
            continue
        curves.append(Curve(name, int(summary["steps"]), selected["mode"], values))
    return curves, skipped


def replay(curve: Curve, patience: int | None) -> tuple[int, float, int]:
    """(step kept, its metric, last step trained) of ``curve`` under ``patience`` (None: the
    whole budget), as ``pipeline.training.trainer`` decides them."""
    best: tuple[int, float] | None = None
    stale = 0
    for step, value in curve.values:
        better = best is None or (value < best[1] if curve.mode == "min" else value > best[1])
        if better:
            best, stale = (step, value), 0
        else:
            stale += 1
            if patience is not None and stale >= patience and step < curve.steps:
                return best[0], best[1], step
    return best[0], best[1], curve.steps


def table(curves: list[Curve], patiences: list[int]) -> tuple[str, int | None]:
    """The Markdown table over ``patiences`` and the one the rule picks (None: no P passes)."""
    rows = ["| patience | same step kept | metric vs full run: mean | max | steps trained |",
            "|---|---|---|---|---|"]
    chosen = None
    for patience in [None, *patiences]:
        same, rel, worse, share = 0, [], [], []
        for curve in curves:
            full_step, full_value, _ = replay(curve, None)
            step, value, last = replay(curve, patience)
            same += step == full_step
            sign = 1 if curve.mode == "min" else -1
            worse.append(sign * (value - full_value))
            rel.append(sign * (value - full_value) / abs(full_value))
            share.append(last / curve.steps)
        label = "full run (baseline)" if patience is None else str(patience)
        rows.append(f"| {label} | {same}/{len(curves)} | +{100 * statistics.mean(rel):.1f} % "
                    f"(+{statistics.mean(worse):.3f}) | +{100 * max(rel):.1f} % "
                    f"(+{max(worse):.3f}) | {100 * statistics.mean(share):.0f} % |")
        if patience is not None and chosen is None and statistics.mean(rel) <= TOLERANCE:
            chosen = patience
    return "\n".join(rows), chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="folder searched for train.json (default results/)")
    parser.add_argument("--patience", type=int, nargs="*", default=list(range(1, 9)))
    parser.add_argument("--write", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    curves, skipped = read_curves(args.results)
    if not curves:
        raise SystemExit(f"no finished full-budget Pixel2ISDF run under {args.results}")
    body, chosen = table(curves, args.patience)
    runs = "; ".join(f"{c.name} ({c.steps} steps, every {c.values[1][0] - c.values[0][0]})"
                     for c in curves)
    text = (f"Validation curves of {len(curves)} finished Pixel2ISDF runs (their validation "
            f"subjects only): {runs}."
            + (f" Left out: {'; '.join(skipped)}." if skipped else "")
            + "\n\nEach patience replayed on every curve beside the full run's choice. The "
            "metric columns: how much worse the kept step's validation metric is than the full "
            "run's (relative, and in the metric's units: cm for val/sdf_l1_near_cm).\n\n"
            + body + "\n\n"
            + (f"Rule (mean within {100 * TOLERANCE:.0f} % of the full run): patience "
               f"**{chosen}**." if chosen else
               f"No patience keeps the mean within {100 * TOLERANCE:.0f} % of the full run."))
    print(text)
    for doc in args.write:
        publish(doc, "patience", text)


if __name__ == "__main__":
    main()

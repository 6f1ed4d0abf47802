"""The body fit's seconds per subject beside an older commit's, with its quality: PVE and
silhouette IoU against the synthetic truth.

    .venv/bin/python benchmarks/fit_speed.py --baseline fd8200e                  # the demo
    .venv/bin/python benchmarks/fit_speed.py --baseline fd8200e --subjects s000 s003
    .venv/bin/python benchmarks/fit_speed.py --baseline fd8200e --write docs/results.md

Needs the preprocessing outputs of ``make demo`` (``--config``'s results). Each tree (this
one, and ``--baseline REV`` exported by ``git archive``) fits every subject in a child process
of its own code (``PYTHONSAFEPATH=1``, its folder first on ``PYTHONPATH``), one after the
other, with the config's ``fit`` section: the stage's own call (``fit_to_files``: the body
model, the inputs, the fit and its files), timed inside the child, so interpreter start and
imports are left out of both. Each fit is written under ``results/<dataset>/fit_speed/<tree>/``
and scored by this tree's ``pipeline.fit_quality.score_subject``: PVE (cm) against the truth
posed body, silhouette IoU against the truth naked body's, keypoint error (px) against the
truth keypoints. The issue's target (29): at most 0.5× the seconds, PVE and IoU within 2 %.
The baseline must read today's ``fit`` section (fd8200e, main before the fit's speed-up, does;
4ffb9cd predates settings the config now has).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.config import load_config, stage_params
from pipeline.fit_quality import score_subject
from pipeline.results_doc import export_commit, publish

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
from pathlib import Path
from pipeline.fit import fit_to_files
job = json.loads(sys.argv[1])
results, out = Path(job["results"]), Path(job["out"])
seconds = {}
for subject in job["subjects"]:
    start = time.perf_counter()
    fit_to_files(subject=subject, manifest=results / "manifest" / f"{subject}.json",
                 crops=results / "crop" / subject, masks=results / "mask" / subject,
                 keypoints=results / "keypoints" / subject, output=out / f"{subject}.npz",
                 report=out / f"{subject}.json", overlays=out / subject, params=job["params"])
    seconds[subject] = time.perf_counter() - start
print("SECONDS " + json.dumps(seconds))
"""


def fit_in(tree: Path, results: Path, out: Path, subjects: list[str],
           params: dict) -> dict[str, float]:
    """Fit ``subjects`` with ``tree``'s code in a child process; its seconds per subject."""
    env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree)}
    job = {"results": str(results.resolve()), "out": str(out.resolve()),
           "subjects": subjects, "params": params}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], env=env,
                          capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"the fit of {tree} failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("SECONDS "))
    return json.loads(line.removeprefix("SECONDS "))


def quality(fits: Path, crops: Path, truth: Path, subject: str) -> dict[str, float]:
    """Mean PVE (cm), silhouette IoU and truth keypoint error (px) of a subject's fit."""
    rows = score_subject(fits / f"{subject}.npz", crops, truth, subject)
    return {key: statistics.fmean(r[key] for r in rows)
            for key in ("pve_cm", "silhouette_iou_truth", "keypoint_error_truth_px")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--subjects", nargs="*", help="default: every subject of the config")
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose fit_speed section to rewrite")
    args = parser.parse_args()
    config = load_config(args.config)
    dataset = config["data"]["dataset"]
    results = Path(config["results"]) / dataset
    truth = Path(config["data"]["root"]) / dataset / "truth"
    subjects = args.subjects or list(config["data"]["subjects"])
    params = stage_params(config, "fit")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"now": REPO, f"baseline {args.baseline}": export_commit(REPO, args.baseline,
                                                                      Path(tmp))}
        for name, tree in trees.items():
            out = results / "fit_speed" / ("now" if name == "now" else "baseline")
            seconds = fit_in(tree, results, out, subjects, params)
            scores = [quality(out, results / "crop", truth, s) for s in subjects]
            rows[name] = {"seconds": statistics.fmean(seconds.values()),
                          **{k: statistics.fmean(q[k] for q in scores) for k in scores[0]}}
    base, now = rows[f"baseline {args.baseline}"], rows["now"]
    lines = [f"{len(subjects)} subjects ({', '.join(subjects)}) of {args.config}, "
             f"fit.threads {params['threads']}, {os.cpu_count()} CPU cores here, one tree "
             "after the other.", "",
             "| code | s per subject | PVE (cm) | silhouette IoU | keypoint error (px) |",
             "|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['seconds']:.1f} | {row['pve_cm']:.2f} | "
                     f"{row['silhouette_iou_truth']:.3f} | "
                     f"{row['keypoint_error_truth_px']:.2f} |")
    lines += ["", f"Ratio: {now['seconds'] / base['seconds']:.2f}× the seconds (target ≤ 0.5×); "
              f"PVE {100 * (now['pve_cm'] / base['pve_cm'] - 1):+.1f} %, IoU "
              f"{100 * (now['silhouette_iou_truth'] / base['silhouette_iou_truth'] - 1):+.1f} % "
              "(target within 2 %)."]
    text = "\n".join(lines)
    print(text)
    for doc in args.write:
        publish(doc, "fit_speed", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

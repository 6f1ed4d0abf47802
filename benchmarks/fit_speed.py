"""Seconds per action (8 views) of the body fit on 2 cores, medians over repeats.

    python benchmarks/fit_speed.py [--subject s000] [--results results/demo] [--repeats 3]

Needs the preprocessing outputs of ``make demo``. Times the default fit (Anny, calibrated
cameras, builtin silhouette term) of one subject (all its actions at once, as the stage runs),
and as the baseline in the same run the keypoints-only fit (``fit.silhouette: none``), which
shows what the silhouette term costs. Model loading and input reading are excluded.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "2"

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.bodymodel import make_body_model  # noqa: E402
from pipeline.fitting.inputs import load_subject  # noqa: E402
from pipeline.fitting.optimize import FitSettings, fit_subject  # noqa: E402
from pipeline.io import read_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subject", default="s000")
    parser.add_argument("--results", type=Path, default=Path("results/demo"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    results, subject = args.results, args.subject
    actions = sorted(read_json(results / "manifest" / f"{subject}.json")["actions"])
    inputs = load_subject(subject, actions, results / "crop" / subject,
                          results / "mask" / subject, results / "keypoints" / subject)
    n_views = sum(len(a.views) for a in inputs.actions) / len(actions)
    model = make_body_model("anny")
    rows = []
    for name, settings in (("default (keypoints + silhouette)", FitSettings()),
                           ("baseline: keypoints only", FitSettings(silhouette="none"))):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fit_subject(model, inputs, settings)
            times.append(time.perf_counter() - start)
        rows.append((name, float(np.median(times)) / len(actions)))
    print(f"subject {subject}: {len(actions)} actions x {n_views:.0f} views, 2 threads, "
          f"median of {args.repeats}")
    print("| fit | s per action |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

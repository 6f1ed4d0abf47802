"""Coarse-to-fine grid evaluation (models/grid_eval.py): queries and seconds at 256³ against
the dense grid (the baseline, same run), on an exact SDF of a human-sized union of capsules.

    .venv/bin/python benchmarks/grid_eval_speed.py [--resolution 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from models.grid_eval import evaluate_grid

# (a, b, radius) capsules of a star-posed 1.75 m body, metres, Z up
CAPSULES = [((0, 0, 0.95), (0, 0, 1.45), 0.16), ((0, 0, 1.55), (0, 0, 1.62), 0.11),
            ((0.1, 0, 0.9), (0.2, 0, 0.05), 0.07), ((-0.1, 0, 0.9), (-0.2, 0, 0.05), 0.07),
            ((0.2, 0, 1.42), (0.75, 0, 1.05), 0.05), ((-0.2, 0, 1.42), (-0.75, 0, 1.05), 0.05)]


def body_sdf(p: np.ndarray) -> np.ndarray:
    out = np.full(len(p), np.inf)
    for a, b, r in CAPSULES:
        a, b = np.asarray(a, float), np.asarray(b, float)
        t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
        out = np.minimum(out, np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1) - r)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    lo, hi = np.array([-0.95, -0.95, -0.05]), np.array([0.95, 0.95, 1.85])
    print("| grid | init | queries | × fewer than dense | seconds (analytic SDF) |")
    print("|---|---|---|---|---|")
    for init in (args.resolution, 64, 32):
        start = time.perf_counter()
        r = evaluate_grid(body_sdf, lo, hi, resolution=args.resolution, init_resolution=init)
        seconds = time.perf_counter() - start
        name = "dense (baseline)" if init == args.resolution else f"{init}³ → {args.resolution}³"
        print(f"| {args.resolution}³ | {name} | {r.queries:,} | "
              f"{r.dense_queries / r.queries:.1f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()

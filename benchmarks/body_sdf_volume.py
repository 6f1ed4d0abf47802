"""The body prior's signed-distance volume (``cache.body_sdf_resolution``): its error against
the exact distance near the fitted body's surface, the seconds to build it and its size, per
resolution; beside the exact libigl distance it replaces in the reconstruction's body band.

    .venv/bin/python benchmarks/body_sdf_volume.py                  # after the fit stage
    .venv/bin/python benchmarks/body_sdf_volume.py --fit results/demo/fit/s003.npz --res 64 128

Error: |trilinear − exact| at 20,000 points within ±5 cm of the surface (area-uniform
surface samples moved along a random direction), and the share of those whose sign differs
outside ±2 mm. Speed: building the volume (exact distances at R³ points) and reading 1 M
points from it (torch, CPU) against 1 M exact libigl distances.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from models.pixel2isdf.body_prior import BodySDF
from pipeline.cache import load_fit
from pipeline.sdf import sdf_function, sdf_volume, surface_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", type=Path, default=Path("results/demo/fit/s003.npz"))
    parser.add_argument("--res", type=int, nargs="+", default=[64, 96, 128, 160])
    parser.add_argument("--padding", type=float, default=0.15)
    args = parser.parse_args()
    torch.set_num_threads(2)
    fit = load_fit(args.fit)
    v, f = fit["canonical_vertices"].astype(np.float64), fit["faces"].astype(np.int64)
    rng = np.random.default_rng(0)
    base, _ = surface_samples(v, f, 20_000, rng)
    direction = rng.standard_normal(base.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    points = base + direction * rng.uniform(-0.05, 0.05, (len(base), 1))
    exact_fn = sdf_function(v, f, name=str(args.fit))
    exact = exact_fn(points).astype(np.float64)
    many = torch.from_numpy(rng.uniform(v.min(0), v.max(0), (1_000_000, 3)))[None].float()
    t0 = time.perf_counter()
    exact_fn(many[0].numpy())
    exact_s = time.perf_counter() - t0
    print(f"fitted body {args.fit}: {len(v)} vertices, {len(f)} faces; padding "
          f"{args.padding}\nexact libigl distance, 1 M points: {exact_s:.2f} s\n")
    print("| R | voxel mm | mean err mm | p99 err mm | max err mm | wrong sign (>2 mm) | "
          "build s | MiB | read 1 M pts s |\n|---|---|---|---|---|---|---|---|---|")
    for res in args.res:
        t0 = time.perf_counter()
        volume = sdf_volume(v, f, res, args.padding)
        build_s = time.perf_counter() - t0
        body = BodySDF(torch.from_numpy(volume["values"])[None, None],
                       torch.from_numpy(volume["lo"]).float()[None],
                       torch.from_numpy(volume["hi"]).float()[None])
        got = body(torch.from_numpy(points).float()[None])[0].double().numpy()
        err = np.abs(got - exact)
        decided = np.abs(exact) > 0.002
        wrong = float(np.mean(np.sign(got[decided]) != np.sign(exact[decided])))
        t0 = time.perf_counter()
        with torch.no_grad():
            body(many)
        read_s = time.perf_counter() - t0
        voxel = float(volume["hi"][0] - volume["lo"][0]) / (res - 1)
        print(f"| {res} | {voxel * 1000:.1f} | {err.mean() * 1000:.2f} | "
              f"{np.quantile(err, 0.99) * 1000:.2f} | {err.max() * 1000:.2f} | {wrong:.4f} | "
              f"{build_s:.1f} | {volume['values'].nbytes / 2**20:.1f} | {read_s:.3f} |")


if __name__ == "__main__":
    main()

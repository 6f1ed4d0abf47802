"""Samples per second of Pixel2ISDFDataset (K views, N SDF points) over a training cache.

    python benchmarks/cache_speed.py [--cache results/demo/cache/s000.h5 ...] [--samples 400]
        [--n-views 4] [--n-points 10000] [--batch-size 4] [--workers 0 2] [--size 512]
        [--compression lzf none]

Without ``--cache`` a synthetic subject of realistic size is written first by the real cache
stage (8 views × 4 actions of 512² crops — smooth textured person-like blobs with soft alpha —,
200k SDF points around a sphere), once per ``--compression``. Rows, per cache file, all in
the same run: baselines reading only K image + alpha chunks per sample (h5py, one process;
the I/O and decompression floor) and the same from in-memory numpy arrays with the float
conversion (no I/O), then the DataLoader over the dataset for each worker count, with float
images and with ``uint8_images=True`` (conversion left to the GPU). Timing starts at the
first batch, so worker start-up is excluded; the figures are steady-state samples per second.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import trimesh
from PIL import Image
from torch.utils.data import DataLoader

from models.cache_io import open_cache
from models.data import Pixel2ISDFDataset, _to_tensors
from pipeline.cache import build_cache
from pipeline.meshio import write_ply


def synthetic_subject(root: Path, size: int, n_actions: int, n_views: int) -> dict:
    """Inputs of a cache build: fit npz, crops, masks, truth meshes (no normal maps)."""
    rng = np.random.default_rng(0)
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.4)
    body = trimesh.creation.icosphere(subdivisions=5, radius=0.35)  # ~10k vertices
    actions = [f"act{a:02d}" for a in range(n_actions)]
    views = [f"cam{v}" for v in range(n_views)]
    av = (n_actions, n_views)
    yy, xx = np.mgrid[:size, :size] / size
    for a, action in enumerate(actions):
        shift = np.array([0.1 * a, 0.0, 1.0])
        write_ply(root / "truth" / action / "clothed.ply", sphere.vertices + shift, sphere.faces)
        records = {}
        for view in views:
            radius = np.hypot((xx - 0.5) / 0.2, (yy - 0.5) / 0.45)
            alpha = np.clip((1.0 - radius) * 20, 0, 1)
            coarse = rng.random((8, 8, 3))
            texture = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize(
                (size, size), Image.Resampling.BICUBIC), dtype=np.float64)
            texture += rng.normal(0, 6, texture.shape)
            rgb = np.clip(texture, 0, 255).astype(np.uint8)
            for folder, pixels in (("crop", rgb), ("mask", (alpha * 255).astype(np.uint8))):
                (root / folder / action).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / folder / action / f"{view}.png")
            records[view] = {"status": "ok", "crop": {"x0": 0, "y0": 0, "size": size,
                                                      "out_size": size}}
        (root / "crop" / action / "crop.json").write_text(json.dumps({"views": records}))
    write_ply(root / "truth" / "canonical_clothed.ply", sphere.vertices, sphere.faces)
    n_body = len(body.vertices)
    fit = {"schema": np.array("pixel2isdf.fit/1"), "body_model": np.array("anny"),
           "camera_model": np.array("calibrated"), "crop_size": np.array(size),
           "actions": np.array(actions), "views": np.array([views] * n_actions),
           "view_valid": np.ones(av, bool), "view_ok": np.ones(av, bool),
           "posed_vertices": np.repeat(body.vertices[None], n_actions, 0).astype("f4"),
           "bone_transforms": np.broadcast_to(np.eye(4), (n_actions, 104, 4, 4)).astype("f4"),
           "canonical_vertices": body.vertices.astype("f4"), "faces": body.faces,
           "skinning_weights": np.full((n_body, 104), 1 / 104, "f4"),
           "camera_K": np.broadcast_to(np.eye(3), (*av, 3, 3)).astype("f4"),
           "camera_R": np.broadcast_to(np.eye(3), (*av, 3, 3)).astype("f4"),
           "camera_t": np.zeros((*av, 3), "f4")}
    np.savez(root / "fit.npz", **fit)
    return {"fit": root / "fit.npz", "crops": root / "crop", "masks": root / "mask",
            "truth": root / "truth"}


def rate(fn, n: int) -> float:
    """Calls of ``fn`` per second over ``n`` calls (after one warm-up call)."""
    fn(0)
    start = time.perf_counter()
    for i in range(n):
        fn(i + 1)
    return n / (time.perf_counter() - start)


def loader_rate(data: Pixel2ISDFDataset, workers: int, batch: int) -> float:
    """Steady-state samples per second through a DataLoader (from the first batch on)."""
    loader = DataLoader(data, batch_size=batch, num_workers=workers, shuffle=False)
    batches = iter(loader)
    next(batches)
    start = time.perf_counter()
    count = sum(len(b["sdf"]) for b in batches)
    return count / (time.perf_counter() - start)


def measure(path: Path, args: argparse.Namespace) -> list[tuple[str, float]]:
    """The table rows of one cache file: the baselines, then the DataLoader runs."""
    k, n = args.n_views, args.samples
    with open_cache(path) as h5:
        views = len(h5["images"])
        print(f"cache {path.name}: {views} views of {h5.attrs['crop_size']}², "
              f"{len(h5['sdf/values'])} SDF points, {h5['images'].compression or 'no'} "
              f"compression, {path.stat().st_size / 1e6:.1f} MB")

        def read_only(i: int) -> None:
            for r in (np.arange(k) + i * k) % views:
                h5["images"][r], h5["alphas"][r]

        raw = rate(read_only, max(50, n // 4))
        images, alphas = h5["images"][:k], h5["alphas"][:k]
    in_memory = rate(lambda i: _to_tensors(images, alphas, False), max(50, n // 4))
    rows = [("baseline: h5 read of K image+alpha chunks, 1 process", raw),
            ("baseline: in-memory uint8 → float tensors, 1 process", in_memory)]
    for uint8, memory in ((False, False), (True, False), (False, True), (True, True)):
        data = Pixel2ISDFDataset([path], n_views=k, n_points=args.n_points,
                                 samples_per_subject=n + args.batch_size, uint8_images=uint8,
                                 in_memory=memory)
        for workers in args.workers:
            label = (f"Pixel2ISDFDataset, {'uint8' if uint8 else 'float'} images"
                     f"{', in_memory' if memory else ''}, num_workers={workers}")
            rows.append((label, loader_rate(data, workers, args.batch_size)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, nargs="+",
                        help="existing cache files (default: synthetic ones)")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--n-views", type=int, default=4)
    parser.add_argument("--n-points", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the main process (workers always use 1)")
    parser.add_argument("--size", type=int, default=512, help="synthetic crop side")
    parser.add_argument("--compression", nargs="+", default=["lzf", "none"],
                        choices=["lzf", "gzip", "none"], help="synthetic caches to compare")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = args.cache or []
        if not paths:
            inputs = synthetic_subject(Path(tmp), args.size, 4, 8)
            for compression in args.compression:
                path = Path(tmp) / "cache" / f"synthetic_{compression}.h5"
                start = time.perf_counter()
                build_cache(subject="synthetic", output=path, **inputs,
                            params={"seed": 0, "compression": compression})
                print(f"built {path.name} (32 views of {args.size}², 200k SDF points) in "
                      f"{time.perf_counter() - start:.1f} s")
                paths.append(path)
        for path in paths:
            table += [(path.name, label, value) for label, value in measure(path, args)]
    print(f"\nK={args.n_views} views, {args.n_points} points per sample, {args.samples} "
          f"samples, batch {args.batch_size}, main-process torch threads {args.threads}")
    widths = [max(len(r[i]) for r in table) for i in (0, 1)]
    print(f"{'cache':<{widths[0]}}  {'reader':<{widths[1]}}  samples/s")
    for name, label, value in table:
        print(f"{name:<{widths[0]}}  {label:<{widths[1]}}  {value:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

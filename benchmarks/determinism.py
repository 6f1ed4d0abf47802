"""Across machines: which stage's outputs change when only the CPU or the thread count does.

    .venv/bin/python benchmarks/determinism.py --write docs/results.md
    .venv/bin/python benchmarks/determinism.py --variants threads1 --keep results/determinism

Runs one small synthetic chain (2 subjects, 2 actions × 4 views, a short training) through
Snakemake once per variant, each in its own folder, with the same config and seed:

- ``base``: the config's thread counts, this machine's fastest kernels;
- ``threads1``: every stage on one thread (OMP, MKL, torch, the rules' ``threads``);
- ``threads4``: every stage on four threads (OpenMP/MKL/torch oversubscribe two cores);
- ``isa``: another CPU, simulated: torch's kernels without SIMD (``ATEN_CPU_CAPABILITY=default``),
  MKL restricted to SSE4.2 (``MKL_ENABLE_INSTRUCTIONS``) and oneDNN to SSE4.1
  (``ONEDNN_MAX_CPU_ISA``).

Then compares every variant's files with ``base`` stage by stage, in the pipeline's order:
identical bytes, or else the largest difference of their numbers (images, arrays, HDF5
datasets, checkpoint tensors, JSON numbers other than timings), so that the first stage that
differs, and by how much, can be read off. A later stage differs also because its inputs
do: the table says so. With ``--write`` the table goes into section ``determinism``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import yaml
from PIL import Image

from pipeline.results_doc import publish

VARIANTS: dict[str, dict[str, str]] = {
    "base": {},
    "threads1": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "THREADS": "1"},
    "threads4": {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4", "THREADS": "4"},
    "isa": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
            "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
"""Environment of each variant (``THREADS``: the rules' thread counts, set in the config)."""

STAGES: list[tuple[str, str]] = [
    ("synthesize", "data/{ds}"),
    ("detect", "results/{ds}/crop"),
    ("mask", "results/{ds}/mask"),
    ("keypoints", "results/{ds}/keypoints"),
    ("fit", "results/{ds}/fit"),
    ("cache", "results/{ds}/cache"),
    ("train_normal", "results/{ds}/train/normal_net/checkpoint.pt"),
    ("train", "results/{ds}/train/pixel2isdf/checkpoint.pt"),
    ("reconstruct", "results/{ds}/recon/pixel2isdf"),
    ("evaluate", "results/{ds}/eval/pixel2isdf"),
]
"""Each stage's outputs compared, in the pipeline's order."""

SKIP_KEYS = ("second", "time", "wall", "date", "path", "log", "host", "checksum", "sha256",
             "threads", "config_hash")
"""JSON keys whose numbers are not results (timings, the run's own thread count)."""


def chain_config(threads: int | None) -> dict[str, Any]:
    """The small chain every variant runs (``threads``: every stage's, or the config's)."""
    run = {"steps": 40, "batch_size": 1, "lr": 0.001, "checkpoint_every": 40, "log_every": 10,
           "val_every": 10, "val_batches": 2, "image_every": 40, "device": "cpu"}
    config: dict[str, Any] = {
        "seed": 7, "results": "results",
        "data": {"root": "data", "dataset": "det", "subjects": ["d000", "d001"],
                 "val_subjects": ["d001"], "test_subjects": []},
        "synthesize": {"enabled": True, "n_actions": 2, "n_views": 4, "width": 480,
                       "height": 270},
        "stop_after": "evaluate",
        "train_normal": {"model": {"ngf": 8, "n_downsample": 2, "n_blocks": 1,
                                   "input_size": 64},
                         "run": {**run, "batch_size": 2}},
        "train": {"model": {"input": "normal", "input_size": 64, "feature_channels": 8,
                            "geometry_width": 0.125, "fusion_hidden": 16, "latent_dim": 8,
                            "volume_resolution": 32, "diffusion_width": 0.25,
                            "head_hidden": 32, "head_layers": 2, "head_skip": None,
                            "bn_momentum": 0.1, "prior": "body"},
                  "n_views": 2, "n_points": 1024, "run": run},
        "reconstruct": {"subjects": "all", "resolution": 64, "init_resolution": 16},
    }
    if threads is not None:
        for section in ("fit", "cache", "evaluate", "reconstruct"):
            config.setdefault(section, {})["threads"] = threads
        for section in ("train", "train_normal"):
            config[section]["run"]["threads"] = threads
    return config


def run_variant(name: str, folder: Path, cores: int) -> float:
    """Run the chain in ``folder`` with the variant's environment; its wall time (s)."""
    env = {**os.environ, **VARIANTS[name]}
    threads = env.pop("THREADS", None) if "THREADS" in VARIANTS[name] else None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(
        yaml.safe_dump(chain_config(int(threads) if threads else None)), encoding="utf-8")
    repo = Path(__file__).resolve().parents[1]
    snakemake = Path(sys.executable).with_name("snakemake")
    env["PATH"] = f"{snakemake.parent}{os.pathsep}{env.get('PATH', '')}"
    start = time.perf_counter()
    with open(folder / "snakemake.log", "w", encoding="utf-8") as log:
        subprocess.run([str(snakemake), "--snakefile", str(repo / "Snakefile"),
                        "--directory", str(folder),
                        "--configfile", str((folder / "config.yaml").resolve()),
                        "--cores", str(cores), "--nolock", "--", "all"],
                       check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def _numbers(value: Any, key: str = "") -> list[float]:
    if any(s in key.lower() for s in SKIP_KEYS):
        return []
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [x for k, v in sorted(value.items()) for x in _numbers(v, str(k))]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v, key)]
    return []


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """The numbers a file holds, by name (empty for a file of no known kind)."""
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        return {"pixels": np.asarray(Image.open(path), dtype=np.float64)}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k].astype(np.float64) for k in data.files
                    if np.issubdtype(data[k].dtype, np.number)}
    if suffix == ".h5":
        out: dict[str, np.ndarray] = {}
        with h5py.File(path, "r") as handle:
            def visit(name: str, item: Any) -> None:
                if isinstance(item, h5py.Dataset) and np.issubdtype(item.dtype, np.number):
                    out[name] = np.asarray(item[()], dtype=np.float64)
            handle.visititems(visit)
        return out
    if suffix == ".pt":
        data = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.double().numpy() for k, v in data.get("model", {}).items()
                if torch.is_tensor(v) and v.is_floating_point()}
    if suffix == ".json":
        return {"numbers": np.asarray(_numbers(json.loads(path.read_text())), np.float64)}
    if suffix == ".ply":
        import trimesh
        mesh = trimesh.load(path, process=False)
        return {"vertices": np.asarray(mesh.vertices, np.float64)}
    return {}


def compare(a: Path, b: Path) -> tuple[str, float]:
    """``identical`` (bytes), ``same numbers`` (bytes differ, e.g. a recorded thread count,
    every number equal), ``differs`` (max |difference| of the numbers, or inf when shapes or
    names differ) or ``missing``, for two files or folders."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()) if a.is_dir() \
        else [Path("")]
    if not b.exists() or not a.exists():
        return "missing", float("nan")
    worst, same = 0.0, True
    for rel in files_a:
        fa, fb = (a / rel, b / rel) if a.is_dir() else (a, b)
        if rel.suffix == ".tsv" or rel.name.endswith(".log"):
            continue
        if not fb.is_file():
            return "differs", float("inf")
        if hashlib.sha256(fa.read_bytes()).digest() == hashlib.sha256(fb.read_bytes()).digest():
            continue
        same = False
        xa, xb = _arrays(fa), _arrays(fb)
        for key in xa:
            if key not in xb or xa[key].shape != xb[key].shape:
                worst = float("inf")
                continue
            if xa[key].size:
                worst = max(worst, float(np.nanmax(np.abs(xa[key] - xb[key]))))
    if same:
        return "identical", 0.0
    return ("same numbers", 0.0) if worst == 0.0 else ("differs", worst)


def table(root: Path, names: list[str], walls: dict[str, float]) -> str:
    """Markdown: one row per stage, one column per variant against ``base``."""
    lines = ["| stage | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    first: dict[str, str | None] = {n: None for n in names}
    for stage, pattern in STAGES:
        cells = []
        for name in names:
            rel = pattern.format(ds="det")
            verdict, worst = compare(root / "base" / rel, root / name / rel)
            if verdict in ("identical", "same numbers"):
                cells.append(verdict)
                continue
            if first[name] is None:
                first[name] = stage
                cells.append(f"**differs first** (max {worst:.3g})")
            else:
                cells.append(f"differs (max {worst:.3g})")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    metric = []
    for name in ["base", *names]:
        evals = sorted((root / name / "results/det/eval/pixel2isdf").glob("d*.json"))
        chamfer = {p.stem: json.loads(p.read_text())["metrics"]["model"]["chamfer_cm"]
                   for p in evals if not p.name.endswith(".selfcheck.json")}
        wall = f"{walls[name]:.0f}" if name in walls else "— (an earlier run, reused)"
        metric.append(f"| {name} | {wall} | "
                      + ", ".join(f"{k} {v:.4f}" for k, v in sorted(chamfer.items())) + " |")
    return "\n".join([
        "Each variant's stage outputs against `base` (same config and seed; a small chain: 2 "
        "subjects, 2 actions × 4 views, 40 training steps). 'max' is the largest absolute "
        "difference of the files' numbers (pixel values, fit and cache arrays, network "
        "weights, mesh vertex coordinates in metres, JSON numbers other than timings); a "
        "stage after the first that differs also has different inputs.", "", *lines, "",
        "| variant | wall s | Chamfer (cm) per subject |", "|---|---|---|", *metric])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["threads1", "isa"],
                        choices=[v for v in VARIANTS if v != "base"])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None,
                        help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--write", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="determinism-"))
    walls = {}
    try:
        for name in ["base", *args.variants]:
            if not (root / name / "results/det/eval/pixel2isdf/metrics.csv").is_file():
                print(f"running {name} in {root / name}", flush=True)
                walls[name] = run_variant(name, root / name, args.cores)
        text = table(root, args.variants, walls)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(text)
    for doc in args.write:
        publish(doc, "determinism", text)


if __name__ == "__main__":
    main()

"""The given-checkpoint check at Snakefile parse: time and memory before and after sidecars.

    .venv/bin/python benchmarks/checkpoint_parse.py --size-mb 200
    .venv/bin/python benchmarks/checkpoint_parse.py --size-mb 500 --write docs/results.md

Every Snakefile parse checks a checkpoint given by path (``train.checkpoint``,
pipeline/training/given.py), and on a cluster every job parses again. This writes a
checkpoint of ``--size-mb`` MB in a temporary folder, with the trainer's payload (network
weights, Adam state of twice their size, RNG states, model config, ...), then runs
``check_given_checkpoints`` on a config giving it, each time in a fresh Python process, in
three ways:

* ``before``: the check as it was before the sidecars, ``torch.load`` of the whole file;
* ``no sidecar``: the sidecar removed (a checkpoint of an older version, or copied without
  it): the header read from the checkpoint memory-mapped, with a warning;
* ``sidecar``: ``<checkpoint>.meta.json`` read and the checkpoint's fingerprint (size, sha256
  of its first and last MiB) compared.

Each child reports the check's wall time and its peak RSS (``VmHWM`` of /proc/self/status;
``ru_maxrss`` would not do: Linux keeps it across ``exec``, so a child reports at least this
parent's peak). The peak includes the interpreter and the pipeline's imports (the
``imports only`` row), and torch in the two rows that read the checkpoint itself: the parse
imports no torch (issue 29), the read does, and the child imports it with the others, so
that ``wall s`` is the check's own. ``wall s`` is with
the checkpoint in the page cache (just written); ``evicted`` drops it from the page cache
first (``posix_fadvise(DONTNEED)``), as for a job starting on another node. Median of
``--repeats`` runs; peak RSS the largest.
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
from typing import Any

import torch

from models.cache_io import SCHEMA_VERSION
from pipeline.config import validate_config
from pipeline.results_doc import publish
from pipeline.training.checkpoint import rng_state, save_checkpoint, sidecar_path

REPO = Path(__file__).resolve().parents[1]

# The child: imports, then the check, timed; prints one JSON line. argv: mode, config JSON.
CHILD = """
import json, resource, sys, time
def peak_mb():
    try:  # VmHWM: this process's own peak (ru_maxrss keeps the parent's across exec on Linux)
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
mode, config = sys.argv[1], json.loads(sys.argv[2])
t0 = time.perf_counter()
if mode in ("before", "no sidecar"):  # these read the checkpoint, which imports torch
    import torch
from pipeline.training import given
from pipeline.training.checkpoint import load_checkpoint
imports = time.perf_counter() - t0
rss_imports = peak_mb()
if mode == "before":  # the check before sidecars: the whole checkpoint loaded
    given.checkpoint_header = lambda path, kind: load_checkpoint(path, kind=kind)
t1 = time.perf_counter()
if mode != "imports":
    given.check_given_checkpoints(config)
print(json.dumps({"imports_s": imports, "rss_imports_mb": rss_imports,
                  "check_s": time.perf_counter() - t1,
                  "rss_mb": peak_mb()}))
"""

MODES = {
    "imports": "imports only (python, pipeline; no torch)",
    "before": "before: `torch.load` of the whole checkpoint",
    "no sidecar": "after, no sidecar: header read memory-mapped (warns)",
    "sidecar": "after, sidecar: `<checkpoint>.meta.json` + fingerprint",
}


def make_checkpoint(path: Path, size_mb: int, model: dict[str, Any]) -> None:
    """A pixel2isdf checkpoint of about ``size_mb`` MB (in 12 MiB steps) as the trainer
    writes it: weights are a third, Adam's two moments the rest; ``model`` is its model
    config."""
    n = max(1, size_mb * (1 << 20) // 3 // 4 // (1 << 20))  # 4 MiB float32 tensors
    params = [torch.nn.Parameter(torch.randn(1 << 20)) for _ in range(n)]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    save_checkpoint(path, {
        "kind": "pixel2isdf", "step": 1,
        "model": {f"net.layer{i}.weight": p.detach() for i, p in enumerate(params)},
        "selection": {"keep": "last", "step": 1}, "optimizer": optimizer.state_dict(),
        "scaler": {}, "rng": rng_state(), "model_config": json.dumps({"model": model}),
        "config_hash": "benchmark", "cache_schema": SCHEMA_VERSION, "world_size": 1,
        "history": "[]"})


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (clean pages only; no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_child(mode: str, config: dict[str, Any]) -> dict[str, float]:
    """One fresh process: the check in ``mode``; its timings and peak RSS."""
    out = subprocess.run([sys.executable, "-c", CHILD, mode, json.dumps(config)], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(path: Path, config: dict[str, Any], repeats: int) -> dict[str, dict[str, float]]:
    """Median wall (warm and evicted) and largest peak RSS of each mode."""
    side = sidecar_path(path)
    aside = side.with_name(side.name + ".aside")
    rows: dict[str, dict[str, float]] = {}
    for mode in MODES:
        if mode == "no sidecar":
            side.rename(aside)
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        try:
            for _ in range(repeats):
                for cold in (False, True):
                    if cold:
                        evict(path)
                    runs[cold].append(run_child(mode, config))
        finally:
            if aside.exists():
                aside.rename(side)
        key = "imports_s" if mode == "imports" else "check_s"
        rows[mode] = {
            "warm_s": statistics.median(r[key] for r in runs[False]),
            "cold_s": statistics.median(r[key] for r in runs[True]),
            "rss_mb": max(r["rss_imports_mb" if mode == "imports" else "rss_mb"]
                          for r in runs[False] + runs[True])}
        print(mode, {k: round(v, 3) for k, v in rows[mode].items()}, flush=True)
    return rows


def table(rows: dict[str, dict[str, float]], size_mb: float, repeats: int) -> str:
    """The Markdown table and the sentence saying what it measured."""
    lines = ["| check | wall s | wall s, file evicted | peak RSS MB |", "|---|---|---|---|"]
    for mode, label in MODES.items():
        r = rows[mode]
        lines.append(f"| {label} | {r['warm_s']:.3f} | {r['cold_s']:.3f} | {r['rss_mb']:.0f} |")
    return "\n".join([
        f"The given-checkpoint check of one Snakefile parse (`check_given_checkpoints`, "
        f"pipeline/training/given.py) on a {size_mb:.0f} MB pixel2isdf checkpoint, each run in "
        "a fresh process (median of "
        f"{repeats}). Wall: the check alone (the imports row: the imports); peak RSS: the "
        "whole process, imports included. `file evicted`: the checkpoint dropped from the "
        "page cache first, as on a node that has not read it.", "", *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500,
                        help="the checkpoint's size (weights a third, Adam state the rest)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the temporary checkpoint goes (default: the system's)")
    parser.add_argument("--write", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    model = validate_config({})["train"]["model"]
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="checkpoint_parse.") as tmp:
        path = Path(tmp) / "checkpoint.pt"
        make_checkpoint(path, args.size_mb, model)
        size_mb = path.stat().st_size / 1e6
        print(f"{path}: {size_mb:.0f} MB; sidecar {sidecar_path(path).stat().st_size} bytes",
              flush=True)
        config = validate_config({"train": {"model": model, "checkpoint": str(path)}})
        rows = measure(path, config, args.repeats)
    body = table(rows, size_mb, args.repeats)
    print(body)
    for doc in args.write:
        publish(doc, "checkpoint_parse", body)


if __name__ == "__main__":
    main()

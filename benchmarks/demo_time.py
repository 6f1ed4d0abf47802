"""The main job's wall time beside an older commit's: the demo from a fresh tree, both run
here one after the other, with their job seconds and start-up share per stage.

    .venv/bin/python benchmarks/demo_time.py --baseline fd8200e
    .venv/bin/python benchmarks/demo_time.py --baseline fd8200e --write docs/results.md

Each tree (``HEAD`` and ``--baseline REV``, exported by ``git archive``: no data, no results,
as a fresh clone has) runs ``snakemake --cores N`` with this environment's interpreter, the
tree's own ``config.yaml`` and code; the wall time of that command is the figure (``make
demo`` adds the environment's setup, the same for both, and the HTML report). Then
``benchmarks/stage_costs.py``'s table of each run: job seconds per stage and, where the jobs
log it (this code does, ``pipeline.progress.log_startup``), the share of a job spent before
its first photo, step or subject. Issue 29's target: at most 0.55× the wall time.
About 2 × 15-20 min on 2 cores; ``--keep`` leaves the trees under ``--where``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.config import load_config
from pipeline.results_doc import export_commit, publish

REPO = Path(__file__).resolve().parents[1]


def run_demo(tree: Path, cores: int) -> float:
    """``snakemake --cores N`` in ``tree`` (the rules' ``python`` is this interpreter);
    its wall seconds."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    with open(tree / "demo_time.log", "w") as log:
        done = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "--cores",
                               str(cores)], cwd=tree, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the demo in {tree} failed: see {tree / 'demo_time.log'}")
    return seconds


def costs(tree: Path) -> str:
    """stage_costs.py's table of the run in ``tree``."""
    spec = importlib.util.spec_from_file_location("stage_costs",
                                                  REPO / "benchmarks" / "stage_costs.py")
    stage_costs = importlib.util.module_from_spec(spec)
    sys.modules["stage_costs"] = stage_costs  # its dataclasses look their module up there
    spec.loader.exec_module(stage_costs)
    config = load_config(tree / "config.yaml")
    config["results"] = str(tree / config["results"])
    config["data"]["root"] = str(tree / config["data"]["root"])
    return stage_costs.stage_table(config, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--where", type=Path, default=None,
                        help="folder for the two trees (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the trees")
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose demo_time section to rewrite")
    args = parser.parse_args()
    where = args.where or Path(tempfile.mkdtemp(prefix="demo_time-"))
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          check=True, capture_output=True, text=True).stdout.strip()
    trees = {f"now ({head})": export_commit(REPO, "HEAD", where / "now"),
             f"baseline ({args.baseline})": export_commit(REPO, args.baseline, where / "baseline")}
    walls = {}
    for name, tree in trees.items():
        print(f"running the demo of {name} in {tree} ...", flush=True)
        walls[name] = run_demo(tree, args.cores)
        print(f"  {walls[name]:.0f} s", flush=True)
    now, base = walls.values()
    lines = [f"`snakemake --cores {args.cores}` of the demo (config.yaml) in a fresh tree of "
             f"each commit, one after the other, {os.cpu_count()} CPU cores here; the "
             "environment's setup, the same for both, is not included.", "",
             "| code | wall (s) | wall (min) |", "|---|---|---|"]
    lines += [f"| {name} | {s:.0f} | {s / 60:.1f} |" for name, s in walls.items()]
    lines += ["", f"Ratio: {now / base:.2f}× the wall time (target ≤ 0.55×)."]
    for name, tree in trees.items():
        lines += ["", f"Job seconds per stage, {name}:", "", costs(tree)]
    text = "\n".join(lines)
    print(text)
    for doc in args.write:
        publish(doc, "demo_time", text)
    if not args.keep and args.where is None:
        shutil.rmtree(where, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

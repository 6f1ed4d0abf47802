"""Planning: the wall time of a dry run and the heavy packages the Snakefile's parse imports.

    .venv/bin/python benchmarks/parse_time.py                     # the demo (config.yaml), here
    .venv/bin/python benchmarks/parse_time.py --baseline 74cdd72  # beside an older commit
    .venv/bin/python benchmarks/parse_time.py --repeats 5 --write docs/results.md

Every dry run, every job on a cluster and every ``snakemake`` call of the test suite parses
the Snakefile (issue 29, "planning that imports nothing heavy"). This times
``snakemake -n --nolock --cores 1`` in ``--directory`` (default: this repository, with its
``results/``), each run a fresh process, the rows one after the other ``--repeats`` times:

* ``now``: this working tree's Snakefile;
* ``--baseline REV``: the Snakefile and code of commit ``REV`` (``git archive`` into a
  temporary folder), on the same work folder and config;
* ``old imports first``: this tree, with what the parse imported before issue 29 imported
  first (``OLD_IMPORTS``: torch, h5py and the networks): the cost removed, without git.

The children run with ``PYTHONSAFEPATH=1``, so each imports the ``pipeline`` and ``models`` of
its own Snakefile's folder. While a child parses, a watcher (an import hook) notes each
package of ``HEAVY`` first imported by the workflow's own code (its Snakefile, rules/ or a
module of its tree on the stack), with the line that imported it; Snakemake's own imports (it
imports PIL and pandas itself) are not the workflow's. Then the import lines of
rules/common.smk run in a fresh interpreter without Snakemake, with the parse's checks of the
config (``parse_imports``; tests/test_parse.py asserts the same). Last, ``python -c "import
torch"`` and ``python -c pass`` for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.results_doc import export_commit, publish

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "trimesh", "igl", "scipy", "PIL", "anny", "h5py", "mediapipe",
         "cv2", "skimage", "sklearn", "matplotlib", "smplx", "mmcv", "mmdet", "spconv")
"""Top-level packages the parse must not import (each costs from tens of ms to seconds)."""
LIGHT_MODELS = ("models", "models.errors", "models.config", "models.lazy", "models.cache_io",
                "models.pifu", "models.pifu.config", "models.pixel2isdf",
                "models.pixel2isdf.config")
"""The ``models`` modules the parse may import: the error type, the config dataclasses a given
checkpoint is checked against and the cache schema version (no torch, no h5py)."""
OLD_IMPORTS = ("torch", "h5py", "models.pifu.model", "models.pixel2isdf.model",
               "models.pixel2isdf.normal_net")
"""What the parse imported before issue 29 (through pipeline/training/given.py)."""

# Runs snakemake (argv: its arguments) watching the first imports made by the workflow's code
# (a frame of $PARSE_WATCH_TREE outside site-packages on the stack). Writes to $PARSE_WATCH_OUT
# {"heavy": {package of $PARSE_WATCH_HEAVY: "Snakefile:21 > ... > importing line"}, "watched":
# how many imports by the workflow it saw}. $PARSE_WATCH_PRELOAD: modules imported first,
# unwatched.
WATCH = r"""
import atexit, json, os, sys
for name in json.loads(os.environ.get("PARSE_WATCH_PRELOAD", "[]")):
    __import__(name)
heavy = set(json.loads(os.environ["PARSE_WATCH_HEAVY"]))
tree, found, seen = os.environ["PARSE_WATCH_TREE"], {}, []
def ours():
    lines, frame = [], sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(tree + os.sep) and "site-packages" not in name:
            lines.append(f"{os.path.relpath(name, tree)}:{frame.f_lineno}")
        frame = frame.f_back
    return lines[::-1]
class Watch:
    def find_spec(self, name, path=None, target=None):
        lines = ours()
        if lines:
            seen.append(name)
            if name in heavy and name not in found:
                found[name] = " > ".join(lines)
        return None
sys.meta_path.insert(0, Watch())
def report():
    with open(os.environ["PARSE_WATCH_OUT"], "w") as fh:
        json.dump({"heavy": found, "watched": len(seen)}, fh)
atexit.register(report)
from snakemake.cli import main
sys.argv = ["snakemake", *sys.argv[1:]]
main()
"""

# The import lines of rules/common.smk (argv[1]), then the parse's checks of the config files
# argv[2:] (validation, split files, layout, registration, splits, populations, given
# checkpoints); stdin: HEAVY; prints {"imports_s", "heavy", "models"}.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
exec(compile(sys.argv[1], "rules/common.smk", "exec"))
imports_s = time.perf_counter() - t0
if sys.argv[2:]:
    from pipeline.config import load_configs
    check_given_checkpoints(load_configs(sys.argv[2:]))
heavy = set(json.loads(sys.stdin.read()))
print(json.dumps({"imports_s": imports_s,
                  "heavy": sorted({m.split(".")[0] for m in sys.modules} & heavy),
                  "models": sorted(m for m in sys.modules if m.split(".")[0] == "models")}))
"""


def common_imports(tree: Path = REPO) -> str:
    """The top-level ``import`` and ``from ... import`` lines of ``tree``'s rules/common.smk."""
    text = (tree / "rules" / "common.smk").read_text(encoding="utf-8")
    return "\n".join(re.findall(r"^(?:from \S+ import .+|import .+)$", text, re.MULTILINE))


def parse_imports(configfiles: list[Path] | None = None, tree: Path = REPO) -> dict[str, Any]:
    """``tree``'s rules/common.smk imports and the parse's checks of ``configfiles`` (none:
    the imports only), in a fresh interpreter without Snakemake: ``imports_s``, the ``heavy``
    packages and the ``models`` modules it imported."""
    out = subprocess.run([sys.executable, "-c", CHILD, common_imports(tree),
                          *map(str, configfiles or [])], cwd=tree, input=json.dumps(HEAVY),
                         capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise RuntimeError(f"the parse's imports failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def dry_run(directory: Path, args: list[str], tree: Path = REPO,
            preload: tuple[str, ...] = ()) -> dict[str, Any]:
    """``snakemake -n --nolock --cores 1 ARGS`` in ``directory`` with ``tree``'s Snakefile,
    ``preload`` imported first: ``wall_s``, the ``HEAVY`` packages the workflow's code
    imported (``heavy``: ``{package: "Snakefile:21 > rules/common.smk:15 > ..."}``) and how many
    imports by the workflow's code the watcher saw (``watched``)."""
    with tempfile.TemporaryDirectory(prefix="parse_time.") as tmp:
        out = Path(tmp) / "watch.json"
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ.get('PATH', '')}", "PYTHONSAFEPATH": "1",
               "PARSE_WATCH_OUT": str(out), "PARSE_WATCH_HEAVY": json.dumps(HEAVY),
               "PARSE_WATCH_TREE": str(tree), "PARSE_WATCH_PRELOAD": json.dumps(list(preload))}
        cmd = [sys.executable, "-c", WATCH, "-n", "--nolock", "--cores", "1",
               "--snakefile", str(tree / "Snakefile"), "--directory", str(directory), *args]
        t0 = time.perf_counter()
        result = subprocess.run(cmd, cwd=directory, env=env, capture_output=True, text=True,
                                timeout=600)
        wall = time.perf_counter() - t0
        if result.returncode:
            raise RuntimeError(f"snakemake -n failed ({result.returncode}):\n"
                               f"{result.stderr[-4000:]}")
        return {"wall_s": wall, **json.loads(out.read_text())}


def python_seconds(code: str, repeats: int) -> float:
    """Median wall seconds of ``python -c CODE`` (a fresh interpreter)."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def heavy_line(found: dict[str, str]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in sorted(found.items())) or "none"


def child_line(child: dict[str, Any]) -> str:
    stray = sorted(set(child["models"]) - set(LIGHT_MODELS))
    return (f"imports {child['imports_s']:.2f} s; heavy packages: "
            f"{', '.join(child['heavy']) or 'none'}; {len(child['models'])} `models` modules"
            f"{f', not light: {stray}' if stray else ''}")


def report(directory: Path, configs: list[Path], repeats: int, baseline: str | None) -> str:
    """The measurements as Markdown."""
    args = ["--configfile", *map(str, configs)] if configs else []
    # What the parse checks: the Snakefile's config.yaml, then --configfile's on top.
    checked = [directory / "config.yaml", *configs]
    with tempfile.TemporaryDirectory(prefix="parse_time.baseline.") as tmp:
        rows = {"now": (REPO, ())}
        if baseline:
            rows[f"commit {baseline}"] = (export_commit(REPO, baseline, Path(tmp)), ())
        rows[f"now, with the old imports first ({', '.join(OLD_IMPORTS)})"] = (REPO,
                                                                            OLD_IMPORTS)
        walls: dict[str, list[float]] = {name: [] for name in rows}
        found: dict[str, dict[str, str]] = {}
        for _ in range(repeats):
            for name, (tree, preload) in rows.items():
                run = dry_run(directory, args, tree, preload)
                walls[name].append(run["wall_s"])
                found[name] = run["heavy"]
            print("dry run s: " + ", ".join(f"{k.split(',')[0]} {v[-1]:.2f}"
                                            for k, v in walls.items()), flush=True)
        children = {name: parse_imports(checked, tree) for name, (tree, preload) in rows.items()
                    if not preload}
    torch_s, bare_s = python_seconds("import torch", repeats), python_seconds("pass", repeats)
    now = statistics.median(walls["now"])
    lines = [f"`snakemake -n --nolock --cores 1{''.join(' ' + a for a in args)}` in "
             f"`{directory}`, each run a fresh process, the rows one after the other {repeats} "
             "times; median wall seconds.", "",
             "| Snakefile | dry run s | ratio to now | runs |", "|---|---|---|---|"]
    for name, runs in walls.items():
        median = statistics.median(runs)
        lines.append(f"| {name} | {median:.2f} | {median / now:.2f} | "
                     f"{', '.join(f'{w:.2f}' for w in runs)} |")
    lines += ["", f"Heavy packages the workflow's code imports at parse (watched: "
              f"{', '.join(HEAVY)}):", ""]
    lines += [f"- {name}: {heavy_line(found[name])}" for name in children]
    lines += ["", "rules/common.smk's imports and the parse's checks of "
              f"{', '.join(map(str, checked))} in a fresh interpreter without Snakemake:", ""]
    lines += [f"- {name}: {child_line(child)}" for name, child in children.items()]
    lines += ["", f"For scale: `python -c \"import torch\"` {torch_s:.2f} s, `python -c pass` "
              f"{bare_s:.2f} s (medians of {repeats})."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, default=REPO,
                        help="the work folder of the dry run (default: this repository)")
    parser.add_argument("--configfile", nargs="*", type=Path, default=[],
                        help="config files on top of the Snakefile's config.yaml")
    parser.add_argument("--baseline", default=None,
                        help="a commit whose Snakefile and code to time beside this tree's")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    directory = args.directory.resolve()
    configs = [c if c.is_absolute() else directory / c for c in args.configfile]
    body = report(directory, configs, args.repeats, args.baseline)
    print(body)
    for doc in args.write:
        publish(doc, "parse_time", body)


if __name__ == "__main__":
    main()

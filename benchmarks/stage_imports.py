"""Each stage's import time (the start-up every job pays before its first photo or step)
beside an older commit's, and whether it loads torch.

    .venv/bin/python benchmarks/stage_imports.py --baseline dfbc561
    .venv/bin/python benchmarks/stage_imports.py --baseline dfbc561 --write docs/results.md

For every stage of ``python -m pipeline`` (``pipeline.cli.STAGES``; "-" in the baseline's
columns for a module it lacks), a fresh interpreter of each tree (``PYTHONSAFEPATH=1``, the
tree first on ``PYTHONPATH``) imports the stage's module; the time from before the import to
after it, the fastest of ``--repeats``, trees alternating. Interpreter start itself is left
out of both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.cli import STAGES
from pipeline.results_doc import export_commit, publish

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
start = time.perf_counter()
import importlib
module = importlib.import_module(sys.argv[1])
print("IMPORT " + json.dumps([time.perf_counter() - start, "torch" in sys.modules,
                              module.__file__]))
"""


def import_time(tree: Path, module: str) -> tuple[float, bool] | None:
    """Seconds to import ``module`` with ``tree``'s code and whether torch came with it;
    None when the module is not there (or came from another tree: the environment's
    editable install finds a module the tree lacks in the repository)."""
    env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", CHILD, module], env=env, capture_output=True,
                          text=True, cwd=tree)
    line = next((x for x in done.stdout.splitlines() if x.startswith("IMPORT ")), None)
    if line is None:
        return None
    seconds, torch, path = json.loads(line.removeprefix("IMPORT "))
    return (seconds, torch) if Path(path).resolve().is_relative_to(tree.resolve()) else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose stage_imports section to rewrite")
    args = parser.parse_args()
    modules = dict.fromkeys(s.target.split(":")[0] for s in STAGES.values())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = export_commit(REPO, args.baseline, Path(tmp))
        for module in modules:
            best: dict[str, tuple[float, bool] | None] = {}
            for _ in range(args.repeats):
                for name, tree in (("now", REPO), ("base", base)):
                    got = import_time(tree, module)
                    if got is not None and (best.get(name) is None or got[0] < best[name][0]):
                        best[name] = got
                    best.setdefault(name, got)
            if best["now"]:  # a module new since the baseline: "-" there
                rows.append((module, best["base"], best["now"]))
                print(module, best, flush=True)
    lines = [f"Import of each stage's module in a fresh interpreter, fastest of "
             f"{args.repeats}, this tree beside commit {args.baseline} (one after the other, "
             f"{os.cpu_count()} CPU cores).", "",
             f"| module | {args.baseline} (s) | torch | now (s) | torch |", "|---|---|---|---|---|"]
    for module, base, (n, nt) in rows:
        then = "- | -" if base is None else f"{base[0]:.2f} | {'yes' if base[1] else 'no'}"
        lines.append(f"| {module} | {then} | {n:.2f} | {'yes' if nt else 'no'} |")
    text = "\n".join(lines)
    print(text)
    for doc in args.write:
        publish(doc, "stage_imports", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

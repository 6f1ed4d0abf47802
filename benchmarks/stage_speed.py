"""Seconds per subject of the synthesis, the cache build, the colour stage or the
reconstruction, or of a short training run, beside an older commit's, and whether the two
trees wrote the same outputs.

    .venv/bin/python benchmarks/stage_speed.py synthesize --baseline dfbc561
    .venv/bin/python benchmarks/stage_speed.py cache --baseline dfbc561 --subjects s000 s003
    .venv/bin/python benchmarks/stage_speed.py cache --baseline dfbc561 --write docs/results.md
    .venv/bin/python benchmarks/stage_speed.py colour --baseline ec03315
    .venv/bin/python benchmarks/stage_speed.py reconstruct --baseline 2e8285b
    .venv/bin/python benchmarks/stage_speed.py train --baseline 2e8285b --steps 60
    .venv/bin/python benchmarks/stage_speed.py train_normal --baseline 2e8285b --steps 60

Each tree (this one, and ``--baseline REV`` exported by ``git archive``) runs the stage's own
call (``pipeline.synthesize.stage.run``, ``pipeline.cache.run``, ``pipeline.colour.run``,
``pipeline.reconstruct.run``, ``pipeline.train.run`` or ``run_normal``) for every subject (a
training: once, on the config's training subjects, validated on its validation subjects,
``--steps`` steps without early stopping) in a child process of its own code
(``PYTHONSAFEPATH=1``, its folder first on ``PYTHONPATH``), one tree after the other, with the
config's section. The seconds are timed inside the child, so
interpreter start and imports are left out of both. ``cache`` needs the fit, crops and masks
of ``make demo`` (``--config``'s results) and the synthetic truth; ``colour`` the
reconstructions and caches of ``make demo`` and the truth; ``reconstruct`` and ``train`` the
caches and checkpoints of ``make demo``. The outputs go to a temporary folder and are compared:

- synthesize: every file of both trees, byte for byte;
- cache: every dataset (values, dtype, shape) and every attribute of both HDF5 files;
- colour: the coloured meshes and the figure byte for byte, the report's JSON value for
  value but for its ``seconds``;
- reconstruct: the meshes byte for byte, the reports value for value but for their seconds;
- train, train_normal: the checkpoints' weights and optimiser state, tensor for tensor.

A changed output is named, and the script exits 1: a speed-up that changes what a stage
writes has to say why (issue 29 asks for byte-identical synthesis).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from pipeline.config import load_config, stage_params
from pipeline.results_doc import export_commit, publish

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
from pathlib import Path
job = json.loads(sys.argv[1])
out, seconds = Path(job["out"]), {}
if job["stage"] == "synthesize":
    from pipeline.synthesize.stage import run
    calls = {s: dict(subject=s, output=out / "photos" / s, truth=out / "truth" / s,
                     params=job["params"]) for s in job["subjects"]}
elif job["stage"] == "cache":
    from pipeline.cache import run
    results, truth = Path(job["results"]), Path(job["truth"])
    calls = {s: dict(subject=s, fit=results / "fit" / f"{s}.npz", crops=results / "crop" / s,
                     masks=results / "mask" / s, output=out / f"{s}.h5",
                     params=job["params"], truth=truth / s) for s in job["subjects"]}
elif job["stage"] == "reconstruct":
    from pipeline.reconstruct import run
    results = Path(job["results"])
    calls = {s: dict(checkpoint=results / "train" / "pixel2isdf" / "checkpoint.pt",
                     cache=results / "cache" / f"{s}.h5", output=out / f"{s}.ply",
                     report=out / f"{s}.json", train_model=job["train_model"],
                     params=job["params"]) for s in job["subjects"]}
elif job["stage"] in ("train", "train_normal"):
    from pipeline.train import run, run_normal
    caches = Path(job["results"]) / "cache"
    call = dict(train_caches=[caches / f"{s}.h5" for s in job["subjects"]],
                val_caches=[caches / f"{s}.h5" for s in job["val"]], held_out=job["held_out"],
                output=out / "checkpoint.pt", summary=out / "train.json", params=job["params"])
    if job["stage"] == "train":
        call["normal"] = Path(job["results"]) / "train" / "normal_net" / "checkpoint.pt"
    else:
        run = run_normal
    calls = {"run": call}
else:
    from pipeline.colour import run
    results, truth = Path(job["results"]), Path(job["truth"])
    recon = results / "recon" / "pixel2isdf"
    calls = {s: dict(mesh=recon / f"{s}.ply", recon=recon / f"{s}.json",
                     cache=results / "cache" / f"{s}.h5", output=out / s / "coloured.ply",
                     body_output=out / s / "fitted_body.ply", report=out / s / "colour.json",
                     params=job["params"], truth=truth / s, figure_output=out / s / "figure.png")
             for s in job["subjects"]}
for subject, call in calls.items():
    start = time.perf_counter()
    run(**call)
    seconds[subject] = time.perf_counter() - start
print("SECONDS " + json.dumps(seconds))
"""


def run_in(tree: Path, job: dict) -> dict[str, float]:
    """The stage of ``job`` with ``tree``'s code in a child process; seconds per subject."""
    env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(job)], env=env,
                          capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"{job['stage']} with {tree} failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("SECONDS "))
    return json.loads(line.removeprefix("SECONDS "))


def without_seconds(value: object) -> object:
    """A JSON value with every ``seconds`` entry dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


def differing_files(a: Path, b: Path, timed_json: bool = False) -> list[str]:
    """Relative paths present in one folder only, or with different bytes; with
    ``timed_json``, a ``.json`` file differs only where its values do, its ``seconds`` left
    out (the time a run took is not an output)."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}

    def same(p: Path) -> bool:
        if timed_json and p.suffix == ".json":
            return (without_seconds(json.loads((a / p).read_text()))
                    == without_seconds(json.loads((b / p).read_text())))
        return filecmp.cmp(a / p, b / p, shallow=False)

    changed = [str(p) for p in sorted(files_a & files_b) if not same(p)]
    return sorted(str(p) for p in files_a ^ files_b) + changed


def differing_h5(a: Path, b: Path) -> list[str]:
    """Datasets and attributes (named ``file:path`` or ``file:path@attr``) that differ."""
    out: list[str] = []

    def entries(h5: h5py.File) -> dict[str, h5py.HLObject]:
        found = {"/": h5}
        h5.visititems(lambda name, obj: found.__setitem__(name, obj))
        return found

    with h5py.File(a, "r") as ha, h5py.File(b, "r") as hb:
        ea, eb = entries(ha), entries(hb)
        out += [f"{a.name}:{k}" for k in sorted(set(ea) ^ set(eb))]
        for key in sorted(set(ea) & set(eb)):
            x, y = ea[key], eb[key]
            if set(x.attrs) != set(y.attrs) or any(
                    not np.array_equal(x.attrs[n], y.attrs[n]) for n in x.attrs):
                out.append(f"{a.name}:{key}@attrs")
            if isinstance(x, h5py.Dataset) and (
                    not isinstance(y, h5py.Dataset) or x.dtype != y.dtype
                    or not np.array_equal(x[()], y[()])):
                out.append(f"{a.name}:{key}")
    return out


def differing_checkpoints(a: Path, b: Path) -> list[str]:
    """The weights and optimiser-state tensors (``model:<name>``, ``optimizer``) that differ
    between two training checkpoints."""
    import torch

    x, y = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    out = [f"model:{k}" for k in sorted(set(x["model"]) ^ set(y["model"]))]
    out += [f"model:{k}" for k in sorted(set(x["model"]) & set(y["model"]))
            if not torch.equal(x["model"][k], y["model"][k])]

    def tensors(state: object) -> list:
        if isinstance(state, dict):
            return [t for k in sorted(state, key=str) for t in tensors(state[k])]
        if isinstance(state, (list, tuple)):
            return [t for v in state for t in tensors(v)]
        return [state] if isinstance(state, torch.Tensor) else []

    ox, oy = tensors(x["optimizer"]), tensors(y["optimizer"])
    if len(ox) != len(oy) or any(not torch.equal(s, t) for s, t in zip(ox, oy, strict=True)):
        out.append("optimizer")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=["synthesize", "cache", "colour", "reconstruct",
                                          "train", "train_normal"])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--subjects", nargs="*", help="default: every subject of the config")
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose <stage>_speed section to rewrite")
    parser.add_argument("--steps", type=int, default=60,
                        help="train, train_normal: the run's steps (no early stop; default 60)")
    args = parser.parse_args()
    config = load_config(args.config)
    dataset = config["data"]["dataset"]
    data = config["data"]
    trains = args.stage.startswith("train")
    held = {*data["val_subjects"], *data["test_subjects"]} if trains else set()
    subjects = args.subjects or [s for s in data["subjects"] if s not in held]
    params = stage_params(config, args.stage)
    if trains:
        params["run"] = {**params["run"], "steps": args.steps, "patience": None}
    job = {"stage": args.stage, "subjects": subjects, "params": params,
           "val": data["val_subjects"], "held_out": data["test_subjects"],
           "train_model": json.dumps(config["train"]["model"], sort_keys=True),
           "results": str((Path(config["results"]) / dataset).resolve()),
           "truth": str((Path(config["data"]["root"]) / dataset / "truth").resolve())}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"now": REPO,
                 f"baseline {args.baseline}": export_commit(REPO, args.baseline,
                                                            Path(tmp) / "tree")}
        outs = {}
        for name, tree in trees.items():
            outs[name] = Path(tmp) / "out" / name.split()[0]
            per_subject = run_in(tree, {**job, "out": str(outs[name])})
            seconds[name] = statistics.fmean(per_subject.values())
        base_out, now_out = outs[f"baseline {args.baseline}"], outs["now"]
        if args.stage in ("synthesize", "colour", "reconstruct"):
            changed = differing_files(base_out, now_out, timed_json=args.stage != "synthesize")
        elif trains:
            changed = differing_checkpoints(base_out / "checkpoint.pt",
                                            now_out / "checkpoint.pt")
        else:
            changed = [d for s in subjects
                       for d in differing_h5(base_out / f"{s}.h5", now_out / f"{s}.h5")]
    base, now = seconds[f"baseline {args.baseline}"], seconds["now"]
    threads = f", {args.stage}.threads {params['threads']}" if "threads" in params else ""
    if trains:
        threads = f", {args.stage}.run.threads {params['run']['threads']}"
        what = f"{args.steps} steps on {len(subjects)} subjects ({', '.join(subjects)})"
    else:
        what = f"{len(subjects)} subjects ({', '.join(subjects)})"
    lines = [f"`{args.stage}` of {what} of "
             f"{args.config}{threads}, {os.cpu_count()} CPU cores here, one tree after the "
             "other; seconds inside the process (no start-up).", "",
             "| code | s per " + ("run" if trains else "subject") + " |",
             "|---|---|"]
    lines += [f"| {name} | {value:.1f} |" for name, value in seconds.items()]
    same = {"synthesize": "the same outputs (every file byte for byte)",
            "cache": "the same outputs (every dataset and attribute)",
            "colour": "the same outputs (the meshes and figures byte for byte, the reports "
                      "value for value but for their seconds)",
            "reconstruct": "the same outputs (the meshes byte for byte, the reports value for "
                           "value but for their seconds)",
            "train": "the same weights and optimiser state, tensor for tensor",
            "train_normal": "the same weights and optimiser state, tensor for tensor"}[args.stage]
    lines += ["", f"Ratio: {now / base:.2f}× the seconds; "
              + (same if not changed else f"{len(changed)} outputs differ: "
                 + ", ".join(changed[:12]) + (" …" if len(changed) > 12 else "")) + "."]
    text = "\n".join(lines)
    print(text)
    for doc in args.write:
        publish(doc, f"{args.stage}_speed", text)
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())

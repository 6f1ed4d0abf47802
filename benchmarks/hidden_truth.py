"""A subject reconstructed with its scan hidden: the "own photos" path, measured.

Each case copies some of the subject's photos (no ``truth/``) into a data set of its own and
runs the whole workflow on it with one ``snakemake`` command, the subject in
``data.predict_subjects`` and the demo's trained checkpoint given by path
(``train.checkpoint``): the path a studio takes with a new actor. Afterwards, and only here,
the mesh is scored against the hidden truth.

    .venv/bin/python benchmarks/hidden_truth.py                 # after `make demo`
    .venv/bin/python benchmarks/hidden_truth.py --cases all one_photo
    .venv/bin/python benchmarks/hidden_truth.py --configfile config.yaml \
        presets/learning_curve.yaml --subject s003 --cases one_photo_weak \
        --checkpoint results/curve/curve/n24/seed1/checkpoint.pt --write docs/results.md

Cases: ``all`` (every photo: 4 actions x 8 views, as in the demo), ``four_views`` (4 views of
the first action), ``one_photo`` (1 calibrated photo of 1 action) and ``one_photo_weak``
(the same photo without its camera: ``fit.camera: weak_perspective``). For ``all`` the mesh
is also compared with the demo's own mesh of the subject (made with the truth present).

Prints, per case: views, Chamfer and P2S against the hidden truth beside the fitted naked
body's, reprojection IoU and the share of the silhouette outside the mattes beside the fitted
body's (an invented garment between legs that stand apart is surface outside the matte), the
mesh's components, wall time of the snakemake run, and the seconds per stage from the rules'
benchmark files. ``--write`` appends the table to section ``hidden_truth`` of each file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from pipeline import evaluate
from pipeline.ablation import merged
from pipeline.config import load_configs, stage_params
from pipeline.meshio import read_ply
from pipeline.results_doc import publish

CASES = {
    # name: (actions kept (None: all), views kept per action (None: all), calibrated)
    "all": (None, None, True),
    "four_views": (1, ["cam0", "cam2", "cam4", "cam6"], True),
    "one_photo": (1, ["cam0"], True),
    "one_photo_weak": (1, ["cam0"], False),
}


def copy_photos(source: Path, target: Path, n_actions: int | None, views: list[str] | None,
                calibrated: bool) -> int:
    """Copy a subject's photos (and cameras.json when ``calibrated``); return the count."""
    count = 0
    for action in sorted(p for p in source.iterdir() if p.is_dir())[:n_actions]:
        (target / action.name).mkdir(parents=True, exist_ok=True)
        for photo in sorted(action.glob("*.jpg")):
            if views is None or photo.stem in views:
                shutil.copy2(photo, target / action.name / photo.name)
                count += 1
        if calibrated:
            cameras = json.loads((action / "cameras.json").read_text())
            if views is not None:
                cameras = {**cameras, "views": {k: v for k, v in cameras["views"].items()
                                                if k in views}}
            (target / action.name / "cameras.json").write_text(json.dumps(cameras, indent=1))
    return count


def compare_meshes(ours: Path, theirs: Path) -> str:
    """Whether two mesh files are byte-equal, else how far apart their vertices are."""
    if ours.read_bytes() == theirs.read_bytes():
        return "byte-equal to the demo's mesh (truth present)"
    a, b = np.asarray(read_ply(ours).vertices), np.asarray(read_ply(theirs).vertices)
    if a.shape != b.shape:
        return f"differs from the demo's mesh: {len(a)} vs {len(b)} vertices"
    return f"differs from the demo's mesh: max vertex shift {np.abs(a - b).max():.2e} m"


def stage_seconds(results: Path) -> dict[str, float]:
    """Seconds per rule, summed over its jobs, from the benchmark files."""
    out: dict[str, float] = defaultdict(float)
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(results / "benchmarks").parts[0]
        lines = tsv.read_text().splitlines()
        out[rule] += float(lines[1].split("\t")[0])
    return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", type=Path, default=[Path("config.yaml")])
    parser.add_argument("--subject", default=None, help="default: the first test subject")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="default: the run's trained model (train/pixel2isdf)")
    parser.add_argument("--label", default="model",
                        help="a name for the checkpoint (lower-case): folders and section")
    parser.add_argument("--out", type=Path, default=Path("results/hidden_truth"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--write", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    config = load_configs(args.configfile)
    subject = args.subject or config["data"]["test_subjects"][0]
    demo = Path(config["results"]) / config["data"]["dataset"]
    data = Path(config["data"]["root"]) / config["data"]["dataset"]
    truth = data / "truth" / subject
    checkpoint = args.checkpoint or demo / "train" / "pixel2isdf" / "checkpoint.pt"
    if not checkpoint.is_file():
        sys.exit(f"{checkpoint} is missing: run `make demo` first")
    args.out = args.out / subject / args.label
    rows = []
    for case in args.cases:
        n_actions, views, calibrated = CASES[case]
        root = (args.out / "data").resolve()
        shutil.rmtree(root / case, ignore_errors=True)
        shutil.rmtree(args.out / "results" / case, ignore_errors=True)
        n_photos = copy_photos(data / subject, root / case / subject, n_actions, views,
                               calibrated)
        overlay = {
            "results": str(args.out / "results"),
            "data": {"root": str(root), "dataset": case, "subjects": [subject],
                     "val_subjects": [], "test_subjects": [], "predict_subjects": [subject]},
            "ingest": {"min_views": 1},
            "fit": {"camera": "calibrated" if calibrated else "weak_perspective",
                    "min_views": 1},
            "train": {"checkpoint": str(checkpoint.resolve())},
            "reconstruct": {"subjects": "test"},
            "pifu": {"enabled": False},
            "synthesize": {"enabled": False},
            "learning_curve": {"variants": {}},
        }
        # One whole config: a second --configfile merges into the first one's mappings, so
        # it could not drop the source data set's populations (their subjects are not here).
        case_config = merged(config, overlay)
        case_config["synthesize"]["populations"] = {}
        config_file = args.out / f"{case}.yaml"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(yaml.safe_dump(case_config, sort_keys=False))
        start = time.perf_counter()
        env = {**os.environ,  # the rules' `python` is this interpreter
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        # --nolock: every output lies under --out, so a workflow running beside it in this
        # directory (the learning curve, say) writes none of them.
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores),
                        "--configfile", str(config_file), "--nolock", "--quiet", "--", "all"],
                       check=True, env=env)
        wall = time.perf_counter() - start
        results = args.out / "results" / case
        recon = results / "recon" / "pixel2isdf"
        scores = evaluate.run(mesh=recon / f"{subject}.ply", recon=recon / f"{subject}.json",
                              truth=truth / "canonical_clothed.ply",
                              truth_body=truth / "canonical_body.ply",
                              cache=results / "cache" / f"{subject}.h5",
                              output=args.out / f"{case}_eval.json",
                              params=stage_params(config, "evaluate"))
        check = json.loads((results / "eval" / "pixel2isdf" / f"{subject}.selfcheck.json")
                           .read_text())
        same = ""
        if case == "all":
            ours = recon / f"{subject}.ply"
            theirs = demo / "recon" / "pixel2isdf" / f"{subject}.ply"
            same = compare_meshes(ours, theirs)
        rows.append((case, n_photos, scores["metrics"], check, wall, stage_seconds(results), same))

    lines = [f"Subject {subject}, truth hidden from the run, checkpoint {checkpoint}.", "",
             "| case | photos | Chamfer cm (fitted body) | P2S cm (fitted body) | reprojection "
             "IoU (fitted body) | outside mattes (fitted body) | components | size from | "
             "snakemake wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for case, n, metrics, check, wall, _, _ in rows:
        m, b = metrics["model"], metrics["fitted_body"]
        lines.append(
            f"| {case} | {n} | {m['chamfer_cm']:.2f} ({b['chamfer_cm']:.2f}) | "
            f"{m['p2s_cm']:.2f} ({b['p2s_cm']:.2f}) | {check['iou_mean']:.3f} "
            f"({check['body_iou_mean']:.3f}) | {check['outside_mean']:.3f} "
            f"({check['body_outside_mean']:.3f}) | {check['health']['components']} | "
            f"{check['scale']['source']} | {wall:.0f} |")
    print("\n" + "\n".join(lines))
    for doc in args.write:
        publish(doc, f"hidden_truth_{subject}_{args.label}", "\n".join(lines))
    print("\nSeconds per stage (sum over its jobs, from results/<case>/benchmarks):\n")
    for case, *_, seconds, same in rows:
        print(f"- {case}: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(seconds.items())))
        if same:
            print(f"  mesh: {same}")


if __name__ == "__main__":
    main()

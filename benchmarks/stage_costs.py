"""Disk, memory and hours per stage of a finished run, and an estimate for a larger data set.

    .venv/bin/python benchmarks/stage_costs.py                                   # the demo
    .venv/bin/python benchmarks/stage_costs.py --target presets/paper.yaml      # scaled up
    .venv/bin/python benchmarks/stage_costs.py --wall 2400 --write docs/results.md

Reads Snakemake's ``benchmark:`` files of the run of ``--config`` (``results/<dataset>/
benchmarks/``: seconds and peak RSS per job) and the size of each stage's output folder, then
scales each stage to ``--target``'s data set by its unit of work: photos × pixels for the
synthesis and ingest, photos for the per-view stages, the fit and the cache, test subjects
for reconstruction and evaluation. The estimate is linear, one job at a time on the measuring
machine; it is not a measurement. The training stages are not scaled: their cost depends on
the network sizes and the device (``benchmarks/train_speed.py``, ``benchmarks/gpu_check.sh``).
Both data sets must be the synthetic kind (their shape comes from the ``synthesize``
section).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import load_config
from pipeline.results_doc import publish

GPU_STAGES = {"train_normal", "train"}


@dataclass(frozen=True)
class Stage:
    """A rule: its benchmark files, its output folder and how its work scales."""

    rule: str
    outputs: str  # folder under results/<dataset>/ ("data": the photos and truth)
    unit: str  # photos_pixels | photos | test_subjects | fixed
    benchmarks: str = ""  # its benchmark files under benchmarks/ (default: the rule's name)


STAGES = (
    Stage("synthesize", "data", "photos_pixels"),
    Stage("check_synthetic", "synthetic_checks", "photos_pixels"),
    Stage("ingest", "manifest", "photos_pixels"),
    Stage("preprocess", "crop mask keypoints overlay", "photos"),
    # Before issue 29 the image stages ran as one job per subject-action each: runs of that
    # code are still read (benchmarks/demo_time.py runs an older commit beside this one).
    Stage("detect", "crop", "photos"),
    Stage("mask", "mask", "photos"),
    Stage("keypoints", "keypoints", "photos"),
    Stage("fit", "fit", "photos"),
    Stage("register", "register", "photos"),
    Stage("cache", "cache", "photos"),
    Stage("train_normal", "train/normal_net", "fixed"),
    Stage("train", "train/pixel2isdf", "fixed"),
    Stage("reconstruct", "recon/pixel2isdf", "test_subjects"),
    # Since issue 29's last slice, one job a reconstruction: evaluate, render, selfcheck,
    # colour and export (the five rows below it are runs of older code).
    Stage("assess", "eval/pixel2isdf report/render report/selfcheck report/colour "
          "recon/pixel2isdf/coloured recon/pixel2isdf/fitted_body recon/pixel2isdf/reposed",
          "test_subjects", "assess/pixel2isdf"),
    Stage("selfcheck", "eval/pixel2isdf", "test_subjects", "selfcheck/pixel2isdf"),
    Stage("export_avatar", "recon/pixel2isdf", "test_subjects", "export_avatar/pixel2isdf"),
    Stage("render_recon", "report/render", "test_subjects", "render_recon/pixel2isdf"),
    Stage("colour", "recon/pixel2isdf/coloured recon/pixel2isdf/fitted_body report/colour",
          "test_subjects", "colour/pixel2isdf"),
    Stage("evaluate", "eval/pixel2isdf", "test_subjects", "evaluate/pixel2isdf"),
)
"""The stages of the main job (``outputs``: its folders, space-separated)."""

STARTUP = re.compile(r"startup: ([0-9.]+) s from process start to (.*)$", re.MULTILINE)
IMPORTED = "(its module imported)"


def startup_seconds(log: Path) -> tuple[float, float] | None:
    """A job's start-up from its log (:func:`pipeline.progress.log_startup`): the seconds to
    its stage's import (the interpreter and the imports: a lower bound), and to its first
    photo, step or subject (an upper bound: the first work logged; the cache and the
    synthesis log theirs before the work that precedes their first progress bar, the body's
    distance volume and dressing the body); the import's twice when it logs no first work.
    None when the log has neither (or is absent)."""
    if not log.is_file():
        return None
    found = STARTUP.findall(log.read_text(errors="replace"))
    work = [float(s) for s, what in found if IMPORTED not in what]
    imported = [float(s) for s, what in found if IMPORTED in what]
    if not imported and not work:
        return None
    first = imported[0] if imported else work[0]
    return first, work[0] if work else first


def shape(config: dict[str, Any]) -> dict[str, float]:
    """The units of work of a synthetic data set's config."""
    synth, data = config["synthesize"], config["data"]
    photos = (len(data["subjects"]) * synth["n_actions"] * synth["n_frames"]
              * synth["n_views"])
    tested = len(data["test_subjects"]) if config["reconstruct"]["subjects"] == "test" \
        else len(data["subjects"])
    return {"photos": photos, "photos_pixels": photos * synth["width"] * synth["height"],
            "test_subjects": max(1, tested), "fixed": 1}


def benchmarks(folder: Path, rule: str, logs: Path | None = None) -> list[dict[str, Any]]:
    """The rows of a rule's benchmark files (``<rule>.tsv`` or ``<rule>/**/*.tsv``; the
    experiments' jobs live in folders of their own and are not counted), each with the
    job's start-up from its log (``logs/<dataset>/<same path>.log``; None without one)."""
    files = sorted((folder / rule).rglob("*.tsv")) if (folder / rule).is_dir() else []
    if (folder / f"{rule}.tsv").is_file():
        files.append(folder / f"{rule}.tsv")
    rows = []
    for path in files:
        log = None if logs is None else logs / path.relative_to(folder).with_suffix(".log")
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                rows.append({"s": float(row["s"]), "max_rss": float(row["max_rss"]),
                             "startup": None if log is None else startup_seconds(log)})
    return rows


def disk_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def logs_folder(config: dict[str, Any]) -> Path:
    """Where the run's job logs lie (the rules' ``logs/<dataset>/``, beside the results)."""
    return Path(config["results"]).parent / "logs" / config["data"]["dataset"]


def startup_cell(rows: list[dict[str, Any]]) -> str:
    """The jobs' start-up as a share of their seconds (the jobs whose log gives it), from
    import to first work (:func:`startup_seconds`), e.g. ``4-12 % (8 of 8 jobs)``; ``-``
    when no log gives it."""
    known = [r for r in rows if r["startup"] is not None]
    if not known:
        return "-"
    seconds = max(sum(r["s"] for r in known), 1e-9)
    low, high = (sum(min(r["startup"][k], r["s"]) for r in known) / seconds for k in (0, 1))
    return f"{100 * low:.0f}-{100 * high:.0f} % ({len(known)} of {len(rows)} jobs)"


def stage_table(config: dict[str, Any], target: dict[str, Any] | None) -> str:
    """The Markdown table of measured costs per stage (and the target's estimate)."""
    results = Path(config["results"]) / config["data"]["dataset"]
    data = Path(config["data"]["root"]) / config["data"]["dataset"]
    logs = logs_folder(config)
    have = shape(config)
    want = shape(target) if target is not None else None
    header = ("| stage | jobs | total (h) | longest job (s) | start-up | peak RSS (MB) | "
              "disk (GB) |")
    if want is not None:
        header += " scale | est. total (h) | est. disk (GB) | wants a GPU |"
    lines = [header, "|" + "---|" * header.count(" |")]
    totals = [0.0, 0.0, 0.0, 0.0]
    every: list[dict[str, Any]] = []
    for stage in STAGES:
        rows = benchmarks(results / "benchmarks", stage.benchmarks or stage.rule, logs)
        if not rows:
            continue
        seconds = sum(r["s"] for r in rows)
        disk = (disk_bytes(data) if stage.outputs == "data" else
                sum(disk_bytes(results / folder) for folder in stage.outputs.split())) / 1e9
        cells = [stage.rule, str(len(rows)), f"{seconds / 3600:.3f}",
                 f"{max(r['s'] for r in rows):.0f}", startup_cell(rows),
                 f"{max(r['max_rss'] for r in rows):.0f}", f"{disk:.3f}"]
        totals[0] += seconds / 3600
        totals[1] += disk
        every += rows
        if want is not None:
            gpu = stage.rule in GPU_STAGES
            factor = want[stage.unit] / have[stage.unit]
            hours = "not scaled" if gpu else f"{seconds * factor / 3600:.1f}"
            est_disk = "not scaled" if gpu else f"{disk * factor:.2f}"
            if not gpu:
                totals[2] += seconds * factor / 3600
                totals[3] += disk * factor
            cells += [f"× {factor:.1f}", hours, est_disk, "yes" if gpu else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    total = ["**all**", "", f"{totals[0]:.2f}", "", startup_cell(every), "",
             f"{totals[1]:.2f}"]
    if want is not None:
        total += ["", f"{totals[2]:.1f} (+ training)", f"{totals[3]:.1f} (+ training)", ""]
    lines.append("| " + " | ".join(total) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"),
                        help="the config of the finished run that measured (default the demo)")
    parser.add_argument("--target", type=Path, help="a config to scale the costs to")
    parser.add_argument("--wall", type=float, default=None,
                        help="the run's measured wall time in seconds (e.g. from `time`), "
                             "printed beside the jobs' seconds")
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose demo_wall_time section to rewrite")
    args = parser.parse_args()
    config = load_config(args.config)
    target = load_config(args.target) if args.target else None
    have = shape(config)
    lines = [f"Measured: {args.config} ({config['data']['dataset']}: {have['photos']:.0f} "
             f"photos, {len(config['data']['subjects'])} subjects), {os.cpu_count()} CPU cores "
             "here."]
    if args.wall is not None:
        lines.append(f"Wall time of the run: {args.wall:.0f} s ({args.wall / 60:.1f} min).")
    if target is not None:
        want = shape(target)
        lines.append(f"Target: {args.target} ({target['data']['dataset']}: "
                     f"{want['photos']:.0f} photos, {len(target['data']['subjects'])} "
                     "subjects); linear estimate, one job at a time on this machine.")
    text = "\n".join(lines) + "\n\n" + stage_table(config, target)
    print(text)
    for doc in args.write:
        publish(doc, "demo_wall_time", text)


if __name__ == "__main__":
    main()

"""The learning curve and the shifted test set, run and written into the docs.

    .venv/bin/python benchmarks/learning_curve.py --write docs/results.md
    .venv/bin/python benchmarks/learning_curve.py --configfile config.yaml my_curve.yaml

Runs ``snakemake --cores N learning_curve`` with ``config.yaml`` and
``presets/learning_curve.yaml`` (rules/learning_curve.smk: the model trained on 3, 5, 12 and
24 subjects with budgets in proportion, 2 seeds, every test subject of both test sets scored
beside its fitted body), prints its table, and with ``--write`` puts it into section
``learning_curve`` of docs/results.md (section ``learning_curve_headline``, the short
summary, of any other file), with the command, commit and date (pipeline/results_doc.py).

``--reference demo=results/demo/train/pixel2isdf/checkpoint.pt`` also reconstructs and scores
every test subject with a checkpoint trained elsewhere (the demo's: 5 subjects, its own step
budget), from the curve's caches and with the curve's reconstruct and evaluate settings, and
compares it with the curve's largest point per test set (section
``learning_curve_reference``). Its meshes and reports stay under
``results/<dataset>/curve/reference/<label>/`` and are reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import evaluate, reconstruct
from pipeline.config import curve_reports, load_configs, stage_params
from pipeline.learning_curve import table
from pipeline.results_doc import publish, run_workflow
from pipeline.synthesize.population import population_of

DEFAULT = [Path("config.yaml"), Path("presets/learning_curve.yaml")]
SCORES = (("chamfer_cm", "Chamfer (cm)"), ("fscore_1cm", "F@1cm"))


def reference_scores(config: dict[str, Any], label: str, checkpoint: Path
                     ) -> dict[str, dict[str, float]]:
    """Per test subject, the model's scores when ``checkpoint`` reconstructs it from the
    curve's cache (reconstructed and scored once; reused afterwards)."""
    results = Path(config["results"]) / config["data"]["dataset"]
    truth = Path(config["data"]["root"]) / config["data"]["dataset"] / "truth"
    folder = results / "curve" / "reference" / label
    out = {}
    for subject in config["data"]["test_subjects"]:
        mesh, recon, scored = (folder / f"{subject}{suffix}"
                               for suffix in (".ply", ".json", ".eval.json"))
        cache = results / "cache" / f"{subject}.h5"
        if not scored.is_file():
            reconstruct.run(checkpoint=checkpoint, cache=cache, output=mesh, report=recon,
                            params=stage_params(config, "reconstruct"))
            evaluate.run(mesh=mesh, recon=recon, truth=truth / subject / "canonical_clothed.ply",
                         truth_body=truth / subject / "canonical_body.ply", cache=cache,
                         output=scored, model=f"reference/{label}",
                         params=stage_params(config, "evaluate"))
        out[subject] = json.loads(scored.read_text())["metrics"]["model"]
    return out


def reference_table(config: dict[str, Any], references: dict[str, Path]) -> str:
    """Each reference checkpoint beside the curve's largest point, per test set: mean over
    the set's subjects (and, for the curve, its seeds)."""
    results = Path(config["results"]) / config["data"]["dataset"]
    curve = config["learning_curve"]
    largest = max(curve["sizes"])
    sets: dict[str, list[str]] = {}
    for subject in config["data"]["test_subjects"]:
        sets.setdefault(population_of(config, subject), []).append(subject)
    rows = {label: reference_scores(config, label, path) for label, path in references.items()}
    lines = ["| test set | model | " + " | ".join(name for _, name in SCORES) + " |",
             "|---|---|" + "---|" * len(SCORES)]
    for name, subjects in sets.items():
        curve_rows = [json.loads((results / "eval" / "curve" / f"n{largest}" / f"seed{seed}"
                                  / f"{s}.json").read_text())["metrics"]
                      for seed in curve["seeds"] for s in subjects]
        for label, metrics in [(f"curve, n = {largest} ({len(curve['seeds'])} seeds)",
                                [m["model"] for m in curve_rows]),
                               ("fitted body", [m["fitted_body"] for m in curve_rows]),
                               *((f"reference: {label}", [scores[s] for s in subjects])
                                 for label, scores in rows.items())]:
            cells = [f"{np.mean([m[key] for m in metrics]):.3f}" for key, _ in SCORES]
            lines.append(f"| {name} ({', '.join(subjects)}) | {label} | " + " | ".join(cells)
                         + " |")
    sources = ", ".join(f"{label}: {path}" for label, path in references.items())
    return (f"Reference checkpoints ({sources}) reconstructed from the curve's caches with "
            "the curve's settings, beside the curve's largest point.\n\n" + "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", nargs="+", type=Path, default=DEFAULT)
    parser.add_argument("--rerun-triggers", nargs="+", default=None,
                        help="passed to snakemake (mtime: a run whose settings files were "
                        "edited mid-run without changing what it computes)")
    parser.add_argument("--sizes", nargs="+", type=int, default=None,
                        help="only these points (a partial curve, labelled as such)")
    parser.add_argument("--reference", nargs="+", default=[], metavar="LABEL=CHECKPOINT",
                        help="checkpoints trained elsewhere to score on the same test sets")
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose learning_curve section to rewrite")
    args = parser.parse_args()
    config = load_configs(args.configfile)
    results = Path(config["results"]) / config["data"]["dataset"]
    folder = results / "curve"
    curve = config["learning_curve"]
    if args.sizes:  # some points only: their evaluations, then the table in-process
        tests = config["data"]["test_subjects"]
        reports = [results / "eval" / "curve" / f"n{n}" / f"seed{seed}" / f"{s}.json"
                   for n in args.sizes for seed in curve["seeds"] for s in tests]
        run_workflow(args.configfile, list(map(str, reports)), cores=args.cores,
                     rerun_triggers=args.rerun_triggers)
        stem = folder / ("partial_" + "_".join(map(str, args.sizes)))
        test_sets = {s: population_of(config, s) for s in tests}
        table(reports=reports, test_sets=json.dumps(test_sets),
              csv_output=stem.with_suffix(".csv"), markdown=stem.with_suffix(".md"),
              html_output=stem.with_suffix(".html"), headline=stem.with_name(
                  stem.name + "_headline.md"),
              params={"seed": config["seed"], **curve, "sizes": args.sizes})
        text = stem.with_suffix(".md").read_text(encoding="utf-8")
        headline = stem.with_name(stem.name + "_headline.md").read_text(encoding="utf-8")
        note = (f"Partial: sizes {args.sizes} of {curve['sizes']} (the others were not run "
                "yet).\n\n")
        text, headline = note + text.split("\n", 1)[1], note + headline
    else:
        # every report by name, then the table: with --rerun-triggers mtime Snakemake does
        # not make a missing input of a table that exists (a variant added to the config)
        run_workflow(args.configfile, [*map(str, curve_reports(config)), "learning_curve"],
                     cores=args.cores, rerun_triggers=args.rerun_triggers)
        text = (folder / "learning_curve.md").read_text(encoding="utf-8").split("\n", 1)[1]
        headline = (folder / "headline.md").read_text(encoding="utf-8")
    table_text = text
    print(table_text)
    references = dict(item.split("=", 1) for item in args.reference)
    compared = reference_table(config, {k: Path(v) for k, v in references.items()}) \
        if references else None
    if compared:
        print("\n" + compared)
    for doc in args.write:
        if doc.name == "results.md":
            publish(doc, "learning_curve", table_text)
            if compared:
                publish(doc, "learning_curve_reference", compared)
        else:
            publish(doc, "learning_curve_headline", headline)


if __name__ == "__main__":
    main()

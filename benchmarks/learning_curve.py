"""The learning curve and the shifted test set, run and written into the docs.

    .venv/bin/python benchmarks/learning_curve.py --write docs/results.md
    .venv/bin/python benchmarks/learning_curve.py --configfile config.yaml my_curve.yaml

Runs ``snakemake --cores N learning_curve`` with ``config.yaml`` and
``presets/learning_curve.yaml`` (rules/learning_curve.smk: the model trained on 3, 5, 12 and
24 subjects with budgets in proportion, 2 seeds, every test subject of both test sets scored
beside its fitted body), prints its table, and with ``--write`` puts it into section
``learning_curve`` of docs/results.md (section ``learning_curve_headline``, the short
summary, of any other file), with the command, commit and date (pipeline/results_doc.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from pipeline.config import load_configs
from pipeline.learning_curve import table
from pipeline.results_doc import publish
from pipeline.synthesize.population import population_of

DEFAULT = [Path("config.yaml"), Path("presets/learning_curve.yaml")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", nargs="+", type=Path, default=DEFAULT)
    parser.add_argument("--rerun-triggers", nargs="+", default=None,
                        help="passed to snakemake (mtime: a run whose settings files were "
                        "edited mid-run without changing what it computes)")
    parser.add_argument("--sizes", nargs="+", type=int, default=None,
                        help="only these points (a partial curve, labelled as such)")
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose learning_curve section to rewrite")
    args = parser.parse_args()
    config = load_configs(args.configfile)
    snakemake = Path(sys.executable).with_name("snakemake")
    if args.rerun_triggers:
        snakemake = f"{snakemake} --rerun-triggers {' '.join(args.rerun_triggers)}"
    results = Path(config["results"]) / config["data"]["dataset"]
    folder = results / "curve"
    curve = config["learning_curve"]
    if args.sizes:  # some points only: their evaluations, then the table in-process
        tests = config["data"]["test_subjects"]
        reports = [results / "eval" / "curve" / f"n{n}" / f"seed{seed}" / f"{s}.json"
                   for n in args.sizes for seed in curve["seeds"] for s in tests]
        subprocess.run([*str(snakemake).split(), "--cores", str(args.cores), "--configfile",
                        *map(str, args.configfile), "--", *map(str, reports)], check=True)
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
        subprocess.run([*str(snakemake).split(), "--cores", str(args.cores), "--configfile",
                        *map(str, args.configfile), "--", "learning_curve"], check=True)
        text = (folder / "learning_curve.md").read_text(encoding="utf-8").split("\n", 1)[1]
        headline = (folder / "headline.md").read_text(encoding="utf-8")
    table_text = text
    print(table_text)
    for doc in args.write:
        if doc.name == "results.md":
            publish(doc, "learning_curve", table_text)
        else:
            publish(doc, "learning_curve_headline", headline)


if __name__ == "__main__":
    main()

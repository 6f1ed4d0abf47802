"""The headline: the generalisation benchmark run and written into the docs.

    .venv/bin/python benchmarks/generalisation.py --write README.md docs/results.md
    .venv/bin/python benchmarks/generalisation.py --configfile config.yaml presets/large.yaml

Runs ``snakemake --cores N generalisation`` (the full model trained once per seed of
``generalisation.seeds``, every test subject reconstructed and scored beside its fitted
body; rules/generalisation.smk), prints its table, and with ``--write`` puts the summary into
section ``headline`` and the whole table into section ``generalisation`` of each file that
has (or, for docs/results.md, gets) those sections, with the command, commit and date
(pipeline/results_doc.py). The test subjects choose nothing: each seed's checkpoint is
kept on the validation subjects.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import load_configs
from pipeline.results_doc import publish, run_workflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", nargs="+", type=Path, default=[Path("config.yaml")])
    parser.add_argument("--rerun-triggers", nargs="+", default=None,
                        help="passed to snakemake (mtime: reuse what a run made before edits "
                        "that do not change its computation)")
    parser.add_argument("--write", nargs="*", type=Path, default=[],
                        help="Markdown files whose results sections to rewrite")
    args = parser.parse_args()
    config = load_configs(args.configfile)
    run_workflow(args.configfile, ["generalisation"], cores=args.cores,
                 rerun_triggers=args.rerun_triggers)
    folder = Path(config["results"]) / config["data"]["dataset"] / "generalisation"
    table = (folder / "generalisation.md").read_text(encoding="utf-8")
    headline = (folder / "headline.md").read_text(encoding="utf-8")
    print(table)
    for doc in args.write:
        publish(doc, "headline", headline)
        if doc.name == "results.md":
            body = table.split("\n", 1)[1]  # without its title: the doc has the heading
            publish(doc, "generalisation", body)


if __name__ == "__main__":
    main()

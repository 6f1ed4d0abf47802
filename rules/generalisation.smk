# The generalisation benchmark: `snakemake --cores N generalisation`. The full model of the
# ablation (rules/ablation.smk: train_ablation, reconstruct_ablation, then evaluate) is
# trained once per seed of generalisation.seeds, each test subject is reconstructed and
# scored beside its fitted body, and one table gives every pair, the mean ± SD, the paired
# gain and a sign test (pipeline/generalisation.py). benchmarks/generalisation.py runs it and
# writes the table into README.md and docs/results.md.


rule generalisation_table:
    input:
        expand(
            RESULTS / "eval" / "ablation" / "full" / "seed{seed}" / "{subject}.json",
            seed=config["generalisation"]["seeds"],
            subject=TEST_SUBJECTS,
        ),
    output:
        csv=report(
            RESULTS / "generalisation" / "generalisation.csv",
            caption="report/generalisation.rst",
            category="Experiments",
            subcategory="Generalisation",
            labels={"table": "generalisation (CSV)"},
        ),
        markdown=RESULTS / "generalisation" / "generalisation.md",
        html=report(
            RESULTS / "generalisation" / "generalisation.html",
            caption="report/generalisation.rst",
            category="Experiments",
            subcategory="Generalisation",
            labels={"table": "generalisation"},
        ),
        headline=RESULTS / "generalisation" / "headline.md",
    log:
        LOGS / "generalisation" / "table.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        stage=stage_params("generalisation"),
        steps=ABLATION_STEPS,
    shell:
        "python -m pipeline generalisation-table --params {params.stage:q}"
        " --reports {input} --steps {params.steps} --csv-output {output.csv}"
        " --markdown {output.markdown} --html-output {output.html}"
        " --headline {output.headline} 2> {log}"


rule generalisation:
    input:
        rules.generalisation_table.output,

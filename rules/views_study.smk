# Views study: `snakemake --cores N views_study`. The main trained model reconstructs each
# test subject from K views of one action or across actions; each mesh is evaluated by the
# evaluate rule (eval/views/<selection>-<count>/); pipeline/views_study.py makes the table.
wildcard_constraints:
    selection="one_action|across",
    n_views=r"\d+|all",


use rule reconstruct as reconstruct_views with:
    output:
        mesh=RESULTS / "recon" / "views" / "{selection}-{n_views}" / "{subject}.ply",
        report=RESULTS / "recon" / "views" / "{selection}-{n_views}" / "{subject}.json",
    log:
        LOGS / "views_study" / "reconstruct" / "{selection}-{n_views}" / "{subject}.log",
    benchmark:
        (
            RESULTS
            / "benchmarks"
            / "views_study"
            / "reconstruct"
            / "{selection}-{n_views}"
            / "{subject}.tsv"
        )
    params:
        stage=views_reconstruct_params,
        train_model=json.dumps(config["train"]["model"], sort_keys=True),
        split="test",


rule views_table:
    input:
        views_reports,
    output:
        csv=report(
            RESULTS / "views_study" / "views.csv",
            caption="report/views_study.rst",
            category="Experiments",
            subcategory="Views study",
            labels={"table": "views (CSV)"},
        ),
        markdown=RESULTS / "views_study" / "views.md",
        html=report(
            RESULTS / "views_study" / "views.html",
            caption="report/views_study.rst",
            category="Experiments",
            subcategory="Views study",
            labels={"table": "views"},
        ),
    log:
        LOGS / "views_study" / "table.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        stage=stage_params("views_study"),
    shell:
        "python -m pipeline views-table --params {params.stage:q} --reports {input}"
        " --csv-output {output.csv} --markdown {output.markdown}"
        " --html-output {output.html} 2> {log}"


rule views_study:
    input:
        rules.views_table.output,

# Report figures: the training curves (each reconstruction's render beside its truth is the
# assess rule's, rules/assess.smk).
# `snakemake --report report.html` gathers them with the metrics and the overlays.


rule training_curves:
    input:
        curve_inputs,
    output:
        report(
            RESULTS / "report" / "training_curves.png",
            caption="report/training_curves.rst",
            category="Training",
            labels={"figure": "training curves"},
        ),
    log:
        LOGS / "training_curves.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        stage=stage_params("report"),
    shell:
        "python -m pipeline training-curves --params {params.stage:q} --summaries {input}"
        " --output {output} 2> {log}"

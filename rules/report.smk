# Report figures: reconstructions beside the truth, and the training curves.
# `snakemake --report report.html` gathers them with the metrics and the overlays.


rule render_recon:
    input:
        mesh=RESULTS / "recon" / "{model}" / "{subject}.ply",
        recon=RESULTS / "recon" / "{model}" / "{subject}.json",
        truth=lambda wildcards: truth_folder(wildcards.subject),
    output:
        report(
            RESULTS / "report" / "render" / "{model}" / "{subject}.png",
            caption="report/render.rst",
            category="Reconstructions",
            subcategory="{model}",
            labels={"model": "{model}", "subject": "{subject}"},
        ),
    log:
        LOGS / "render_recon" / "{model}" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "render_recon" / "{model}" / "{subject}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        stage=stage_params("report"),
    shell:
        "python -m pipeline render --params {params.stage:q} --mesh {input.mesh}"
        " --recon {input.recon} --truth {input.truth}/canonical_clothed.ply"
        " --output {output} 2> {log}"


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

# Colour: each reconstruction and its fitted body (the baseline) coloured from the photos,
# with the held-out-view measure and, where the truth has colours, the error against them.


rule colour:
    input:
        truth=truth_of,
        mesh=RESULTS / "recon" / "{model}" / "{subject}.ply",
        recon=RESULTS / "recon" / "{model}" / "{subject}.json",
        cache=RESULTS / "cache" / "{subject}.h5",
    output:
        mesh=RESULTS / "recon" / "{model}" / "coloured" / "{subject}.ply",
        body=RESULTS / "recon" / "{model}" / "fitted_body" / "{subject}.ply",
        report=RESULTS / "eval" / "{model}" / "{subject}.colour.json",
        figure=report(
            RESULTS / "report" / "colour" / "{model}" / "{subject}.png",
            caption="report/colour.rst",
            category="Colour",
            subcategory="{model}",
            labels={"model": "{model}", "subject": "{subject}"},
        ),
    log:
        LOGS / "colour" / "{model}" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "colour" / "{model}" / "{subject}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        stage=stage_params("colour"),
        truth=truth_option,
    shell:
        "python -m pipeline colour --params {params.stage:q} --mesh {input.mesh}"
        " --recon {input.recon} --cache {input.cache} {params.truth}"
        " --output {output.mesh} --body-output {output.body} --report {output.report}"
        " --figure-output {output.figure}"
        " 2> {log}"

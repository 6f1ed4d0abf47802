# Evaluation: each reconstruction and the body baselines against the truth clothed scan
# (the truth naked body's row where the data set has one).


rule evaluate:
    input:
        unpack(dataset_frame_inputs),
        mesh=RESULTS / "recon" / "{model}" / "{subject}.ply",
        recon=RESULTS / "recon" / "{model}" / "{subject}.json",
        truth=lambda wildcards: truth_folder(wildcards.subject),
        cache=RESULTS / "cache" / "{subject}.h5",
    output:
        RESULTS / "eval" / "{model}" / "{subject}.json",
    log:
        LOGS / "evaluate" / "{model}" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "evaluate" / "{model}" / "{subject}.tsv"
    conda:
        "../envs/core.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        mem_mb=4000,
    params:
        stage=stage_params("evaluate"),
        scans=SCANS,
        dataset=dataset_frame_options,
    shell:
        "IGL_NUM_THREADS={threads} python -m pipeline evaluate --params {params.stage:q}"
        " --mesh {input.mesh} --recon {input.recon} --cache {input.cache}"
        " --truth {input.truth}/canonical_clothed.ply"
        " --truth-body {input.truth}/canonical_body.ply --model {wildcards.model}"
        " --scans {params.scans:q} {params.dataset} --output {output} 2> {log}"


rule evaluate_summary:
    input:
        unpack(evaluate_summary_inputs),
    output:
        csv=report(
            RESULTS / "eval" / "{model}" / "metrics.csv",
            caption="report/metrics_csv.rst",
            category="Metrics",
            subcategory="CSV",
            labels={"model": "{model}"},
        ),
        markdown=RESULTS / "eval" / "{model}" / "summary.md",
        html=report(
            RESULTS / "eval" / "{model}" / "summary.html",
            caption="report/metrics.rst",
            category="Metrics",
            subcategory="Tables",
            labels={"model": "{model}"},
        ),
    log:
        LOGS / "evaluate" / "{model}" / "summary.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        stage=stage_params("evaluate"),
    shell:
        "python -m pipeline evaluate-summary --params {params.stage:q}"
        " --reports {input.reports} --selfchecks {input.selfchecks}"
        " --colours {input.colours}"
        " --model {wildcards.model}"
        " --csv-output {output.csv} --markdown {output.markdown}"
        " --html-output {output.html} 2> {log}"

# Detect: person box and square crop, one job per subject-action (the model loads once).


rule detect:
    input:
        manifest=RESULTS / "manifest" / "{subject}.json",
    output:
        directory(RESULTS / "crop" / "{subject}" / "{action}"),
    log:
        LOGS / "detect" / "{subject}" / "{action}.log",
    benchmark:
        RESULTS / "benchmarks" / "detect" / "{subject}" / "{action}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        stage=stage_params("detect"),
        truth=lambda wildcards: TRUTH / wildcards.subject,
    shell:
        "python -m pipeline detect --params {params.stage:q} --subject {wildcards.subject}"
        " --action {wildcards.action} --manifest {input.manifest} --truth {params.truth}"
        " --output {output} 2> {log}"

# Mask: person segmentation refined by matting (trimap by erosion/dilation), per subject-action.


rule mask:
    input:
        crops=RESULTS / "crop" / "{subject}" / "{action}",
    output:
        directory(RESULTS / "mask" / "{subject}" / "{action}"),
    log:
        LOGS / "mask" / "{subject}" / "{action}.log",
    benchmark:
        RESULTS / "benchmarks" / "mask" / "{subject}" / "{action}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        stage=stage_params("mask"),
        truth=lambda wildcards: TRUTH / wildcards.subject,
    shell:
        "python -m pipeline mask --params {params.stage:q} --subject {wildcards.subject}"
        " --action {wildcards.action} --crops {input.crops} --truth {params.truth}"
        " --output {output} 2> {log}"

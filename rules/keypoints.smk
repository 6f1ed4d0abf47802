# Keypoints: 2D body keypoints (COCO-17 and OpenPose BODY_25) per subject-action.


rule keypoints:
    input:
        crops=RESULTS / "crop" / "{subject}" / "{action}",
    output:
        RESULTS / "keypoints" / "{subject}" / "{action}.json",
    log:
        LOGS / "keypoints" / "{subject}" / "{action}.log",
    benchmark:
        RESULTS / "benchmarks" / "keypoints" / "{subject}" / "{action}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        stage=stage_params("keypoints"),
        truth=lambda wildcards: TRUTH / wildcards.subject,
    shell:
        "python -m pipeline keypoints --params {params.stage:q} --subject {wildcards.subject}"
        " --action {wildcards.action} --crops {input.crops} --truth {params.truth}"
        " --output {output} 2> {log}"

# Cache: one HDF5 file per subject (views, fitted body, and the SDF and PIFu targets where
# the subject has a truth scan: none for data.predict_subjects).


rule cache:
    input:
        fit=RESULTS / "fit" / "{subject}.npz",
        crops=lambda wildcards: expand(
            RESULTS / "crop" / "{{subject}}" / "{action}",
            action=actions_of(wildcards.subject),
        ),
        masks=lambda wildcards: expand(
            RESULTS / "mask" / "{{subject}}" / "{action}",
            action=actions_of(wildcards.subject),
        ),
        truth=truth_of,
    output:
        RESULTS / "cache" / "{subject}.h5",
    log:
        LOGS / "cache" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "cache" / "{subject}.tsv"
    conda:
        "../envs/core.yaml"
    threads: config["cache"]["threads"]
    resources:
        mem_mb=2000,
    params:
        stage=stage_params("cache"),
        crops=lambda wildcards: RESULTS / "crop" / wildcards.subject,
        masks=lambda wildcards: RESULTS / "mask" / wildcards.subject,
        truth=truth_option,
        scans=SCANS,
    shell:
        "IGL_NUM_THREADS={threads} python -m pipeline cache --params {params.stage:q}"
        " --subject {wildcards.subject} --fit {input.fit} --crops {params.crops}"
        " --masks {params.masks} {params.truth} --scans {params.scans:q}"
        " --output {output} 2> {log}"

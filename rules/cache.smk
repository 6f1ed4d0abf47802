# Cache: one HDF5 file per subject (views, fitted body, and the SDF and PIFu targets where
# the subject has a truth scan: none for data.predict_subjects).


rule cache:
    input:
        fit=RESULTS / "fit" / "{subject}.npz",
        crops=RESULTS / "crop" / "{subject}",
        masks=RESULTS / "mask" / "{subject}",
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
        truth=truth_option,
        scans=SCANS,
    shell:
        "IGL_NUM_THREADS={threads} python -m pipeline cache --params {params.stage:q}"
        " --subject {wildcards.subject} --fit {input.fit} --crops {input.crops}"
        " --masks {input.masks} {params.truth} --scans {params.scans:q}"
        " --output {output} 2> {log}"

# Reconstruction: one canonical mesh per subject from the trained Pixel2ISDF.


rule reconstruct:
    input:
        checkpoint=PIXEL2ISDF_CHECKPOINT,
        cache=RESULTS / "cache" / "{subject}.h5",
    output:
        mesh=RESULTS / "recon" / "pixel2isdf" / "{subject}.ply",
        report=RESULTS / "recon" / "pixel2isdf" / "{subject}.json",
    log:
        LOGS / "reconstruct" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "reconstruct" / "{subject}.tsv"
    conda:
        "../envs/core.yaml"
    threads: config["reconstruct"]["threads"]
    resources:
        mem_mb=8000,
        gpu=1 if config["reconstruct"]["device"] == "cuda" else 0,
    params:
        stage=stage_params("reconstruct"),
        train_model=json.dumps(config["train"]["model"], sort_keys=True),
        split=lambda wildcards: split_of(wildcards.subject),
    shell:
        "python -m pipeline reconstruct --params {params.stage:q}"
        " --checkpoint {input.checkpoint} --train-model {params.train_model:q}"
        " --cache {input.cache} --split {params.split}"
        " --output {output.mesh} --report {output.report} 2> {log}"

# Training: the normal network, then Pixel2ISDF, on the training subjects' caches; the
# validation subjects' choose the checkpoint kept. No test subject's cache is an input.


rule train_normal:
    input:
        **split_caches(),
    output:
        checkpoint=RESULTS / "train" / "normal_net" / "checkpoint.pt",
        summary=RESULTS / "train" / "normal_net" / "train.json",
    log:
        LOGS / "train_normal.log",
    benchmark:
        RESULTS / "benchmarks" / "train_normal.tsv"
    conda:
        "../envs/core.yaml"
    threads: config["train_normal"]["run"]["threads"]
    resources:
        mem_mb=8000,
        gpu=gpus_of("train_normal"),
    params:
        stage=stage_params("train_normal"),
        launcher=launcher_of("train_normal"),
        held_out=HELD_OUT,
    shell:
        "{params.launcher} -m pipeline train-normal --params {params.stage:q}"
        " --train-caches {input.train} --val-caches {input.val} --held-out {params.held_out}"
        " --output {output.checkpoint} --summary {output.summary} 2> {log}"


rule train:
    input:
        unpack(train_inputs),
    output:
        checkpoint=RESULTS / "train" / "pixel2isdf" / "checkpoint.pt",
        summary=RESULTS / "train" / "pixel2isdf" / "train.json",
    log:
        LOGS / "train.log",
    benchmark:
        RESULTS / "benchmarks" / "train.tsv"
    conda:
        "../envs/core.yaml"
    threads: config["train"]["run"]["threads"]
    resources:
        mem_mb=16000,
        gpu=gpus_of("train"),
    params:
        stage=stage_params("train"),
        launcher=launcher_of("train"),
        held_out=HELD_OUT,
        normal=lambda wildcards, input: (
            f"--normal {input.normal}" if "normal" in input.keys() else ""
        ),
    shell:
        "{params.launcher} -m pipeline train --params {params.stage:q}"
        " --train-caches {input.train} --val-caches {input.val} --held-out {params.held_out}"
        " {params.normal}"
        " --output {output.checkpoint} --summary {output.summary} 2> {log}"

# PIFu and Temporal PIFu (pifu.enabled): training on the posed frames, posed reconstructions
# of the test subjects, Table 2 scores and one table of both models.


rule train_pifu:
    input:
        **split_caches(),
    output:
        checkpoint=RESULTS / "train" / "{pifu_model}" / "checkpoint.pt",
        summary=RESULTS / "train" / "{pifu_model}" / "train.json",
    log:
        LOGS / "train_{pifu_model}.log",
    benchmark:
        RESULTS / "benchmarks" / "train_{pifu_model}.tsv"
    conda:
        "../envs/core.yaml"
    threads: config["pifu"]["train"]["run"]["threads"]
    resources:
        mem_mb=8000,
        gpu=gpus_of("pifu.train"),
    params:
        stage=stage_params("pifu.train"),
        launcher=launcher_of("pifu.train"),
        held_out=HELD_OUT,
    shell:
        "{params.launcher} -m pipeline train-pifu --params {params.stage:q} --model {wildcards.pifu_model}"
        " --train-caches {input.train} --val-caches {input.val} --held-out {params.held_out}"
        " --output {output.checkpoint} --summary {output.summary} 2> {log}"


rule reconstruct_pifu:
    input:
        checkpoint=pifu_checkpoint,
        cache=RESULTS / "cache" / "{subject}.h5",
    output:
        directory(RESULTS / "recon" / "{pifu_model}" / "{subject}"),
    log:
        LOGS / "reconstruct_{pifu_model}" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "reconstruct_{pifu_model}" / "{subject}.tsv"
    conda:
        "../envs/core.yaml"
    threads: config["pifu"]["reconstruct"]["threads"]
    resources:
        mem_mb=8000,
        gpu=1 if config["pifu"]["reconstruct"]["device"] == "cuda" else 0,
    params:
        stage=stage_params("pifu.reconstruct"),
    shell:
        "python -m pipeline reconstruct-pifu --params {params.stage:q}"
        " --model {wildcards.pifu_model} --checkpoint {input.checkpoint}"
        " --cache {input.cache} --output {output} 2> {log}"


rule evaluate_pifu:
    input:
        checkpoint=pifu_checkpoint,
        caches=expand(RESULTS / "cache" / "{subject}.h5", subject=TEST_SUBJECTS),
        recons=expand(
            RESULTS / "recon" / "{{pifu_model}}" / "{subject}", subject=TEST_SUBJECTS
        ),
        truth=expand(TRUTH / "{subject}", subject=TEST_SUBJECTS),
    output:
        RESULTS / "eval" / "{pifu_model}" / "pifu.json",
    log:
        LOGS / "evaluate_{pifu_model}.log",
    benchmark:
        RESULTS / "benchmarks" / "evaluate_{pifu_model}.tsv"
    conda:
        "../envs/core.yaml"
    threads: config["pifu"]["evaluate"]["threads"]
    resources:
        mem_mb=8000,
    params:
        stage=stage_params("pifu.evaluate"),
        truth=TRUTH,
    shell:
        "IGL_NUM_THREADS={threads} python -m pipeline evaluate-pifu --params {params.stage:q}"
        " --model {wildcards.pifu_model} --checkpoint {input.checkpoint}"
        " --caches {input.caches} --recons {input.recons} --truth {params.truth}"
        " --output {output} 2> {log}"


rule pifu_table:
    input:
        expand(RESULTS / "eval" / "{model}" / "pifu.json", model=PIFU_MODELS),
    output:
        csv=RESULTS / "eval" / "pifu" / "table2.csv",
        markdown=RESULTS / "eval" / "pifu" / "table2.md",
        html=report(
            RESULTS / "eval" / "pifu" / "table2.html",
            caption="report/pifu_table.rst",
            category="Metrics",
            subcategory="PIFu",
            labels={"table": "Table 2"},
        ),
    log:
        LOGS / "pifu_table.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "python -m pipeline pifu-table --reports {input}"
        " --csv-output {output.csv} --markdown {output.markdown}"
        " --html-output {output.html} 2> {log}"


rule render_pifu_clip:
    input:
        recons=expand(RESULTS / "recon" / "{model}" / "{{subject}}", model=PIFU_MODELS),
        truth=TRUTH / "{subject}",
    output:
        report(
            RESULTS / "report" / "render" / "pifu" / "{subject}.png",
            caption="report/pifu_clip.rst",
            category="Reconstructions",
            subcategory="PIFu",
            labels={"subject": "{subject}"},
        ),
    log:
        LOGS / "render_pifu_clip" / "{subject}.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        stage=stage_params("report"),
    shell:
        "python -m pipeline render-clip --params {params.stage:q} --recons {input.recons}"
        " --truth {input.truth} --output {output} 2> {log}"

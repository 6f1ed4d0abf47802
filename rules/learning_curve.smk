# The learning curve: `snakemake --cores N learning_curve`. The model is trained on the
# first n training subjects (data.subjects order) for each n of learning_curve.sizes, with
# its step budget scaled to n, once per seed; the normal network it reads is trained on the
# same n subjects. Every test subject is reconstructed and scored beside its fitted body
# (the evaluate rule, eval/curve/n<n>/seed<seed>/), and pipeline/learning_curve.py makes
# one table per test set (in-distribution, and each synthesize population).
wildcard_constraints:
    size=r"\d+",
    curve_variant="|".join(v for v in VARIANTS if v != "full"),


use rule train_normal as train_normal_curve with:
    input:
        unpack(curve_caches),
    output:
        checkpoint=RESULTS / "curve" / "n{size}" / "normal_net" / "checkpoint.pt",
        summary=RESULTS / "curve" / "n{size}" / "normal_net" / "train.json",
    log:
        LOGS / "curve" / "n{size}" / "train_normal.log",
    benchmark:
        RESULTS / "benchmarks" / "curve" / "n{size}" / "train_normal.tsv"
    params:
        stage=lambda wildcards: curve_stage("train_normal", wildcards),
        launcher=launcher_of("train_normal"),
        held_out=HELD_OUT,


use rule train as train_curve with:
    input:
        unpack(curve_train_inputs),
    output:
        checkpoint=RESULTS / "curve" / "n{size}" / "seed{seed}" / "checkpoint.pt",
        summary=RESULTS / "curve" / "n{size}" / "seed{seed}" / "train.json",
    log:
        LOGS / "curve" / "n{size}" / "seed{seed}" / "train.log",
    benchmark:
        RESULTS / "benchmarks" / "curve" / "n{size}" / "seed{seed}" / "train.tsv"
    params:
        stage=lambda wildcards: curve_stage("train", wildcards),
        launcher=launcher_of("train"),
        held_out=HELD_OUT,
        normal=lambda wildcards, input: (
            f"--normal {input.normal}" if "normal" in input.keys() else ""
        ),


use rule reconstruct as reconstruct_curve with:
    input:
        checkpoint=RESULTS / "curve" / "n{size}" / "seed{seed}" / "checkpoint.pt",
        cache=RESULTS / "cache" / "{subject}.h5",
    output:
        mesh=RESULTS / "recon" / "curve" / "n{size}" / "seed{seed}" / "{subject}.ply",
        report=RESULTS / "recon" / "curve" / "n{size}" / "seed{seed}" / "{subject}.json",
    log:
        LOGS / "curve" / "reconstruct" / "n{size}" / "seed{seed}" / "{subject}.log",
    benchmark:
        (
            RESULTS
            / "benchmarks"
            / "curve"
            / "reconstruct"
            / "n{size}"
            / "seed{seed}"
            / "{subject}.tsv"
        )
    params:
        stage=stage_params("reconstruct"),
        train_model=json.dumps(config["train"]["model"], sort_keys=True),
        split="test",


use rule train_curve as train_curve_variant with:
    output:
        checkpoint=RESULTS
        / "curve"
        / "{curve_variant}"
        / "n{size}"
        / "seed{seed}"
        / "checkpoint.pt",
        summary=RESULTS
        / "curve"
        / "{curve_variant}"
        / "n{size}"
        / "seed{seed}"
        / "train.json",
    log:
        LOGS / "curve" / "{curve_variant}" / "n{size}" / "seed{seed}" / "train.log",
    benchmark:
        (
            RESULTS
            / "benchmarks"
            / "curve"
            / "{curve_variant}"
            / "n{size}"
            / "seed{seed}"
            / "train.tsv"
        )
    params:
        stage=lambda wildcards: curve_stage("train", wildcards),
        launcher=launcher_of("train"),
        held_out=HELD_OUT,
        normal=lambda wildcards, input: (
            f"--normal {input.normal}" if "normal" in input.keys() else ""
        ),


use rule reconstruct_curve as reconstruct_curve_variant with:
    input:
        checkpoint=RESULTS
        / "curve"
        / "{curve_variant}"
        / "n{size}"
        / "seed{seed}"
        / "checkpoint.pt",
        cache=RESULTS / "cache" / "{subject}.h5",
    output:
        mesh=RESULTS
        / "recon"
        / "curve"
        / "{curve_variant}"
        / "n{size}"
        / "seed{seed}"
        / "{subject}.ply",
        report=RESULTS
        / "recon"
        / "curve"
        / "{curve_variant}"
        / "n{size}"
        / "seed{seed}"
        / "{subject}.json",
    log:
        LOGS
        / "curve"
        / "reconstruct"
        / "{curve_variant}"
        / "n{size}"
        / "seed{seed}"
        / "{subject}.log",
    benchmark:
        (
            RESULTS
            / "benchmarks"
            / "curve"
            / "reconstruct"
            / "{curve_variant}"
            / "n{size}"
            / "seed{seed}"
            / "{subject}.tsv"
        )
    params:
        stage=stage_params("reconstruct"),
        train_model=lambda wildcards: json.dumps(curve_model(wildcards), sort_keys=True),
        split="test",


rule learning_curve_table:
    input:
        curve_reports,
    output:
        csv=report(
            RESULTS / "curve" / "learning_curve.csv",
            caption="report/learning_curve.rst",
            category="Experiments",
            subcategory="Learning curve",
            labels={"table": "learning curve (CSV)"},
        ),
        markdown=RESULTS / "curve" / "learning_curve.md",
        headline=RESULTS / "curve" / "headline.md",
        html=report(
            RESULTS / "curve" / "learning_curve.html",
            caption="report/learning_curve.rst",
            category="Experiments",
            subcategory="Learning curve",
            labels={"table": "learning curve"},
        ),
    log:
        LOGS / "curve" / "table.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        stage=stage_params("learning_curve"),
        test_sets=json.dumps(TEST_SETS, sort_keys=True),
    shell:
        "python -m pipeline learning-curve-table --params {params.stage:q}"
        " --reports {input} --test-sets {params.test_sets:q}"
        " --csv-output {output.csv} --markdown {output.markdown}"
        " --html-output {output.html} --headline {output.headline} 2> {log}"


rule learning_curve:
    input:
        rules.learning_curve_table.output,

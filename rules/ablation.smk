# Ablation (the report's Table 1 plus oracle rows): `snakemake --cores N ablation`.
# Each variant trains once per seed under ablation/train/<variant>/seed<seed>/ and reuses
# every shared file of the main run: its caches (full, no_mask, no_normal, oracle_normal),
# its normal network (every normal-input variant but no_mask) and its crops, masks and
# keypoints (the two extra fits). pipeline/ablation.py defines the variants; the helpers
# are in rules/common.smk.
wildcard_constraints:
    variant="|".join(VARIANTS),
    seed=r"\d+",
    body="keypoints_only|truth",


use rule fit as fit_keypoints_only with:
    output:
        fit=RESULTS / "ablation" / "fit" / "keypoints_only" / "{subject}.npz",
        report=RESULTS / "ablation" / "fit" / "keypoints_only" / "{subject}.json",
        overlays=directory(
            RESULTS / "ablation" / "fit" / "keypoints_only" / "{subject}"
        ),
    log:
        LOGS / "ablation" / "fit_keypoints_only" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "ablation" / "fit_keypoints_only" / "{subject}.tsv"
    params:
        stage=json.dumps(
            {
                "seed": config["seed"],
                **without(merged(config["fit"], KEYPOINTS_ONLY_FIT), "height_m"),
            },
            sort_keys=True,
        ),
        height=height_option,


rule oracle_fit:
    input:
        fit=RESULTS / "fit" / "{subject}.npz",
        truth=TRUTH / "{subject}",
    output:
        RESULTS / "ablation" / "fit" / "truth" / "{subject}.npz",
    log:
        LOGS / "ablation" / "oracle_fit" / "{subject}.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "python -m pipeline oracle-fit --fit {input.fit} --truth {input.truth}"
        " --output {output} 2> {log}"


use rule cache as cache_ablation with:
    input:
        fit=RESULTS / "ablation" / "fit" / "{body}" / "{subject}.npz",
        crops=RESULTS / "crop" / "{subject}",
        masks=RESULTS / "mask" / "{subject}",
        truth=TRUTH / "{subject}",
    output:
        RESULTS / "ablation" / "cache" / "{body}" / "{subject}.h5",
    log:
        LOGS / "ablation" / "cache" / "{body}" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "ablation" / "cache" / "{body}" / "{subject}.tsv"


use rule train_normal as train_normal_unmasked with:
    output:
        checkpoint=RESULTS / "ablation" / "normal_net_unmasked" / "checkpoint.pt",
        summary=RESULTS / "ablation" / "normal_net_unmasked" / "train.json",
    log:
        LOGS / "ablation" / "train_normal_unmasked.log",
    benchmark:
        RESULTS / "benchmarks" / "ablation" / "train_normal_unmasked.tsv"
    params:
        stage=json.dumps(
            {
                "seed": config["seed"],
                **normal_section(config["train_normal"], "no_mask"),
            },
            sort_keys=True,
        ),
        launcher=launcher_of("train_normal"),
        held_out=HELD_OUT,


use rule train as train_ablation with:
    input:
        unpack(ablation_train_inputs),
    output:
        checkpoint=RESULTS
        / "ablation"
        / "train"
        / "{variant}"
        / "seed{seed}"
        / "checkpoint.pt",
        summary=RESULTS
        / "ablation"
        / "train"
        / "{variant}"
        / "seed{seed}"
        / "train.json",
    log:
        LOGS / "ablation" / "train" / "{variant}" / "seed{seed}.log",
    benchmark:
        RESULTS / "benchmarks" / "ablation" / "train" / "{variant}" / "seed{seed}.tsv"
    params:
        stage=lambda wildcards: json.dumps(
            {"seed": int(wildcards.seed), **ablation_train(wildcards)}, sort_keys=True
        ),
        launcher=launcher_of("train"),
        held_out=HELD_OUT,
        normal=lambda wildcards, input: (
            f"--normal {input.normal}" if "normal" in input.keys() else ""
        ),


use rule reconstruct as reconstruct_ablation with:
    input:
        checkpoint=RESULTS
        / "ablation"
        / "train"
        / "{variant}"
        / "seed{seed}"
        / "checkpoint.pt",
        cache=lambda wildcards: ablation_cache(
            VARIANTS[wildcards.variant].body, wildcards.subject
        ),
    output:
        mesh=RESULTS
        / "recon"
        / "ablation"
        / "{variant}"
        / "seed{seed}"
        / "{subject}.ply",
        report=RESULTS
        / "recon"
        / "ablation"
        / "{variant}"
        / "seed{seed}"
        / "{subject}.json",
    log:
        LOGS / "ablation" / "reconstruct" / "{variant}" / "seed{seed}" / "{subject}.log",
    benchmark:
        (
            RESULTS
            / "benchmarks"
            / "ablation"
            / "reconstruct"
            / "{variant}"
            / "seed{seed}"
            / "{subject}.tsv"
        )
    params:
        stage=stage_params("reconstruct"),
        train_model=lambda wildcards: json.dumps(
            ablation_train(wildcards)["model"], sort_keys=True
        ),
        split="test",


rule ablation_table:
    input:
        ablation_reports,
    output:
        csv=report(
            RESULTS / "ablation" / "ablation.csv",
            caption="report/ablation.rst",
            category="Experiments",
            subcategory="Ablation",
            labels={"table": "ablation (CSV)"},
        ),
        markdown=RESULTS / "ablation" / "ablation.md",
        html=report(
            RESULTS / "ablation" / "ablation.html",
            caption="report/ablation.rst",
            category="Experiments",
            subcategory="Ablation",
            labels={"table": "ablation"},
        ),
    log:
        LOGS / "ablation" / "table.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        stage=json.dumps(
            {"seed": config["seed"], **ABLATION, "steps": ABLATION_STEPS},
            sort_keys=True,
        ),
    shell:
        "python -m pipeline ablation-table --params {params.stage:q} --reports {input}"
        " --csv-output {output.csv} --markdown {output.markdown}"
        " --html-output {output.html} 2> {log}"


rule ablation:
    input:
        rules.ablation_table.output,

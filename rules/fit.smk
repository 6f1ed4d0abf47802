# Fit: the body model fitted to all actions and views of a subject (one shape, one pose per action).


rule fit:
    input:
        manifest=RESULTS / "manifest" / "{subject}.json",
        crops=lambda wildcards: expand(
            RESULTS / "crop" / "{{subject}}" / "{action}",
            action=actions_of(wildcards.subject),
        ),
        masks=lambda wildcards: expand(
            RESULTS / "mask" / "{{subject}}" / "{action}",
            action=actions_of(wildcards.subject),
        ),
        keypoints=lambda wildcards: expand(
            RESULTS / "keypoints" / "{{subject}}" / "{action}.json",
            action=actions_of(wildcards.subject),
        ),
    output:
        fit=RESULTS / "fit" / "{subject}.npz",
        report=RESULTS / "fit" / "{subject}.json",
        overlays=report(
            directory(RESULTS / "fit" / "{subject}"),
            patterns=["{action}.png"],
            caption="report/fit.rst",
            category="Body fit",
            subcategory="{subject}",
            labels={"subject": "{subject}", "action": "{action}"},
        ),
    log:
        LOGS / "fit" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "fit" / "{subject}.tsv"
    conda:
        "../envs/core.yaml"
    threads: config["fit"]["threads"]
    resources:
        mem_mb=4000,
    params:
        stage=json.dumps(
            {"seed": config["seed"], **without(config["fit"], "height_m")},
            sort_keys=True,
        ),
        height=height_option,
        crops=lambda wildcards: RESULTS / "crop" / wildcards.subject,
        masks=lambda wildcards: RESULTS / "mask" / wildcards.subject,
        keypoints=lambda wildcards: RESULTS / "keypoints" / wildcards.subject,
    shell:
        "python -m pipeline fit --params {params.stage:q} --subject {wildcards.subject}"
        " --manifest {input.manifest} --crops {params.crops} --masks {params.masks}"
        " --keypoints {params.keypoints} --output {output.fit} --report {output.report}"
        " --overlays {output.overlays} {params.height} 2> {log}"

# Fit: the body model fitted to all actions and views of a subject (one shape, one pose per action).


rule fit:
    input:
        manifest=RESULTS / "manifest" / "{subject}.json",
        crops=RESULTS / "crop" / "{subject}",
        masks=RESULTS / "mask" / "{subject}",
        keypoints=RESULTS / "keypoints" / "{subject}",
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
    shell:
        "python -m pipeline fit --params {params.stage:q} --subject {wildcards.subject}"
        " --manifest {input.manifest} --crops {input.crops} --masks {input.masks}"
        " --keypoints {input.keypoints} --output {output.fit} --report {output.report}"
        " --overlays {output.overlays} {params.height} 2> {log}"

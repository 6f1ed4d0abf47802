# Preprocess: a subject's image stages in one job (each model loads once): person detection
# and square crop, mask refined by matting, 2D keypoints and the overlay sheets of every action.
# The files stay per action inside the four subject folders (pipeline/preprocess.py).


rule preprocess:
    input:
        manifest=RESULTS / "manifest" / "{subject}.json",
    output:
        crops=directory(RESULTS / "crop" / "{subject}"),
        masks=directory(RESULTS / "mask" / "{subject}"),
        keypoints=directory(RESULTS / "keypoints" / "{subject}"),
        overlays=report(
            directory(RESULTS / "overlay" / "{subject}"),
            patterns=["{action}.png"],
            caption="report/overlay.rst",
            category="Preprocessing",
            subcategory="{subject}",
            labels={"subject": "{subject}", "action": "{action}"},
        ),
    log:
        LOGS / "preprocess" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "preprocess" / "{subject}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        stage=sections_params("detect", "mask", "keypoints"),
        truth=lambda wildcards: TRUTH / wildcards.subject,
    shell:
        "python -m pipeline preprocess --params {params.stage:q} --subject {wildcards.subject}"
        " --manifest {input.manifest} --truth {params.truth} --crops {output.crops}"
        " --masks {output.masks} --keypoints {output.keypoints} --overlays {output.overlays}"
        " 2> {log}"

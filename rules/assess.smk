# Assessment: everything after a reconstruction, in one job a subject (pipeline/assess.py):
# with a truth, the scores and the render beside it; then the self-check against the inputs,
# the colours from the photos and the skinned avatar (.glb). A subject without a truth
# (data.predict_subjects) gets the last three (assess_untruthed). The experiments' meshes
# are scored by the evaluate rule alone (rules/evaluate.smk).


ruleorder: assess > evaluate


rule assess:
    input:
        unpack(assess_inputs),
    output:
        **assess_output(truthed=True),
    log:
        LOGS / "assess" / "{model}" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "assess" / "{model}" / "{subject}.tsv"
    wildcard_constraints:
        model=r"[^/]+",
        subject=any_of(SCORED_SUBJECTS),
    conda:
        "../envs/core.yaml"
    threads: config["evaluate"]["threads"]
    resources:
        mem_mb=4000,
    params:
        stage=sections_params("colour", "fit", "export", "report", "evaluate"),
        truth=assess_truth_options,
    shell:
        "IGL_NUM_THREADS={threads} python -m pipeline assess --params {params.stage:q}"
        " --mesh {input.mesh} --recon {input.recon} --cache {input.cache}"
        " --fit {input.fit} --fit-report {input.fit_report}"
        " --selfcheck {output.selfcheck} --reposed {output.reposed}"
        " --overlays {output.overlays} --coloured {output.coloured}"
        " --body-coloured {output.body_coloured} --colour-report {output.colour_report}"
        " --colour-figure {output.colour_figure} --avatar {output.avatar}"
        " --model {wildcards.model} {params.truth} 2> {log}"


use rule assess as assess_untruthed with:
    output:
        **assess_output(truthed=False),
    wildcard_constraints:
        model=r"[^/]+",
        subject=any_of(PREDICT_SUBJECTS),

# Quality without truth: each reconstruction reposed into its input actions, reprojected
# into its input views against their mattes, and its mesh health.


rule selfcheck:
    input:
        mesh=RESULTS / "recon" / "{model}" / "{subject}.ply",
        recon=RESULTS / "recon" / "{model}" / "{subject}.json",
        cache=RESULTS / "cache" / "{subject}.h5",
        fit=RESULTS / "fit" / "{subject}.json",
    output:
        report=RESULTS / "eval" / "{model}" / "{subject}.selfcheck.json",
        reposed=directory(RESULTS / "recon" / "{model}" / "reposed" / "{subject}"),
        overlays=directory(RESULTS / "report" / "selfcheck" / "{model}" / "{subject}"),
    log:
        LOGS / "selfcheck" / "{model}" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "selfcheck" / "{model}" / "{subject}.tsv"
    conda:
        "../envs/core.yaml"
    resources:
        mem_mb=4000,
    shell:
        "python -m pipeline selfcheck --mesh {input.mesh} --recon {input.recon}"
        " --cache {input.cache} --output {output.report} --reposed {output.reposed}"
        " --overlays {output.overlays} --fit {input.fit}"
        " 2> {log}"

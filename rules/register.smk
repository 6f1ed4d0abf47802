# Register: the body model fitted to a subject's canonical scan in 3D; the scan unposed into
# the pipeline's canonical frame (register.enabled: scans in a data set's own frame and pose).


if REGISTER:

    rule register:
        input:
            scan=lambda wildcards: DATA / LAYOUT.scan_of(wildcards.subject),
            rotation=lambda wildcards: (
                []
                if LAYOUT.scan_rotation is None
                else DATA / LAYOUT.rotation_of(wildcards.subject)
            ),
        output:
            directory(RESULTS / "register" / "{subject}"),
        log:
            LOGS / "register" / "{subject}.log",
        benchmark:
            RESULTS / "benchmarks" / "register" / "{subject}.tsv"
        conda:
            "../envs/core.yaml"
        threads: 1
        resources:
            mem_mb=3000,
        params:
            stage=stage_params("register"),
            frame=FRAME,
            rotation=lambda wildcards, input: (
                f"--rotation {input.rotation}" if input.rotation else ""
            ),
            body_model=config["fit"]["body_model"],
        shell:
            "python -m pipeline register --params {params.stage:q} --subject {wildcards.subject}"
            " --scan {input.scan} {params.rotation} --frame {params.frame:q}"
            " --body-model {params.body_model} --output {output} 2> {log}"

# Every reconstruction (and its fitted body, the baseline) written back in the data set's
# frame, pose and unit (data.frame), named as a submission needs: by the fitted body alone.
rule submission:
    input:
        mesh=RESULTS / "recon" / "{model}" / "{subject}.ply",
        recon=RESULTS / "recon" / "{model}" / "{subject}.json",
        fit=RESULTS / "fit" / "{subject}.npz",
    output:
        mesh=RESULTS / "submission" / "{model}" / "{subject}.obj",
        body=RESULTS / "submission" / "{model}" / "fitted_body" / "{subject}.obj",
    log:
        LOGS / "submission" / "{model}" / "{subject}.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        stage=stage_params("fit"),
        frame=FRAME,
    shell:
        "python -m pipeline export-dataset --params {params.stage:q} --mesh {input.mesh}"
        " --recon {input.recon} --fit {input.fit} --frame {params.frame:q}"
        " --output {output.mesh} --body-output {output.body} 2> {log}"

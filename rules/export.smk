# The reposable avatar: each reconstruction as a skinned glTF 2.0 binary (.glb) on the
# fitted body's bones, with the weights the pipeline's own reposing uses, decimated to
# export.faces and textured with the colour stage's colours.


rule export_avatar:
    input:
        mesh=RESULTS / "recon" / "{model}" / "coloured" / "{subject}.ply",
        recon=RESULTS / "recon" / "{model}" / "{subject}.json",
        fit=RESULTS / "fit" / "{subject}.npz",
    output:
        RESULTS / "recon" / "{model}" / "{subject}.glb",
    log:
        LOGS / "export_avatar" / "{model}" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "export_avatar" / "{model}" / "{subject}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        stage=sections_params("fit", "export"),
    shell:
        "python -m pipeline export --params {params.stage:q} --mesh {input.mesh}"
        " --recon {input.recon} --fit {input.fit} --output {output} 2> {log}"


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

# The reposable avatar: each reconstruction as a skinned glTF 2.0 binary (.glb) on the
# fitted body's bones, with the weights the pipeline's own reposing uses.


rule export_avatar:
    input:
        mesh=RESULTS / "recon" / "{model}" / "{subject}.ply",
        recon=RESULTS / "recon" / "{model}" / "{subject}.json",
        fit=RESULTS / "fit" / "{subject}.npz",
    output:
        RESULTS / "recon" / "{model}" / "{subject}.glb",
    log:
        LOGS / "export_avatar" / "{model}" / "{subject}.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        stage=stage_params("fit"),
    shell:
        "python -m pipeline export --params {params.stage:q} --mesh {input.mesh}"
        " --recon {input.recon} --fit {input.fit} --output {output} 2> {log}"

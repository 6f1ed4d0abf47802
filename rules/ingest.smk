# Ingest: decode and check every photo of a subject, write the manifest later stages read.
# A checkpoint: the actions of a subject are known once its manifest exists.


checkpoint ingest:
    input:
        data=DATA / "{subject}",
    output:
        RESULTS / "manifest" / "{subject}.json",
    log:
        LOGS / "ingest" / "{subject}.log",
    benchmark:
        RESULTS / "benchmarks" / "ingest" / "{subject}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        stage=stage_params("ingest"),
    shell:
        "python -m pipeline ingest --params {params.stage:q} --subject {wildcards.subject}"
        " --data-dir {input.data} --output {output} 2> {log}"

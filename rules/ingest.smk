# Ingest: decode and check every photo of a subject, write the manifest later stages read.
# Its input is the subject's photo folder under data.layout.photos (<data set>/<subject> by
# default). No rule needs a subject's actions to plan: preprocess writes per-subject folders.


rule ingest:
    input:
        photos=lambda wildcards: DATA / LAYOUT.photo_folder(wildcards.subject),
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
        data=str(DATA),
        # a function: the templates' {subject}, {action}, {view} are not wildcards
        layout=lambda wildcards: LAYOUT_JSON,
    shell:
        "python -m pipeline ingest --params {params.stage:q} --subject {wildcards.subject}"
        " --data-dir {params.data:q} --layout {params.layout:q} --output {output} 2> {log}"

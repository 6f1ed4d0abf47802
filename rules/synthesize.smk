# The embedded default data set: synthetic clothed humans from the Anny body model.
# One job per subject; photos, cameras and the truth/ tree (which later stages never read).
# One thread: the job is single-threaded (1 core busy over the demo's 7 subjects).


if SYNTHETIC:

    rule synthesize:
        output:
            photos=directory(DATA / "{subject}"),
            truth=directory(TRUTH / "{subject}"),
        log:
            LOGS / "synthesize" / "{subject}.log",
        benchmark:
            RESULTS / "benchmarks" / "synthesize" / "{subject}.tsv"
        conda:
            "../envs/synthesize.yaml"
        threads: 1
        resources:
            mem_mb=4000,
        params:
            stage=synthesize_params,
        shell:
            "python -m pipeline synthesize --params {params.stage:q} --subject {wildcards.subject}"
            " --output {output.photos} --truth {output.truth} 2> {log}"

    rule check_synthetic:
        input:
            photos=DATA / "{subject}",
            truth=TRUTH / "{subject}",
        output:
            RESULTS / "synthetic_checks" / "{subject}.json",
        log:
            LOGS / "check_synthetic" / "{subject}.log",
        benchmark:
            RESULTS / "benchmarks" / "check_synthetic" / "{subject}.tsv"
        conda:
            "../envs/synthesize.yaml"
        threads: 1
        resources:
            mem_mb=2000,
        params:
            stage=synthesize_params,
        shell:
            "python -m pipeline check-synthetic --params {params.stage:q} --subject {wildcards.subject}"
            " --photos {input.photos} --truth {input.truth} --output {output} 2> {log}"

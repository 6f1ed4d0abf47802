# The embedded default data set: synthetic clothed humans from the Anny body model.
# One job per subject; photos, cameras and the truth/ tree (which later stages never read).
# One thread: the job is single-threaded (1 core busy over the demo's 7 subjects).
# synthesize.layout mvp_human writes each subject as an MVP-Human-like stand-in instead
# (pipeline/synthesize/standin.py), plus the data set's split files.
if SYNTHETIC and not STANDIN:

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


if STANDIN:

    # No check_synthetic: the native photos and truth it reads live only inside the job.
    rule synthesize:
        output:
            **standin_output("{subject}"),
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
            dataset=DATA,
            # a function: the templates' {subject}, {action}, {view} are not wildcards
            layout=lambda wildcards: LAYOUT_JSON,
        shell:
            "python -m pipeline synthesize --params {params.stage:q} --subject {wildcards.subject}"
            " --output {output.photos:q} --truth {output.truth:q} --dataset {params.dataset:q}"
            " --data-layout {params.layout:q} 2> {log}"

    rule standin_splits:
        output:
            train=STANDIN_SPLITS[0],
            val=STANDIN_SPLITS[1],
            test=STANDIN_SPLITS[2],
        log:
            LOGS / "standin_splits.log",
        conda:
            "../envs/synthesize.yaml"
        threads: 1
        params:
            folder=DATA / "splits",
            train=" ".join(s for s in SUBJECTS if s not in VAL_SUBJECTS + TEST_SUBJECTS),
            val=" ".join(VAL_SUBJECTS),
            test=" ".join(TEST_SUBJECTS),
        shell:
            "python -m pipeline standin-splits --folder {params.folder:q} --train {params.train}"
            " --val {params.val} --test {params.test} 2> {log}"

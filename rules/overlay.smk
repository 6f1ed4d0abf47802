# Overlay: boxes, mask contours and keypoints drawn over an action's crops, for people to check.


rule overlay:
    input:
        crops=RESULTS / "crop" / "{subject}" / "{action}",
        masks=RESULTS / "mask" / "{subject}" / "{action}",
        keypoints=RESULTS / "keypoints" / "{subject}" / "{action}.json",
    output:
        report(
            RESULTS / "overlay" / "{subject}" / "{action}.png",
            caption="report/overlay.rst",
            category="Preprocessing",
            subcategory="{subject}",
            labels={"subject": "{subject}", "action": "{action}"},
        ),
    log:
        LOGS / "overlay" / "{subject}" / "{action}.log",
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "python -m pipeline overlay --subject {wildcards.subject} --action {wildcards.action}"
        " --crops {input.crops} --masks {input.masks} --keypoints {input.keypoints}"
        " --output {output} 2> {log}"

# Pixel2ISDF pipeline: clothed 3D humans from multi-view, multi-pose photos.
# Run: snakemake --cores N   (README.md lists every target and how to rerun one stage)
from snakemake.utils import min_version

from pipeline.config import validate_config

min_version("9.0")


configfile: "config.yaml"


# pipeline/schemas/config.schema.yaml, defaults filled in: the validation of the stages' own
# command lines (python -m pipeline), with the schema read by libyaml, 0.5 s sooner per parse
# than snakemake.utils.validate (docs/results.md, "parse_time").
config.update(
    validate_config(
        config, source=" + ".join(map(str, workflow.configfiles)) or "--config"
    )
)


report: "rules/report/workflow.rst"


include: "rules/common.smk"
include: "rules/synthesize.smk"
include: "rules/ingest.smk"
include: "rules/preprocess.smk"
include: "rules/fit.smk"
include: "rules/register.smk"
include: "rules/cache.smk"
include: "rules/train.smk"
include: "rules/reconstruct.smk"
include: "rules/evaluate.smk"
include: "rules/assess.smk"
include: "rules/submission.smk"
include: "rules/report.smk"
include: "rules/pifu.smk"
include: "rules/ablation.smk"
include: "rules/views_study.smk"
include: "rules/generalisation.smk"
include: "rules/learning_curve.smk"


rule all:
    default_target: True
    input:
        outputs=all_targets,

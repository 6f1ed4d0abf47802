# Helpers shared by the rules: paths, wildcard constraints, stage parameters and targets.
import json
import re
import shlex
from pathlib import Path

from pipeline.ablation import KEYPOINTS_ONLY_FIT, VARIANTS, merged
from pipeline.ablation import normal_section, train_section
from pipeline.config import curve_reports as config_curve_reports
from pipeline.layout import Layout
from pipeline.synthesize.population import population_of
from pipeline.synthesize.population import subject_params
from pipeline.synthesize.standin import outputs as standin_outputs
from pipeline.training.given import check_given_checkpoints

# The Snakefile's validate_config has filled data.split_files' subject lists and checked,
# before any work: the layout's path templates (mask.backend given needs its masks), the
# registration of scans in another frame, pose or place, disjoint splits within
# data.subjects, synthesize.populations, the heights and the learning curve.
DATASET = config["data"]["dataset"]
SUBJECTS = config["data"]["subjects"]
DATA = Path(config["data"]["root"]) / DATASET
LAYOUT = Layout.from_config(config["data"]["layout"])  # where the data set's files lie
# The layout as the ingest job reads it (--layout): changing it reruns ingest.
LAYOUT_JSON = json.dumps(config["data"]["layout"], sort_keys=True)
TRUTH = DATA / "truth"
REGISTER = config["register"]["enabled"]
FRAME = json.dumps(config["data"]["frame"], sort_keys=True)
SCANS = json.dumps(config["data"]["scans"], sort_keys=True)  # truth scans with holes
RESULTS = Path(config["results"]) / DATASET
LOGS = Path("logs") / DATASET
SYNTHETIC = config["synthesize"]["enabled"]
# synthesize.layout mvp_human: an MVP-Human-like stand-in (rules/synthesize.smk).
STANDIN = SYNTHETIC and config["synthesize"].get("layout", "native") == "mvp_human"
STAGE_ORDER = [
    "ingest",
    "preprocess",
    "fit",
    "cache",
    "train_normal",
    "train",
    "reconstruct",
    "evaluate",
]
STOP_AFTER = STAGE_ORDER.index(config["stop_after"])
# Validation subjects choose (the checkpoint kept, any tuned value); test subjects are only
# scored; predict subjects have no scan. Training subjects are the rest.
VAL_SUBJECTS = [s for s in SUBJECTS if s in config["data"]["val_subjects"]]
TEST_SUBJECTS = [s for s in SUBJECTS if s in config["data"]["test_subjects"]]
PREDICT_SUBJECTS = [s for s in SUBJECTS if s in config["data"]["predict_subjects"]]
TRAIN_SUBJECTS = [
    s for s in SUBJECTS if s not in VAL_SUBJECTS + TEST_SUBJECTS + PREDICT_SUBJECTS
]
HELD_OUT = " ".join(TEST_SUBJECTS)  # refused by every training job (--held-out)
NORMAL_INPUTS = ("normal", "image_normal")
RECON_SUBJECTS = {
    "test": TEST_SUBJECTS + PREDICT_SUBJECTS,
    "train": TRAIN_SUBJECTS,
    "all": SUBJECTS,
}[config["reconstruct"]["subjects"]]
# The reconstructed subjects with a truth to score against.
SCORED_SUBJECTS = [s for s in RECON_SUBJECTS if s not in PREDICT_SUBJECTS]

GIVEN_CHECKPOINT = config["train"]["checkpoint"]
GIVEN_NORMAL = config["train_normal"]["checkpoint"]
PIXEL2ISDF_CHECKPOINT = (
    GIVEN_CHECKPOINT or RESULTS / "train" / "pixel2isdf" / "checkpoint.pt"
)
NORMAL_CHECKPOINT = GIVEN_NORMAL or RESULTS / "train" / "normal_net" / "checkpoint.pt"
GIVEN_PIFU = {k: v for k, v in config["pifu"]["checkpoints"].items() if v}
if GIVEN_CHECKPOINT or GIVEN_NORMAL or GIVEN_PIFU:
    check_given_checkpoints(config)  # before any work: kind and model settings

TRAINS_HERE = STOP_AFTER >= STAGE_ORDER.index("train_normal") and not GIVEN_CHECKPOINT
if TRAINS_HERE and not TRAIN_SUBJECTS:
    raise ValueError(
        f"no training subject: every subject of data.subjects {SUBJECTS} is in "
        "data.val_subjects, data.test_subjects or data.predict_subjects (no truth); leave "
        "at least one subject with a scan out, give a trained model (train.checkpoint, "
        "and train_normal.checkpoint for a normal-map input), or set stop_after: cache"
    )
# The trainings this run does, and the checkpoint each keeps (best: chosen on validation).
TRAININGS = {}
if TRAINS_HERE:
    TRAININGS["train"] = config["train"]["run"]
    if not GIVEN_NORMAL and config["train"]["model"]["input"] in NORMAL_INPUTS:
        TRAININGS["train_normal"] = config["train_normal"]["run"]
PIFU_TRAINED = [m for m in config["pifu"]["models"] if m not in GIVEN_PIFU]
if (
    config["pifu"]["enabled"]
    and PIFU_TRAINED
    and STOP_AFTER >= STAGE_ORDER.index("cache")
):
    TRAININGS["pifu.train"] = config["pifu"]["train"]["run"]
KEEPING_BEST = [
    f"{name}.run.keep" for name, run in TRAININGS.items() if run["keep"] == "best"
]
if KEEPING_BEST and not VAL_SUBJECTS:
    raise ValueError(
        f"data.val_subjects is empty, but {', '.join(KEEPING_BEST)} is best: the "
        "checkpoint is chosen on the validation subjects. List one or more subjects "
        "with a scan in data.val_subjects (never a test subject), or set "
        f"{', '.join(KEEPING_BEST)}: last"
    )


wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS),
    action=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    pifu_model="pifu|temporal_pifu",


def stage_params(section):
    """The stage's config section (dotted for a nested one: pifu.train) plus the seed, as
    the JSON `python -m pipeline` reads.

    Passed through `params:` so that changing a stage's parameters reruns that stage (and
    what depends on it) only. Mirrors pipeline.config.stage_params.
    """
    return json.dumps({"seed": config["seed"], **section_of(section)}, sort_keys=True)


PIFU_MODELS = config["pifu"]["models"]
ABLATION = config["ablation"]
ABLATION_STEPS = ABLATION["steps"] or config["train"]["run"]["steps"]
VIEWS_STUDY = config["views_study"]


def pifu_checkpoint(wildcards):
    """A PIFu model's checkpoint: given by path (pifu.checkpoints), or trained here."""
    model = wildcards.pifu_model
    return GIVEN_PIFU.get(model) or RESULTS / "train" / model / "checkpoint.pt"


def without(section, key):
    """A config section without one of its keys."""
    return {k: v for k, v in section.items() if k != key}


def height_option(wildcards):
    """The fit's --height-m option: the subject's known height (fit.height_m), if any."""
    height = config["fit"]["height_m"].get(wildcards.subject)
    return "" if height is None else f"--height-m {height}"


def synthesize_params(wildcards):
    """A subject's synthesize parameters: the section's, or its population's
    (synthesize.populations; pipeline/synthesize/population.py). synthesize.layout is left
    out while native (pipeline.config.LEFT_OUT_AT_DEFAULT): adding it reran nothing."""
    params = subject_params(config, wildcards.subject)
    if params.get("layout") == "native":
        params = without(params, "layout")
    return json.dumps(params, sort_keys=True)


STANDIN_SPLITS = [
    DATA / "splits" / f"{split}.txt" for split in ("train", "val", "test")
]


def standin_output(subject):
    """The stand-in's outputs for a subject (or the "{subject}" wildcard): its photo folder,
    the mask folder when apart, the scan's OBJ, .mtl, .png and rotation file, and its
    standin_truth folder (pipeline.synthesize.standin.outputs)."""
    places = standin_outputs(config["data"]["layout"], subject)
    return {
        name: directory(DATA / path) if is_dir else DATA / path
        for name, (path, is_dir) in places.items()
    }


def sections_params(*sections):
    """The parameters of a stage reading several sections (the preprocess rule), one
    stage_params object per section. Mirrors pipeline.config.sections_params."""
    return json.dumps(
        {s: {"seed": config["seed"], **section_of(s)} for s in sections}, sort_keys=True
    )


def section_of(section):
    """A config section by its dotted path (``train``, ``pifu.train``)."""
    values = config
    for key in section.split("."):
        values = values[key]
    return values


def run_of(section):
    """The ``run`` settings of a training section (dotted for a nested one: pifu.train)."""
    return section_of(section)["run"]


def gpus_of(section):
    """GPUs for a training job: one per process when its device is cuda, else 0 (auto asks
    for none)."""
    run = run_of(section)
    return run["processes"] if run["device"] == "cuda" else 0


def launcher_of(section):
    """How a training job starts: python, or torchrun with one process per GPU (or per CPU
    process over gloo) when run.processes > 1."""
    n = run_of(section)["processes"]
    return "python" if n == 1 else f"torchrun --standalone --nproc-per-node {n}"


def split_caches():
    """The caches training reads: the training subjects' and the validation subjects'
    (never a test subject's)."""
    return {
        "train": expand(RESULTS / "cache" / "{subject}.h5", subject=TRAIN_SUBJECTS),
        "val": expand(RESULTS / "cache" / "{subject}.h5", subject=VAL_SUBJECTS),
    }


def train_inputs(wildcards):
    """The caches of the training and validation subjects, plus the normal network's
    checkpoint when the model's input uses predicted normals."""
    inputs = split_caches()
    if config["train"]["model"]["input"] in NORMAL_INPUTS:
        inputs["normal"] = NORMAL_CHECKPOINT
    return inputs


def curve_inputs(wildcards):
    """The train.json of every training run the model went through here (none for a
    checkpoint given by path)."""
    runs = [] if GIVEN_CHECKPOINT else ["pixel2isdf"]
    if config["train"]["model"]["input"] in NORMAL_INPUTS and not GIVEN_NORMAL and runs:
        runs.insert(0, "normal_net")
    return [RESULTS / "train" / run / "train.json" for run in runs]


def split_of(subject):
    """How a subject is used: train, val (chooses), test (scored against its truth, never
    chooses) or predict (no truth)."""
    if subject in PREDICT_SUBJECTS:
        return "predict"
    if subject in VAL_SUBJECTS:
        return "val"
    return "test" if subject in TEST_SUBJECTS else "train"


def truth_folder(subject):
    """The folder of a subject's canonical scan in the pipeline's frame: the register
    stage's (register.enabled) or the data set's truth/<subject>."""
    return RESULTS / "register" / subject if REGISTER else TRUTH / subject


def dataset_frame_inputs(wildcards):
    """A registered data set's meshes in its own frame and its own scan (and rotation
    file), which evaluate scores there too; nothing otherwise."""
    if not REGISTER:
        return {}
    subject, model = wildcards.subject, wildcards.model
    inputs = {
        "dataset_mesh": RESULTS / "submission" / model / f"{subject}.obj",
        "dataset_body": RESULTS
        / "submission"
        / model
        / "fitted_body"
        / f"{subject}.obj",
        "dataset_scan": DATA / LAYOUT.scan_of(subject),
    }
    if LAYOUT.scan_rotation is not None:
        inputs["dataset_rotation"] = DATA / LAYOUT.rotation_of(subject)
    return inputs


def dataset_frame_options(wildcards, input):
    """The evaluate options of :func:`dataset_frame_inputs` (with data.frame.unit_m)."""
    names = ("dataset_mesh", "dataset_body", "dataset_scan", "dataset_rotation")
    options = [
        f"--{name.replace('_', '-')} {input[name]}"
        for name in names
        if name in input.keys()
    ]
    if options:
        options.append(f"--unit-m {config['data']['frame']['unit_m']}")
    return " ".join(options)


def truth_of(wildcards):
    """A subject's truth folder, or nothing for a subject without a scan."""
    if wildcards.subject in PREDICT_SUBJECTS:
        return []
    return truth_folder(wildcards.subject)


def truth_option(wildcards):
    """The --truth option of a stage that reads the truth when there is one."""
    return (
        ""
        if wildcards.subject in PREDICT_SUBJECTS
        else f"--truth {truth_of(wildcards)}"
    )


def any_of(names):
    """A wildcard constraint matching exactly one of ``names`` (none: never matches)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def assess_inputs(wildcards):
    """What the assess job reads: the reconstruction, the subject's cache and fit, and,
    where the subject has one, its truth (and the data-set-frame meshes of a registered
    data set, which it scores there too)."""
    folder = RESULTS / "recon" / wildcards.model
    inputs = {
        "mesh": folder / f"{wildcards.subject}.ply",
        "recon": folder / f"{wildcards.subject}.json",
        "cache": RESULTS / "cache" / f"{wildcards.subject}.h5",
        "fit": RESULTS / "fit" / f"{wildcards.subject}.npz",
        "fit_report": RESULTS / "fit" / f"{wildcards.subject}.json",
    }
    if wildcards.subject not in PREDICT_SUBJECTS:
        inputs["truth"] = truth_folder(wildcards.subject)
        inputs.update(dataset_frame_inputs(wildcards))
    return inputs


def assess_output(truthed):
    """The assess job's outputs (pipeline/assess.py); ``truthed``: with the scores and the
    render beside the truth."""
    recon, evals = RESULTS / "recon" / "{model}", RESULTS / "eval" / "{model}"
    outputs = {
        "selfcheck": evals / "{subject}.selfcheck.json",
        "reposed": directory(recon / "reposed" / "{subject}"),
        "overlays": directory(
            RESULTS / "report" / "selfcheck" / "{model}" / "{subject}"
        ),
        "coloured": recon / "coloured" / "{subject}.ply",
        "body_coloured": recon / "fitted_body" / "{subject}.ply",
        "colour_report": evals / "{subject}.colour.json",
        "colour_figure": report_figure("colour", "Colour"),
        "avatar": recon / "{subject}.glb",
    }
    if truthed:
        outputs["evaluation"] = evals / "{subject}.json"
        outputs["render"] = report_figure("render", "Reconstructions")
    return outputs


def report_figure(name, category):
    """A subject's figure under report/<name>/<model>/, flagged for `snakemake --report`
    with the caption report/<name>.rst."""
    return report(
        RESULTS / "report" / name / "{model}" / "{subject}.png",
        caption=f"report/{name}.rst",
        category=category,
        subcategory="{model}",
        labels={"model": "{model}", "subject": "{subject}"},
    )


def assess_truth_options(wildcards, input, output):
    """The assess options that read the truth: the truth folder, the scores' and the
    render's files, the scans' settings and a registered data set's meshes (none for a
    subject without a truth)."""
    if "evaluation" not in output.keys():
        return ""
    return (
        f"--truth {input.truth} --evaluation {output.evaluation}"
        f" --render {output.render} --scans {shlex.quote(SCANS)} "
        + dataset_frame_options(wildcards, input)
    )


def evaluate_summary_inputs(wildcards):
    """The scores of the subjects with a truth and the truth-free checks of all."""
    return {
        "reports": expand(
            RESULTS / "eval" / wildcards.model / "{subject}.json",
            subject=SCORED_SUBJECTS,
        ),
        "selfchecks": expand(
            RESULTS / "eval" / wildcards.model / "{subject}.selfcheck.json",
            subject=RECON_SUBJECTS,
        ),
        "colours": expand(
            RESULTS / "eval" / wildcards.model / "{subject}.colour.json",
            subject=RECON_SUBJECTS,
        ),
    }


def all_targets(wildcards):
    """Every final output up to config["stop_after"]."""
    targets = expand(RESULTS / "manifest" / "{subject}.json", subject=SUBJECTS)
    if SYNTHETIC and not STANDIN:
        targets += expand(
            RESULTS / "synthetic_checks" / "{subject}.json", subject=SUBJECTS
        )
    if STANDIN:
        targets += STANDIN_SPLITS  # rules/synthesize.smk
    if STOP_AFTER >= STAGE_ORDER.index("preprocess"):
        targets += expand(RESULTS / "overlay" / "{subject}", subject=SUBJECTS)
    if STOP_AFTER >= STAGE_ORDER.index("fit"):
        targets += expand(RESULTS / "fit" / "{subject}.npz", subject=SUBJECTS)
    if STOP_AFTER >= STAGE_ORDER.index("cache"):
        targets += expand(RESULTS / "cache" / "{subject}.h5", subject=SUBJECTS)
    if STOP_AFTER == STAGE_ORDER.index("train_normal"):
        targets.append(NORMAL_CHECKPOINT)
    if STOP_AFTER >= STAGE_ORDER.index("train"):
        targets.append(PIXEL2ISDF_CHECKPOINT)
    if STOP_AFTER >= STAGE_ORDER.index("reconstruct"):
        targets += expand(
            RESULTS / "recon" / "pixel2isdf" / "{subject}.ply", subject=RECON_SUBJECTS
        )
        targets += expand(
            RESULTS / "eval" / "pixel2isdf" / "{subject}.selfcheck.json",
            subject=RECON_SUBJECTS,
        )
        targets += expand(
            RESULTS / "recon" / "pixel2isdf" / "{subject}.glb", subject=RECON_SUBJECTS
        )
        targets += expand(
            RESULTS / "eval" / "pixel2isdf" / "{subject}.colour.json",
            subject=RECON_SUBJECTS,
        )
        if REGISTER:  # in the data set's frame, as a submission
            targets += expand(
                RESULTS / "submission" / "pixel2isdf" / "{subject}.obj",
                subject=RECON_SUBJECTS,
            )
    if STOP_AFTER >= STAGE_ORDER.index("cache") and config["pifu"]["enabled"]:
        targets.append(RESULTS / "eval" / "pifu" / "table2.csv")  # its own branch
        targets += expand(
            RESULTS / "report" / "render" / "pifu" / "{subject}.png",
            subject=TEST_SUBJECTS,
        )
    if STOP_AFTER >= STAGE_ORDER.index("evaluate"):
        targets.append(RESULTS / "eval" / "pixel2isdf" / "metrics.csv")
        if not GIVEN_CHECKPOINT:
            targets.append(RESULTS / "report" / "training_curves.png")
        targets += expand(
            RESULTS / "report" / "render" / "pixel2isdf" / "{subject}.png",
            subject=SCORED_SUBJECTS,
        )
    return targets


# The experiments (rules/ablation.smk, rules/views_study.smk).


def ablation_cache(body, subject):
    """The cache a variant's body reads: the main one, or the keypoint-only or truth one."""
    if body == "fit":
        return RESULTS / "cache" / f"{subject}.h5"
    return RESULTS / "ablation" / "cache" / body / f"{subject}.h5"


def ablation_train(wildcards):
    """The train section of a variant (its model overrides and ablation.steps)."""
    return train_section(config["train"], wildcards.variant, ABLATION_STEPS)


def ablation_train_inputs(wildcards):
    """The variant's caches, and the normal network its input needs (masked or not)."""
    body = VARIANTS[wildcards.variant].body
    inputs = {
        "train": [ablation_cache(body, s) for s in TRAIN_SUBJECTS],
        "val": [ablation_cache(body, s) for s in VAL_SUBJECTS],
    }
    model = ablation_train(wildcards)["model"]
    if model["input"] in NORMAL_INPUTS:
        inputs["normal"] = (
            NORMAL_CHECKPOINT
            if model["masked_input"]
            else RESULTS / "ablation" / "normal_net_unmasked" / "checkpoint.pt"
        )
    return inputs


def ablation_reports(wildcards):
    """Every variant's evaluation of every test subject, per seed."""
    return expand(
        RESULTS / "eval" / "ablation" / "{variant}" / "seed{seed}" / "{subject}.json",
        variant=ABLATION["variants"],
        seed=ABLATION["seeds"],
        subject=TEST_SUBJECTS,
    )


CURVE = config["learning_curve"]
# The test set of each test subject: in-distribution, or its synthesize population.
TEST_SETS = {s: population_of(config, s) for s in TEST_SUBJECTS}


def curve_subjects(size):
    """The training subjects of a learning-curve point: the first ``size`` of them."""
    size = int(size)
    if size > len(TRAIN_SUBJECTS):
        raise ValueError(
            f"learning_curve.sizes asks for {size} training subjects; this configuration "
            f"has {len(TRAIN_SUBJECTS)} ({', '.join(TRAIN_SUBJECTS)}). Add subjects to "
            "data.subjects (presets/learning_curve.yaml has 24) or lower the size"
        )
    return TRAIN_SUBJECTS[:size]


def curve_caches(wildcards):
    """The caches of a curve point's training subjects and of the validation subjects."""
    return {
        "train": expand(
            RESULTS / "cache" / "{subject}.h5", subject=curve_subjects(wildcards.size)
        ),
        "val": expand(RESULTS / "cache" / "{subject}.h5", subject=VAL_SUBJECTS),
    }


def curve_train_inputs(wildcards):
    """A curve point's caches, and the normal network trained on the same subjects."""
    inputs = curve_caches(wildcards)
    if config["train"]["model"]["input"] in NORMAL_INPUTS:
        inputs["normal"] = RESULTS / "curve" / f"n{wildcards.size}" / "normal_net"
        inputs["normal"] = inputs["normal"] / "checkpoint.pt"
    return inputs


def curve_model(wildcards):
    """The train.model of a curve run: the config's, with its variant's overrides."""
    name = wildcards.get("curve_variant", "full")
    return train_section(config["train"], name, None)["model"]


def curve_stage(section, wildcards):
    """The stage parameters of a curve point: the section's, with the step budget scaled
    to the point's training subjects (learning_curve.<section>_steps_per_subject) and, for
    the model, the seed of the point and its variant's overrides."""
    size = len(curve_subjects(wildcards.size))
    values = section_of(section)
    if section == "train":
        values = train_section(values, wildcards.get("curve_variant", "full"), None)
    run = {**values["run"], "steps": CURVE[f"{section}_steps_per_subject"] * size}
    seed = int(wildcards.seed) if "seed" in wildcards.keys() else config["seed"]
    return json.dumps({"seed": seed, **values, "run": run}, sort_keys=True)


def curve_reports(wildcards):
    """Every test subject's evaluation for every curve point and seed, and for every
    variant at its sizes (learning_curve.variants): pipeline.config.curve_reports."""
    return config_curve_reports(config)


def views_reconstruct_params(wildcards):
    """The reconstruct section with the run's view count and selection."""
    views = None if wildcards.n_views == "all" else int(wildcards.n_views)
    section = {
        **config["reconstruct"],
        "views": views,
        "view_selection": wildcards.selection,
    }
    return json.dumps({"seed": config["seed"], **section}, sort_keys=True)


def views_reports(wildcards):
    """The evaluation of every test subject for every selection and count."""
    counts = ["all" if c is None else str(c) for c in VIEWS_STUDY["counts"]]
    return expand(
        RESULTS / "eval" / "views" / "{selection}-{n_views}" / "{subject}.json",
        selection=VIEWS_STUDY["selections"],
        n_views=counts,
        subject=TEST_SUBJECTS,
    )

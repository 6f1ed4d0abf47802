"""The three disjoint held-out splits (``data.val_subjects`` chooses, ``data.test_subjects``
is only scored, ``data.predict_subjects`` has no scan; the training subjects are the rest):
refused overlaps, what the training jobs are given, and what training refuses before any work.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from pipeline.config import check_splits, validate_config
from pipeline.errors import PipelineError
from pipeline.ingest import IngestParams, ingest_subject
from pipeline.train import run, run_normal, run_pifu
from tests.cache_fakes import build
from tests.conftest import make_layout, run_snakemake, tiny_config, write_config
from tests.test_train import params

SPLITS = ("val_subjects", "test_subjects", "predict_subjects")
PAIRS = [(a, b) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1:]]


# --- validate_config ------------------------------------------------------------------------


def _data(**splits) -> dict:
    return {"data": {"subjects": ["s0", "s1", "s2", "s3", "s4"], "val_subjects": [],
                     "test_subjects": [], "predict_subjects": [], **splits}}


@pytest.mark.parametrize("first, second", PAIRS, ids=lambda k: k.split("_")[0])
def test_a_subject_in_two_splits_is_refused(first: str, second: str) -> None:
    config = _data(**{first: ["s3", "s1"], second: ["s1", "s2", "s3"]})
    with pytest.raises(PipelineError) as info:
        validate_config(config, source="my.yaml")
    message = str(info.value)
    assert f"['s1', 's3'] in both data.{first} and data.{second}" in message
    assert "s2" not in message.split("in both")[0]  # only the shared subjects are named
    assert "my.yaml" in message


@pytest.mark.parametrize("key", SPLITS)
def test_a_split_subject_outside_data_subjects_is_refused(key: str) -> None:
    with pytest.raises(PipelineError) as info:
        validate_config(_data(**{key: ["s1", "zz"]}), source="my.yaml")
    assert f"data.{key}: ['zz'] not in data.subjects" in str(info.value)


def test_disjoint_splits_are_accepted() -> None:
    config = validate_config(_data(val_subjects=["s1"], test_subjects=["s2", "s3"],
                                   predict_subjects=["s4"]))
    check_splits(config)
    assert config["data"]["val_subjects"] == ["s1"]


def test_val_subjects_default_to_empty() -> None:
    assert validate_config({})["data"]["val_subjects"] == []


# --- the workflow: what the training jobs read ----------------------------------------------

SUBJECTS = ["s000", "s001", "s002", "s003", "s004", "s005"]
TRAIN, VAL, TEST, PREDICT = ["s000", "s002"], ["s001"], ["s003", "s005"], ["s004"]
TARGETS = {"train_normal": "results/tiny/train/normal_net/checkpoint.pt",
           "train": "results/tiny/train/pixel2isdf/checkpoint.pt",
           "train_pifu": "results/tiny/train/pifu/checkpoint.pt"}


def _cache(subject: str) -> str:
    return f"results/tiny/cache/{subject}.h5"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder with six subjects (1 action × 2 views), their truth folders and their
    manifests already written (ingest is a checkpoint: a dry run plans no further without)."""
    workdir = tmp_path_factory.mktemp("splits_workflow")
    data = workdir / "data" / "tiny"
    make_layout(data, {s: {"act00": 2} for s in SUBJECTS})
    for subject in SUBJECTS:
        (data / "truth" / subject).mkdir(parents=True)
        ingest_subject(data_dir=data, subject=subject,
                       output=workdir / "results" / "tiny" / "manifest" / f"{subject}.json",
                       params=IngestParams(min_views=2))
    return workdir


def _jobs(text: str) -> dict[str, dict[str, str]]:
    """Rule → its ``input`` line and shell command, from a dry run's ``-p`` output."""
    jobs = {}
    for block in text.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        lines = block.splitlines()
        inputs = next((ln.split(":", 1)[1] for ln in lines if ln.strip().startswith("input:")), "")
        shell = next((ln.split(":", 1)[1] for ln in lines if ln.startswith("Shell command:")), "")
        jobs[rule] = {"input": inputs, "shell": shell}
    return jobs


def _options(shell: str) -> dict[str, list[str]]:
    """``--option value…`` of a shell command (up to its ``2> log``)."""
    tokens = shlex.split(shell.split(" 2> ")[0])
    options: dict[str, list[str]] = {}
    current = None
    for token in tokens:
        if token.startswith("--"):
            current = options.setdefault(token, [])
        elif current is not None:
            current.append(token)
    return options


def _dry_run(workdir: Path, *targets: str) -> tuple[dict[str, dict[str, str]], str]:
    result = run_snakemake(workdir, "--dry-run", "--printshellcmds", *targets, check=False)
    text = result.stdout + result.stderr
    return _jobs(result.stdout), f"snakemake exited {result.returncode}:\n{text[-3000:]}"


@pytest.fixture(scope="module")
def planned(ingested: Path) -> tuple[dict[str, dict[str, str]], str]:
    """The dry run of the three trainings with every split in use."""
    write_config(ingested, tiny_config(
        stop_after="train", pifu={"enabled": True},
        data={"subjects": SUBJECTS, "val_subjects": VAL, "test_subjects": TEST,
              "predict_subjects": PREDICT}))
    return _dry_run(ingested, *TARGETS.values())


@pytest.mark.slow
@pytest.mark.parametrize("rule", list(TARGETS))
def test_training_reads_training_and_validation_caches_only(planned, rule: str) -> None:
    jobs, log = planned
    assert rule in jobs, log
    shell = jobs[rule]["shell"]
    options = _options(shell)
    assert options["--train-caches"] == [_cache(s) for s in TRAIN], shell
    assert options["--val-caches"] == [_cache(s) for s in VAL], shell
    assert options["--held-out"] == TEST, shell
    for subject in TEST + PREDICT:  # no test (nor truth-free) subject's cache is read
        assert _cache(subject) not in shell
        assert _cache(subject) not in jobs[rule]["input"]


@pytest.mark.slow
def test_empty_val_subjects_with_keep_last_is_accepted(ingested: Path) -> None:
    write_config(ingested, tiny_config(
        stop_after="train", train={"run": {"keep": "last"}},
        train_normal={"run": {"keep": "last"}},
        data={"subjects": SUBJECTS, "val_subjects": [], "test_subjects": TEST,
              "predict_subjects": PREDICT}))
    jobs, log = _dry_run(ingested, TARGETS["train_normal"], TARGETS["train"])
    for rule in ("train_normal", "train"):
        assert rule in jobs, log
        options = _options(jobs[rule]["shell"])
        assert options["--val-caches"] == [], jobs[rule]["shell"]
        assert options["--train-caches"] == [_cache(s) for s in sorted(TRAIN + VAL)]
        assert options["--held-out"] == TEST


def _parse(workdir: Path, config: dict) -> str:
    """The text of a dry run (no target) refused when the Snakefile is read."""
    write_config(workdir, config)
    result = run_snakemake(workdir, "--dry-run", check=False)
    assert result.returncode != 0, result.stdout[-2000:]
    return result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("best", [("train", "train_normal"), ("train_normal",)], ids="+".join)
def test_snakefile_refuses_keep_best_without_val_subjects(tmp_path: Path, best) -> None:
    sections = {name: {"run": {"keep": "best" if name in best else "last"}}
                for name in ("train", "train_normal")}
    text = _parse(tmp_path, tiny_config(stop_after="train", **sections))
    assert "data.val_subjects is empty" in text
    for name in ("train", "train_normal"):
        assert (f"{name}.run.keep" in text) == (name in best), text[-2000:]
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_snakefile_refuses_overlapping_splits(tmp_path: Path) -> None:
    text = _parse(tmp_path, tiny_config(data={"val_subjects": ["s001"],
                                              "test_subjects": ["s001"]}))
    assert "['s001'] in both data.val_subjects and data.test_subjects" in text
    assert not (tmp_path / "results").exists()


# --- training refuses before any work -------------------------------------------------------


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("split_caches")
    return {s: build(root / s, output=root / "cache" / f"{s}.h5", seed=i)
            for i, s in enumerate(("s0", "s1", "s2"))}


def _pifu_params(keep: str) -> dict:
    config = validate_config({"seed": 5, "pifu": {"train": {"run": {"keep": keep}}}})
    return {"seed": 5, **config["pifu"]["train"]}


def _stage(name: str, keep: str = "best"):
    """A training entry point with tiny parameters keeping ``keep``: f(**caches, out)."""
    if name == "pifu":
        return lambda out, **kw: run_pifu(model="pifu", output=out, summary=out.parent / "t.json",
                                          params=_pifu_params(keep), **kw)
    func, section = {"train": (run, "train"), "train_normal": (run_normal, "train_normal")}[name]
    p = params(section)
    p = {**p, "run": {**p["run"], "keep": keep}}
    return lambda out, **kw: func(output=out, summary=out.parent / "t.json", params=p, **kw)


STAGES = ["train", "train_normal", "pifu"]


def _refused(tmp_path: Path, stage, match: str, **caches) -> str:
    out = tmp_path / "out" / "checkpoint.pt"
    with pytest.raises(PipelineError, match=match) as info:
        stage(out, **caches)
    assert not (tmp_path / "out").exists()  # no checkpoint, no last.pt, no tensorboard
    return str(info.value)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("role", ["training", "validation"])
def test_a_test_subjects_cache_is_refused(caches, tmp_path: Path, stage: str,
                                          role: str) -> None:
    given = {"train_caches": [caches["s0"]], "val_caches": [caches["s1"]]}
    given["train_caches" if role == "training" else "val_caches"].append(caches["s2"])
    message = _refused(tmp_path, _stage(stage), f"given as {role} caches", held_out=["s2"],
                       **given)
    assert "['s2']" in message and "data.test_subjects" in message


@pytest.mark.parametrize("stage", STAGES)
def test_a_subject_trained_and_validated_on_is_refused(caches, tmp_path: Path,
                                                       stage: str) -> None:
    message = _refused(tmp_path, _stage(stage), "both trained on and validated on",
                       train_caches=[caches["s0"], caches["s1"]], val_caches=[caches["s1"]])
    assert "['s1']" in message and "data.val_subjects" in message


@pytest.mark.parametrize("stage", STAGES)
def test_keep_best_without_validation_caches_is_refused(caches, tmp_path: Path,
                                                        stage: str) -> None:
    message = _refused(tmp_path, _stage(stage), "no validation subject",
                       train_caches=[caches["s0"]], val_caches=[])
    section = {"pifu": "pifu.train"}.get(stage, stage)
    assert f"{section}.run.keep" in message and "data.val_subjects" in message


def test_held_out_subjects_are_recorded(caches, tmp_path: Path) -> None:
    """A run given the test subjects (and reading none of their caches) names them."""
    out = tmp_path / "out" / "checkpoint.pt"
    p = params("train_normal")
    p = {**p, "run": {**p["run"], "steps": 1, "keep": "best"}}
    run_normal(train_caches=[caches["s0"]], val_caches=[caches["s1"]], held_out=["s2"],
               output=out, summary=out.parent / "train.json", params=p)
    summary = json.loads((out.parent / "train.json").read_text())
    assert summary["held_out_subjects"] == ["s2"]
    assert summary["train_subjects"] == ["s0"] and summary["val_subjects"] == ["s1"]
    assert summary["selected"]["keep"] == "best" and summary["selected"]["step"] == 1


# --- data.split_files -----------------------------------------------------------------------


def _split_config(tmp_path: Path, **files: str) -> dict:
    folder = tmp_path / "data" / "mvp"
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for key, text in files.items():
        (folder / f"{key}.txt").write_text(text)
        names[key] = f"{key}.txt"
    return {"data": {"root": str(tmp_path / "data"), "dataset": "mvp", "split_files": names}}


def test_split_files_fill_the_subject_lists(tmp_path: Path) -> None:
    config = validate_config(_split_config(
        tmp_path, subjects="100001\n100002  # a comment\n\n100003\n",
        test_subjects="# the test split\n200001\n100003\n", val_subjects="100002\n"))
    data = config["data"]
    assert data["subjects"] == ["100001", "100002", "100003", "200001"]
    assert data["test_subjects"] == ["200001", "100003"]
    assert data["val_subjects"] == ["100002"]


@pytest.mark.parametrize("text, message", [
    ("100001\n100001\n", "line 2: 100001 is listed twice"),
    ("100001\nbad id\n", r"line 2: 'bad id' is not a subject id"),
    ("# nobody\n\n", "lists no subject"),
])
def test_a_bad_split_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PipelineError, match=rf"data\.split_files\.subjects: .*subjects\.txt.*"
                                            rf"{message}"):
        validate_config(_split_config(tmp_path, subjects=text))


def test_a_missing_split_file_is_named(tmp_path: Path) -> None:
    config = _split_config(tmp_path)
    config["data"]["split_files"] = {"test_subjects": "mvp_test50.txt"}
    with pytest.raises(PipelineError, match=r"data\.split_files\.test_subjects: cannot read "
                                            r"split file .*mvp_test50\.txt"):
        validate_config(config)


def test_held_out_file_subjects_must_be_subjects_without_a_subjects_file(tmp_path: Path) -> None:
    config = _split_config(tmp_path, test_subjects="200001\n")
    config["data"]["subjects"] = ["100001"]
    with pytest.raises(PipelineError, match=r"data\.test_subjects: \['200001'\] not in"):
        validate_config(config)

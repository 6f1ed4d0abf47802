"""Preprocess: a subject's image stages in one process, the same files as stage by stage,
every failing action named, nothing written on failure."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from pipeline import backends
from pipeline.cli import main
from pipeline.config import stage_params, validate_config
from pipeline.detect import DetectParams, detect_action
from pipeline.errors import PipelineError
from pipeline.keypoints import keypoints_action
from pipeline.mask import mask_action
from pipeline.preprocess import PreprocessParams, preprocess_subject

ORACLE = {"detect": {"backend": "oracle", "crop_size": 96},
          "mask": {"backend": "oracle", "matting": "none"},
          "keypoints": {"backend": "oracle"}}


@pytest.fixture(scope="module")
def two_actions(synthetic_subject, tmp_path_factory):
    """The synthetic subject with a second action, act01, a copy of act00 (its photos, truth
    and manifest entry)."""
    root = tmp_path_factory.mktemp("two_actions")
    truth = root / "truth"
    shutil.copytree(synthetic_subject["truth"], truth)
    shutil.copytree(truth / "act00", truth / "act01")
    manifest = json.loads(synthetic_subject["manifest"].read_text())
    manifest["actions"]["act01"] = manifest["actions"]["act00"]
    path = root / "s000.json"
    path.write_text(json.dumps(manifest))
    return {"manifest": path, "truth": truth}


def params(detect: DetectParams | None = None) -> PreprocessParams:
    """The oracle stages' parameters; ``detect`` (a test backend) replaces detect's."""
    config = validate_config(ORACLE)
    oracle = PreprocessParams.from_params({k: stage_params(config, k) for k in ORACLE})
    return oracle if detect is None else dataclasses.replace(oracle, detect=detect)


def fake_detect(on_no_person: str, empty_calls: list[int]) -> DetectParams:
    """The test detector (tests/fakes.py): one box, nothing on the calls ``empty_calls``."""
    return DetectParams("fake", 96, 0.1, on_no_person, 0.3,
                        {"boxes": [([60, 20, 180, 175], 0.9)], "empty_calls": empty_calls})


def outputs(root):
    return {key: root / key for key in ("crops", "masks", "keypoints", "overlays")}


def test_same_files_as_stage_by_stage(two_actions, tmp_path):
    p = params()
    result = preprocess_subject(manifest=two_actions["manifest"], truth=two_actions["truth"],
                                outputs=outputs(tmp_path / "one"), params=p)
    assert result == {"act00": "ok", "act01": "ok"}
    one = tmp_path / "one"
    for action in ("act00", "act01"):
        crops, masks = tmp_path / "alone" / "crop" / action, tmp_path / "alone" / "mask" / action
        points = tmp_path / "alone" / f"{action}.json"
        detect_action(manifest=two_actions["manifest"], action=action,
                      truth=two_actions["truth"], output=crops, params=p.detect)
        mask_action(crops=crops, action=action, truth=two_actions["truth"], output=masks,
                    params=p.mask)
        keypoints_action(subject="s000", crops=crops, action=action, truth=two_actions["truth"],
                         output=points, params=p.keypoints)
        for folder, alone in (("crops", crops), ("masks", masks)):
            names = sorted(f.name for f in alone.iterdir())
            assert sorted(f.name for f in (one / folder / action).iterdir()) == names
            for name in names:
                assert (one / folder / action / name).read_bytes() == (alone / name).read_bytes()
        assert (one / "keypoints" / f"{action}.json").read_bytes() == points.read_bytes()
        assert (one / "overlays" / f"{action}.png").stat().st_size > 0
    assert not list(tmp_path.glob("one/.*tmp-*"))  # no temporary folder left


def test_every_failing_action_is_named_and_nothing_is_lost(two_actions, tmp_path,
                                                           monkeypatch, caplog):
    monkeypatch.setitem(backends.REGISTRY["detect"], "fake", "tests.fakes:make_detector")
    out = outputs(tmp_path)
    out["crops"].mkdir()
    (out["crops"] / "earlier.txt").write_text("an earlier run's")
    # One detector serves the subject: calls 1-3 are act00's views, 4-6 act01's.
    fake = fake_detect("fail", [2, 4, 5, 6])
    with pytest.raises(PipelineError) as error:
        preprocess_subject(manifest=two_actions["manifest"], truth=two_actions["truth"],
                           outputs=out, params=params(fake))
    message = str(error.value)
    assert "2 of 2 actions failed" in message
    assert "act00: s000/act00: no person found in view(s) ['cam1']" in message
    assert "detect.on_no_person=fail" in message
    assert "act01: s000/act01: no person found in view(s) ['cam0', 'cam1', 'cam2']" in message
    assert "s000/act00/cam1: no person" in caplog.text  # the per-view warning stays
    assert (out["crops"] / "earlier.txt").read_text() == "an earlier run's"
    assert not out["masks"].exists() and not out["overlays"].exists()
    assert not list(tmp_path.glob(".*tmp-*"))


def test_one_failing_action_fails_the_subject(two_actions, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.REGISTRY["detect"], "fake", "tests.fakes:make_detector")
    fake = fake_detect("skip", [4, 5, 6])
    with pytest.raises(PipelineError, match=r"1 of 2 actions failed.*\n  - act01: .*any view"):
        preprocess_subject(manifest=two_actions["manifest"], truth=two_actions["truth"],
                           outputs=outputs(tmp_path), params=params(fake))


def test_cli_reads_one_object_per_section(two_actions, tmp_path, caplog):
    config = validate_config(ORACLE)
    paths = ["--subject", "s000", "--manifest", str(two_actions["manifest"]),
             "--truth", str(two_actions["truth"])]
    for key, path in outputs(tmp_path).items():
        paths += [f"--{key}", str(path)]
    good = {k: stage_params(config, k) for k in ORACLE}
    assert main(["preprocess", "--params", json.dumps(good), *paths]) == 0
    assert (tmp_path / "keypoints" / "act01.json").is_file()
    assert main(["preprocess", "--params", json.dumps({"detect": good["detect"]}),
                 *paths]) == 1
    assert "--params must hold the sections ['detect', 'mask', 'keypoints']" in caplog.text
    bad = {**good, "mask": {**good["mask"], "band": -1}}
    assert main(["preprocess", "--params", json.dumps(bad), *paths]) == 1
    assert "invalid parameters for stage 'mask'" in caplog.text

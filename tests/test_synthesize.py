"""The synthesize stage on a tiny subject: layout, determinism, self-consistency checks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from pipeline.config import stage_params, validate_config
from pipeline.errors import PipelineError
from pipeline.ingest import IngestParams, ingest_subject
from pipeline.synthesize.checks import check_subject
from pipeline.synthesize.stage import SynthParams, action_names, synthesize_subject

TINY = {
    "n_actions": 2, "n_frames": 1, "n_views": 3, "width": 160, "height": 120,
    "voxel_size": 0.02, "skirt_fraction": 1.0,
}


def tiny_params(seed: int = 5, **overrides) -> SynthParams:
    config = validate_config({"seed": seed, "synthesize": {**TINY, **overrides}})
    return SynthParams.from_params(stage_params(config, "synthesize"))


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthesize_subject(subject="s000", photos_dir=root / "s000", truth_dir=root / "truth" / "s000",
                       params=tiny_params())
    return root


def test_layout_matches_a_real_data_set(subject, tmp_path):
    photos = subject / "s000"
    assert sorted(p.name for p in photos.iterdir()) == ["act00", "act01"]
    assert sorted(p.name for p in (photos / "act00").iterdir()) == [
        "cam0.jpg", "cam1.jpg", "cam2.jpg", "cameras.json"]
    with Image.open(photos / "act00" / "cam0.jpg") as image:
        assert image.size == (160, 120) and image.format == "JPEG"
    manifest = ingest_subject(data_dir=subject, subject="s000", output=tmp_path / "m.json",
                              params=IngestParams(min_views=3, min_side=64))
    assert manifest["n_views"] == 6
    assert manifest["actions"]["act01"]["cameras"] == "s000/act01/cameras.json"


def test_truth_files(subject):
    truth = subject / "truth" / "s000"
    for name in ("subject.json", "canonical_clothed.ply", "canonical_clothed.npz",
                 "canonical_body.ply", "contact_sheet.png"):
        assert (truth / name).is_file(), name
    for name in ("body.json", "views.json", "clothed.ply", "body.ply", "cam1_mask.png",
                 "cam1_depth.png", "cam1_normal.png", "cam1_keypoints.json"):
        assert (truth / "act00" / name).is_file(), name
    openpose = json.loads((truth / "act00" / "cam1_keypoints.json").read_text())
    assert len(openpose["people"][0]["pose_keypoints_2d"]) == 75
    info = json.loads((truth / "subject.json").read_text())
    assert info["outfit"]["bottom"] in ("skirt", "dress")  # skirt_fraction = 1
    assert info["garment_thickness_mean_m"] > 0.003


def test_checks_pass_and_catch_a_broken_mask(subject, tmp_path):
    truth = subject / "truth" / "s000"
    report = check_subject(subject="s000", photos=subject / "s000", truth=truth,
                           output=tmp_path / "report.json")
    assert report["passed"]
    assert json.loads((tmp_path / "report.json").read_text())["checks"][
        "body_vertices_inside_clothed"]["value"] >= 0.99

    broken = tmp_path / "broken"
    import shutil
    shutil.copytree(subject, broken)
    mask_path = broken / "truth" / "s000" / "act01" / "cam2_mask.png"
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[:, : mask.shape[1] // 2] = 0
    Image.fromarray(mask).save(mask_path)
    with pytest.raises(PipelineError, match="mask_equals_finite_depth"):
        check_subject(subject="s000", photos=broken / "s000", truth=broken / "truth" / "s000",
                      output=tmp_path / "r2.json")
    assert not (tmp_path / "r2.json").exists()


def test_same_seed_same_bytes(subject, tmp_path):
    synthesize_subject(subject="s000", photos_dir=tmp_path / "s000",
                       truth_dir=tmp_path / "truth" / "s000", params=tiny_params())
    assert _digests(tmp_path / "s000") == _digests(subject / "s000")
    assert _digests(tmp_path / "truth") == _digests(subject / "truth")


def test_other_seed_other_subject(subject, tmp_path):
    synthesize_subject(subject="s000", photos_dir=tmp_path / "p", truth_dir=tmp_path / "t",
                       params=tiny_params(seed=6, n_actions=1))
    a = json.loads((subject / "truth" / "s000" / "subject.json").read_text())["phenotype"]
    b = json.loads((tmp_path / "t" / "subject.json").read_text())["phenotype"]
    assert a != b


def test_clip_names_show_neighbours():
    assert action_names(2, 1) == [["act00"], ["act01"]]
    assert action_names(1, 3) == [["act00_f00", "act00_f01", "act00_f02"]]


def test_foot_keypoints_sit_on_the_feet():
    from pipeline.synthesize import body as bodymod
    from pipeline.synthesize.stage import foot_vertex_indices

    canonical = bodymod.canonical_body(bodymod.load_body_model(), bodymod.Phenotype())
    feet = canonical.vertices[foot_vertex_indices(canonical)]
    ankles = canonical.keypoints[15:17]  # left, right
    for side, (big, small, heel) in enumerate((feet[:3], feet[3:])):
        ankle = ankles[side]
        assert np.sign(big[0]) == np.sign(ankle[0])          # the foot of the right side
        assert big[1] < ankle[1] - 0.1 and small[1] < ankle[1] - 0.1   # toes in front (-Y)
        assert heel[1] > ankle[1] and heel[2] < 0.04          # heel behind, on the floor
        assert abs(big[0]) < abs(small[0])                   # big toe on the inner side


def test_clip_frames_move_smoothly(tmp_path):
    synthesize_subject(subject="c", photos_dir=tmp_path / "c", truth_dir=tmp_path / "t",
                       params=tiny_params(n_actions=1, n_frames=3, n_views=1))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "act00_f00", "act00_f01", "act00_f02"]
    joints = [np.asarray(json.loads((tmp_path / "t" / f"act00_f0{i}" / "body.json").read_text())
                         ["keypoints_coco17_3d"]) for i in range(3)]
    step1 = np.linalg.norm(joints[1] - joints[0], axis=1).max()
    step2 = np.linalg.norm(joints[2] - joints[1], axis=1).max()
    assert 0 < step1 < 0.6 and 0 < step2 < 0.6

"""The MVP-Human-like stand-in (synthesize.layout: mvp_human) on a tiny synthetic subject."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

from pipeline.config import stage_params, validate_config
from pipeline.errors import PipelineError
from pipeline.imageio import read_gray, read_rgb
from pipeline.layout import fill
from pipeline.scans import boundary_edge_count, punch_holes, read_mesh, weld
from pipeline.synthesize import stage, standin
from pipeline.synthesize.stage import SynthParams, synthesize_subject
from tests.conftest import require

require("anny")

from pipeline.synthesize import body as B  # noqa: E402
from pipeline.synthesize import poses as P  # noqa: E402

TINY = {"n_actions": 2, "n_frames": 1, "n_views": 3, "width": 128, "height": 128,
        "voxel_size": 0.02}
LAYOUT = dict(standin.MVP_HUMAN_LAYOUT)
SUBJECT = "000007"


def tiny_params(layout: str = "mvp_human") -> dict:
    config = validate_config({"seed": 5, "synthesize": {**TINY, "layout": layout}})
    return stage_params(config, "synthesize")


@pytest.fixture(scope="module")
def model():
    return B.load_body_model()


@pytest.fixture(scope="module")
def made(tmp_path_factory, model):
    """A native tiny subject and its stand-in written from it."""
    root = tmp_path_factory.mktemp("standin")
    photos, truth = root / "native" / SUBJECT, root / "native" / "truth" / SUBJECT
    synthesize_subject(subject=SUBJECT, photos_dir=photos, truth_dir=truth,
                       params=SynthParams.from_params(tiny_params()))
    record = standin.write_standin(subject=SUBJECT, photos=photos, truth=truth,
                                   dataset=root / "ds", templates=LAYOUT,
                                   rng=np.random.default_rng(0), model=model)
    return {"photos": photos, "truth": truth, "ds": root / "ds", "record": record}


def _scan(made):
    return made["ds"] / fill(LAYOUT["scan"], subject=SUBJECT)


def _expected_dataset_vertices(truth, model):
    """The native clothed canonical mesh reposed into DA_POSE here, independently: Y up,
    pelvis at the origin (the data set's frame)."""
    mesh = np.load(truth / "canonical_clothed.npz")
    phenotype = B.Phenotype(**json.loads((truth / "subject.json").read_text())["phenotype"])
    body = B.posed_body(model, phenotype, P.DA_POSE)
    posed = B.skin(mesh["vertices"], mesh["skinning_weights"], body.bone_transforms)
    centred = posed - body.joints[body.bone_names.index("root")]
    x, y, z = centred.T
    return np.stack([x, z, -y], axis=1), mesh["faces"]


def _angles(body):
    joints = dict(zip(body.bone_names, body.joints, strict=True))
    out = {}
    for side, sign in (("L", 1.0), ("R", -1.0)):
        arm = joints[f"wrist.{side}"] - joints[f"upperarm01.{side}"]
        out[f"arm_below_horizontal.{side}"] = math.degrees(math.atan2(-arm[2], sign * arm[0]))
        leg = joints[f"foot.{side}"] - joints[f"upperleg01.{side}"]
        out[f"leg_from_vertical.{side}"] = math.degrees(math.atan2(sign * leg[0], -leg[2]))
    return out


def test_da_pose_arms_horizontal_legs_25_degrees_apart(model):
    angles = _angles(B.posed_body(model, B.Phenotype(), P.DA_POSE))
    for side in "LR":
        assert abs(angles[f"arm_below_horizontal.{side}"]) < 3.0
        assert abs(angles[f"leg_from_vertical.{side}"] - 25.0) < 3.0
    reference = _angles(B.posed_body(model, B.Phenotype(), P.make_pose("reference", {})))
    assert abs(reference["leg_from_vertical.L"] - 5.0) < 1.0
    assert P.within_limits(P.DA_POSE) and "da_pose" not in P.POSE_LIBRARY
    drawn = P.sample_actions(np.random.default_rng(0), len(P.POSE_LIBRARY) - 1)
    assert P.DA_POSE not in drawn


def test_action_names():
    assert standin.standin_action("act00") == "Action01"
    assert standin.standin_action("act11_f03") == "Action12_f03"
    with pytest.raises(PipelineError, match="walk"):
        standin.standin_action("walk")


def test_photos_and_masks_at_the_template_paths(made):
    ds, photos, truth = made["ds"], made["photos"], made["truth"]
    assert made["record"]["actions"] == {"act00": "Action01", "act01": "Action02"}
    for native, action in made["record"]["actions"].items():
        for view in ("cam0", "cam1", "cam2"):
            names = {"subject": SUBJECT, "action": action, "view": view, "ext": "png"}
            photo = ds / fill(LAYOUT["photos"], **names)
            mask = ds / fill(LAYOUT["masks"], **names)
            size = (standin.PHOTO_SIZE, standin.PHOTO_SIZE)
            with Image.open(photo) as image:
                assert image.format == "PNG" and image.mode == "RGB" and image.size == size
            with Image.open(mask) as image:
                assert image.format == "PNG" and image.mode == "L" and image.size == size
            box = made["record"]["crops"][action][view]
            native_mask = read_gray(truth / native / f"{view}_mask.png") > 0
            assert box == standin.square_box(native_mask)
            np.testing.assert_array_equal(
                read_rgb(photo), standin.cut(read_rgb(photos / native / f"{view}.jpg"), box,
                                             standin.PHOTO_SIZE, False))
            values = read_gray(mask)
            assert set(np.unique(values)) <= {0, 255} and values.max() == 255
            expected = standin.cut(native_mask.astype(np.uint8) * 255, box, standin.PHOTO_SIZE,
                                   True)
            np.testing.assert_array_equal(values, expected)
    folder = ds / standin.outputs(LAYOUT, SUBJECT)["photos"][0]
    assert not list(folder.rglob("*.json")) and not list(folder.rglob("*.jpg"))  # no cameras


def test_obj_round_trip_and_texture(made):
    scan = _scan(made)
    text = scan.read_text()
    assert text.startswith(f"mtllib {SUBJECT}.mtl\n")
    n_v, n_vt = text.count("\nv "), text.count("\nvt ")
    assert n_v == n_vt > 0
    assert re.search(r"\nf (\d+)/\1 (\d+)/\2 (\d+)/\3\n", text)
    mtl = scan.with_suffix(".mtl").read_text()
    assert "newmtl material0" in mtl and f"map_Kd {SUBJECT}.png" in mtl
    with Image.open(scan.with_suffix(".png")) as image:
        assert image.size == (512, 512) and image.mode == "RGB"
    raw = trimesh.load(scan, process=False, force="mesh", skip_materials=True)
    vertices, faces = read_mesh(scan)
    expected_v, expected_f = weld(np.asarray(raw.vertices), np.asarray(raw.faces))
    np.testing.assert_allclose(vertices, expected_v, atol=1e-9)
    assert len(faces) == len(expected_f) == made["record"]["faces"]["kept"]
    assert len(vertices) == n_v  # one vt per v: nothing split, nothing to weld


def test_r0_maps_the_file_to_the_da_posed_pelvis_centred_y_up_mesh(made, model):
    scan = _scan(made)
    rotation = np.loadtxt(made["ds"] / fill(LAYOUT["scan_rotation"], subject=SUBJECT))
    assert rotation.shape == (3, 3)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_array_equal(rotation, made["record"]["rotation_Q"])
    vertices, _ = read_mesh(scan)
    dataset = vertices @ rotation.T  # R0 @ x for each file point x
    expected, _ = _expected_dataset_vertices(made["truth"], model)
    distance, index = cKDTree(expected).query(dataset)
    assert distance.max() < 1e-5
    assert len(np.unique(index)) == len(dataset)
    # The frame: Y up, pelvis at the origin, arms along X, feet forward (+Z).
    assert dataset[:, 1].max() > 0.5 and dataset[:, 1].min() < -0.6
    assert np.ptp(dataset[:, 0]) > 1.2 and abs(np.median(dataset[:, 0])) < 0.05
    assert np.ptp(dataset[:, 2]) < 0.6
    feet = dataset[dataset[:, 1] < dataset[:, 1].min() + 0.1]
    assert np.median(feet[:, 2]) > 0.0
    # The record states the map: x_file = Q^T axes (x_posed - pelvis).
    record = made["record"]
    np.testing.assert_array_equal(record["axes"], standin.AXES)
    assert record["pose"] == P.DA_POSE.to_dict()
    assert len(record["pelvis"]) == 3 and record["pelvis"][2] > 0.5


def test_the_scan_has_holes_at_the_soles_and_crown(made, model):
    vertices, faces = read_mesh(_scan(made))
    assert not trimesh.Trimesh(vertices, faces, process=False).is_watertight
    assert boundary_edge_count(faces, len(vertices)) > 0
    expected, native_faces = _expected_dataset_vertices(made["truth"], model)
    assert trimesh.Trimesh(*weld(expected, native_faces), process=False).is_watertight
    assert made["record"]["faces"]["punched"] > 0
    rotation = np.asarray(made["record"]["rotation_Q"])
    kept = vertices @ rotation.T
    assert kept[:, 1].max() < expected[:, 1].max() - 1e-3  # the crown is gone
    assert kept[:, 1].min() > expected[:, 1].min() + 1e-3  # the lowest sole too


def test_standin_truth_copies_the_native_truth(made):
    folder = made["ds"] / "standin_truth" / SUBJECT
    for name in standin.TRUTH_FILES:
        assert (folder / name).read_bytes() == (made["truth"] / name).read_bytes()
    record = json.loads((folder / "standin.json").read_text())
    assert {"pelvis", "axes", "rotation_Q", "pose"} <= set(record)
    assert record == json.loads(json.dumps(made["record"]))


def test_punch_holes_up_axis_matches_the_z_up_frame():
    mesh = trimesh.creation.capsule(height=1.5, radius=0.2, count=[32, 32])
    z_up = np.asarray(mesh.vertices)
    y_up = z_up @ standin.AXES.T
    faces = np.asarray(mesh.faces)
    a = punch_holes(z_up, faces, n_random=2, rng=np.random.default_rng(1))
    b = punch_holes(y_up, faces, n_random=2, rng=np.random.default_rng(1), up=1)
    np.testing.assert_array_equal(a, b)
    assert len(a) < len(faces)


def test_outputs_and_template_checks():
    out = standin.outputs(LAYOUT, "{subject}")
    assert out == {
        "photos": ("Images/{subject}", True),
        "truth": ("standin_truth/{subject}", True),
        "scan": ("Canonical/{subject}/{subject}.obj", False),
        "scan_mtl": ("Canonical/{subject}/{subject}.mtl", False),
        "scan_texture": ("Canonical/{subject}/{subject}.png", False),
        "scan_rotation": ("Params/{subject}/R0.txt", False),
    }
    apart = {**LAYOUT, "masks": "Masks/{subject}/{action}/{view}.png",
             "scan": "Images/{subject}/scan.obj"}
    out = standin.outputs(apart, "s1")
    assert out["masks"] == ("Masks/s1", True) and "scan" not in out
    with pytest.raises(PipelineError, match=r"data\.layout\.masks"):
        standin.outputs({**LAYOUT, "masks": None}, "s1")
    with pytest.raises(PipelineError, match=r"\.obj"):
        standin.outputs({**LAYOUT, "scan": "Canonical/{subject}.ply"}, "s1")
    with pytest.raises(PipelineError, match=r"data\.layout\.masks"):
        standin.outputs({**LAYOUT, "masks": "Images/{action}/{subject}_{view}.png"}, "s1")


def test_other_templates_and_an_interrupted_write(made, model, tmp_path, monkeypatch):
    apart = {**LAYOUT, "masks": "Masks/{subject}/{action}/{view}.png",
             "scan": "Images/{subject}/scan.obj", "scan_rotation": "Images/{subject}/R0.txt"}
    standin.write_standin(subject=SUBJECT, photos=made["photos"], truth=made["truth"],
                          dataset=tmp_path / "a", templates=apart,
                          rng=np.random.default_rng(0), model=model)
    assert (tmp_path / "a" / "Masks" / SUBJECT / "Action02" / "cam2.png").is_file()
    assert read_mesh(tmp_path / "a" / "Images" / SUBJECT / "scan.obj")[1].shape[1] == 3
    assert (tmp_path / "a" / "Images" / SUBJECT / "R0.txt").is_file()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(standin, "write_obj", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        standin.write_standin(subject=SUBJECT, photos=made["photos"], truth=made["truth"],
                              dataset=tmp_path / "b", templates=LAYOUT,
                              rng=np.random.default_rng(0), model=model)
    assert [p for p in (tmp_path / "b").rglob("*") if p.is_file()] == []


def test_stage_run_writes_the_standin_and_native_takes_the_old_path(tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    photos, truth = ds / "Images" / SUBJECT, ds / "standin_truth" / SUBJECT
    with pytest.raises(PipelineError, match="writes the photos"):
        stage.run(subject=SUBJECT, output=ds / SUBJECT, truth=truth, params=tiny_params(),
                  dataset=ds, data_layout=json.dumps(LAYOUT))
    stage.run(subject=SUBJECT, output=photos, truth=truth, params=tiny_params(), dataset=ds,
              data_layout=json.dumps(LAYOUT))
    for path, is_dir in standin.outputs(LAYOUT, SUBJECT).values():
        assert (ds / path).is_dir() if is_dir else (ds / path).is_file(), path
    assert sorted(p.name for p in ds.iterdir()) == [
        "Canonical", "Images", "Params", "standin_truth"]  # no native leftovers
    assert sorted(p.name for p in photos.iterdir()) == ["Action01", "Action02"]

    calls = []
    monkeypatch.setattr(stage, "synthesize_subject", lambda **kw: calls.append(kw))
    monkeypatch.setattr(standin, "synthesize_standin", lambda **kw: pytest.fail("standin"))
    stage.run(subject="s000", output=tmp_path / "p", truth=tmp_path / "t",
              params=tiny_params("native"))
    assert len(calls) == 1
    assert calls[0]["photos_dir"] == tmp_path / "p" and calls[0]["truth_dir"] == tmp_path / "t"


def test_split_files(tmp_path):
    standin.run_splits(folder=tmp_path / "splits", train=["000001", "000002"], val=None,
                       test=["000003"])
    assert (tmp_path / "splits" / "train.txt").read_text() == "000001\n000002\n"
    assert (tmp_path / "splits" / "val.txt").read_text() == ""
    assert (tmp_path / "splits" / "test.txt").read_text() == "000003\n"


def test_square_box_centres_the_person():
    mask = np.zeros((60, 100), dtype=bool)
    mask[10:50, 70:80] = True  # right of centre
    assert standin.square_box(mask) == [40, 0, 60]  # centred on x = 74.5, inside the photo
    mask[:] = False
    mask[5:20, 95:100] = True  # at the right edge: the window stops at the edge
    assert standin.square_box(mask) == [40, 0, 60]
    tall = np.zeros((100, 40), dtype=bool)
    tall[0:10, 10:20] = True
    assert standin.square_box(tall) == [0, 0, 40]

"""Scan registration: the data set's frame and pose, the body fitted to a scan with a known
similarity transform, unposing and the map back, the stage's checks and policies."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.frames import (
    DatasetFrame,
    Similarity,
    check_up_axis,
    read_rotation,
    rotation_angle_deg,
    stated_pose,
)
from tests.conftest import require

require("anny")

from pipeline.bodymodel import axis_angle_to_matrix, make_body_model  # noqa: E402
from pipeline.register import RegisterParams, dataset_map, register_subject  # noqa: E402
from pipeline.registration import pose_body, register_body, repose, unpose  # noqa: E402
from pipeline.scans import punch_holes  # noqa: E402
from pipeline.sdf import surface_samples  # noqa: E402
from pipeline.submission import to_dataset_frame  # noqa: E402


def _rotation(*rotvec: float) -> np.ndarray:
    """A float64 rotation matrix of an axis-angle vector."""
    return axis_angle_to_matrix(torch.tensor(rotvec, dtype=torch.float64)).numpy()


MVP = DatasetFrame(up="y", forward="z", unit_m=0.01, origin="pelvis", pose="da")


@pytest.fixture(scope="module")
def model():
    return make_body_model("anny", {})


def test_da_pose_is_the_stand_ins():
    from pipeline.synthesize.poses import DA_POSE

    assert stated_pose("da").as_dict() == DA_POSE.as_dict()


def test_stated_pose_angles():
    t = stated_pose("t").as_dict()
    assert t["upperarm01.L"] == (0.0, -48.0, 0.0)
    assert stated_pose("a", leg_deg=10.0).as_dict()["upperleg01.R"] == (0.0, -5.0, 0.0)
    with pytest.raises(PipelineError, match=r"canonical"):
        stated_pose("canonical", arm_deg=3.0)
    with pytest.raises(PipelineError, match=r"data.frame.pose.name"):
        stated_pose("star")


def test_frame_axes():
    axes = MVP.axes()
    np.testing.assert_allclose(axes @ [0, 0, 1.0], [0, 1, 0])  # up: Z → Y
    np.testing.assert_allclose(axes @ [0, -1.0, 0], [0, 0, 1])  # facing: −Y → +Z
    np.testing.assert_allclose(axes @ [1.0, 0, 0], [1, 0, 0])  # left stays +X
    assert np.isclose(np.linalg.det(axes), 1.0)
    assert DatasetFrame().is_pipeline and not MVP.is_pipeline
    with pytest.raises(PipelineError, match=r"same axis"):
        DatasetFrame(up="y", forward="-y").axes()


def test_read_rotation(tmp_path):
    rotation = _rotation(0.3, -0.2, 1.1)
    np.savetxt(tmp_path / "r.txt", rotation)
    np.testing.assert_allclose(read_rotation(tmp_path / "r.txt"), rotation)
    four = np.eye(4)
    four[:3, :3], four[:3, 3] = rotation, [1, 2, 3]
    np.savetxt(tmp_path / "r4.txt", four)
    np.testing.assert_allclose(read_rotation(tmp_path / "r4.txt"), rotation)
    np.savetxt(tmp_path / "wide.txt", np.eye(3, 4))
    with pytest.raises(PipelineError, match=r"wide.txt: a 3×4 matrix"):
        read_rotation(tmp_path / "wide.txt")
    np.savetxt(tmp_path / "mirror.txt", np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(PipelineError, match=r"mirror.txt.*not a rotation"):
        read_rotation(tmp_path / "mirror.txt")
    (tmp_path / "words.txt").write_text("a b c\n")
    with pytest.raises(PipelineError, match=r"words.txt: not a matrix"):
        read_rotation(tmp_path / "words.txt")
    with pytest.raises(PipelineError, match=r"missing.txt is missing"):
        read_rotation(tmp_path / "missing.txt")


def test_up_axis_contradiction_names_the_setting():
    standing = np.random.default_rng(0).uniform([-0.3, -0.2, 0.0], [0.3, 0.2, 1.7], (500, 3))
    check_up_axis(standing, DatasetFrame(up="z"), "scan.obj")
    with pytest.raises(PipelineError, match=r"scan.obj: data.frame.up is 'y'.*along z"):
        check_up_axis(standing, DatasetFrame(up="y", forward="z"), "scan.obj")


def test_similarity_round_trip():
    sim = Similarity(2.5, _rotation(0.1, 0.2, 0.3),
                     np.array([1.0, -2.0, 0.5]))
    points = np.random.default_rng(1).normal(size=(20, 3))
    np.testing.assert_allclose(sim.invert(sim.apply(points)), points, atol=1e-12)
    again = Similarity.from_dict(json.loads(json.dumps(sim.as_dict())))
    np.testing.assert_allclose(again.apply(points), sim.apply(points))


def _known_scan(model, frame: DatasetFrame, rng: np.random.Generator):
    """A scan of the model's mean body in the frame's stated pose, with holes, turned and
    moved by a known rigid motion, then written in the frame's axes and unit."""
    pose = model.pose_from_degrees(frame.body_pose().as_dict())
    body = pose_body(model, model.initial_shape(), pose)
    faces = punch_holes(body.posed, model.faces, rng=rng)
    rotation = _rotation(0.05, -0.08, 0.4)
    translation = np.array([0.03, -0.05, -0.9])
    applied = Similarity(1.0 / frame.unit_m, frame.axes() @ rotation,
                         frame.axes() @ translation / frame.unit_m)
    return applied, applied.apply(body.posed), faces, body


def test_registration_recovers_a_known_similarity(model):
    rng = np.random.default_rng(3)
    applied, vertices, faces, truth = _known_scan(model, MVP, rng)
    points = MVP.unit_m * vertices @ MVP.axes()  # the stated axes and unit undone
    samples = surface_samples(points, faces, 8000, rng)[0]
    pose = model.pose_from_degrees(MVP.body_pose().as_dict())
    registration = register_body(model, samples, pose, n_points=1500, iterations=(60, 250))
    found = dataset_map(registration, MVP)
    assert rotation_angle_deg(found.rotation, applied.rotation) < 1.0
    assert abs(found.scale / applied.scale - 1.0) < 0.01
    # The translation where the data set's origin is, at the pelvis: the map's own
    # translation is tied to the registered soles, which move with the shape's leg length.
    pelvis = pose_body(model, torch.as_tensor(registration.shape, dtype=torch.float32),
                       torch.as_tensor(registration.pose, dtype=torch.float32)).pelvis
    shift = found.apply(pelvis[None])[0] - applied.apply(truth.pelvis[None])[0]
    assert np.linalg.norm(shift) * MVP.unit_m < 0.005
    assert registration.residual_mm[0] < 3.0
    # the scan unposed lands on the canonical body, vertex by vertex, within the shape's
    # ambiguity (measured: 5.5 mm median; the registered soles define z = 0)
    canonical = unpose(registration.to_posed(points), registration.posed,
                       registration.transforms)
    assert np.median(np.linalg.norm(canonical - truth.canonical, axis=1)) < 0.01


def test_unpose_round_trip(model):
    pose = model.pose_from_degrees(stated_pose("da").as_dict())
    body = pose_body(model, model.initial_shape(), pose)
    rng = np.random.default_rng(0)
    points, normals = surface_samples(body.canonical, model.faces, 4000, rng)
    near = points + 0.01 * normals  # a garment a centimetre off the skin
    posed = repose(near, body.canonical, body.transforms)
    back = unpose(posed, body.posed, body.transforms)
    error = np.linalg.norm(back - near, axis=1)
    assert np.mean(error < 1e-6) > 0.95  # exact wherever the nearest vertex is kept
    assert np.median(error) < 1e-6


def test_dataset_frame_export_inverts_the_registration_map(model):
    pose = model.pose_from_degrees(MVP.body_pose().as_dict())
    body = pose_body(model, model.initial_shape(), pose)
    out = to_dataset_frame(body.canonical, body, MVP)
    # pelvis at the origin, Y up, in centimetres
    pelvis = MVP.unit_m * out[np.argmin(np.linalg.norm(body.posed - body.pelvis, axis=1))]
    assert np.linalg.norm(pelvis) < 0.1
    assert np.ptp(out[:, 1]) > 100.0 and np.ptp(out[:, 1]) > np.ptp(out[:, 2])
    back = unpose(MVP.unit_m * out @ MVP.axes() + body.pelvis, body.posed, body.transforms)
    np.testing.assert_allclose(back, body.canonical, atol=1e-6)
    identity = to_dataset_frame(body.canonical, pose_body(
        model, model.initial_shape(), model.pose_from_degrees(stated_pose("canonical")
                                                              .as_dict())), DatasetFrame())
    np.testing.assert_allclose(identity, body.canonical, atol=1e-6)


def _params(**changes) -> RegisterParams:
    values = {"seed": 0, "samples": 6000, "n_points": 1000, "iterations": (20, 60),
              "pose_freedom_deg": 10.0, "max_residual_mm": 40.0, "max_rotation_deg": 30.0,
              "on_fail": "fail"}
    return RegisterParams(**{**values, **changes})


@pytest.fixture(scope="module")
def scan_files(model, tmp_path_factory):
    """A scan in the MVP frame (centimetres) as OBJ, and its rotation file."""
    folder = tmp_path_factory.mktemp("scan")
    rng = np.random.default_rng(5)
    _, vertices, faces, _ = _known_scan(model, MVP, rng)
    stored = _rotation(0.4, 1.2, -0.3)
    from pipeline.meshio import write_obj

    write_obj(folder / "scan.obj", vertices @ stored, faces)  # the file holds Qᵀ x
    np.savetxt(folder / "R0.txt", stored)
    return folder


def test_register_stage_writes_its_folder(scan_files, tmp_path):
    out = tmp_path / "register" / "s1"
    report = register_subject(subject="s1", scan=scan_files / "scan.obj",
                              rotation=scan_files / "R0.txt", frame=MVP, params=_params(),
                              output=out)
    assert report["accepted"] and report["problems"] == []
    assert {p.name for p in out.iterdir()} == {"canonical_clothed.ply", "posed_clothed.ply",
                                              "registration.json", "overlay.png",
                                              "registered_body.npz"}
    assert 1.0 < report["height_m"] < 2.2
    # the cache signs the unposed scan where it was captured
    from pipeline.cache import registered_truth
    from pipeline.scans import ScanPolicy

    mesh, signed = registered_truth(out, ScanPolicy())
    centre = mesh.vertices.mean(axis=0)
    body = np.load(out / "registered_body.npz")["canonical"]
    torso = body[(np.abs(body[:, 2] - 1.2) < 0.03) & (np.abs(body[:, 0]) < 0.15)]
    chest = torso.mean(axis=0)  # the middle of the chest's cross-section: inside
    values = signed(np.array([chest, centre + np.array([0.0, 0.0, 3.0])]))
    assert values[0] < -0.03 and values[1] > 1.0


def test_register_stage_policies(scan_files, tmp_path, monkeypatch):
    strict = _params(max_residual_mm=1e-6)
    with pytest.raises(PipelineError, match=r"subject s2.*register.max_residual_mm"):
        register_subject(subject="s2", scan=scan_files / "scan.obj",
                         rotation=scan_files / "R0.txt", frame=MVP, params=strict,
                         output=tmp_path / "fail")
    assert not (tmp_path / "fail").exists()
    report = register_subject(subject="s2", scan=scan_files / "scan.obj",
                              rotation=scan_files / "R0.txt", frame=MVP,
                              params=_params(max_residual_mm=1e-6, on_fail="skip"),
                              output=tmp_path / "skip")
    assert report["accepted"] is False
    from pipeline.cache import registration_refused

    assert "register.on_fail: skip" in registration_refused(tmp_path / "skip")
    # a wrong unit is named
    metres = DatasetFrame(up="y", forward="z", unit_m=1.0, origin="pelvis", pose="da")
    with pytest.raises(PipelineError, match=r"data.frame.unit_m"):
        register_subject(subject="s3", scan=scan_files / "scan.obj",
                         rotation=scan_files / "R0.txt", frame=metres, params=_params(),
                         output=tmp_path / "unit")


def test_register_stage_refuses_a_wrong_up_axis(scan_files, tmp_path):
    z_up = DatasetFrame(up="z", forward="-y", unit_m=0.01, origin="pelvis", pose="da")
    with pytest.raises(PipelineError, match=r"data.frame.up is 'z'"):
        register_subject(subject="s4", scan=scan_files / "scan.obj",
                         rotation=scan_files / "R0.txt", frame=z_up, params=_params(),
                         output=tmp_path / "up")


def test_rotation_checks_name_the_frame(model):
    rotation = _rotation(0.0, 0.0, math.radians(90.0))
    from pipeline.register import _problems
    from pipeline.registration import Registration

    fake = Registration(rotation=rotation, translation=np.zeros(3),
                        shape=np.zeros(6), pose=np.zeros((1, 3)), canonical=np.zeros((1, 3)),
                        posed=np.zeros((1, 3)), transforms=np.tile(np.eye(4), (1, 1, 1)),
                        residual_mm=(5.0, 9.0))
    problems = _problems(fake, _params(), MVP, 1.7)
    assert len(problems) == 1 and "data.frame.forward" in problems[0]

"""SMPL-X body model backend, on a tiny synthetic model file in the SMPL-X npz layout.

The synthetic model is a stick skeleton (T-pose, Y up, +X = the body's left) with each joint a
cluster of vertices driven by that joint alone, so canonical -> posed skinning is exact there.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.backends import BackendUnavailable
from pipeline.bodymodel import axis_angle_to_matrix, make_body_model, skin_points
from pipeline.bodymodel.smplx_model import SmplxBodyModel
from pipeline.skeleton import COCO17

# the real SMPL-X kinematic tree
PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
           20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
           21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53]
OFFSETS = [(0, 0, 0), (0.06, -0.09, 0), (-0.06, -0.09, 0), (0, 0.11, 0), (0, -0.38, 0),
           (0, -0.38, 0), (0, 0.13, 0), (0, -0.40, 0), (0, -0.40, 0), (0, 0.06, 0),
           (0, -0.05, 0.12), (0, -0.05, 0.12), (0, 0.21, 0), (0.08, 0.12, 0), (-0.08, 0.12, 0),
           (0, 0.08, 0.02), (0.10, 0.02, 0), (-0.10, 0.02, 0), (0.26, 0, 0), (-0.26, 0, 0),
           (0.25, 0, 0), (-0.25, 0, 0), (0, -0.02, 0.04), (0.03, 0.05, 0.08),
           (-0.03, 0.05, 0.08)]
for _side in (1.0, -1.0):  # five three-segment fingers per hand
    for _z in (0.03, 0.01, -0.03, -0.01, 0.05):
        OFFSETS += [(_side * 0.08, 0, _z), (_side * 0.03, 0, 0), (_side * 0.025, 0, 0)]
FACE_VERTICES = {9120: (0, 0.08, 0.10), 9929: (-0.03, 0.10, 0.09), 9448: (0.03, 0.10, 0.09),
                 616: (-0.08, 0.08, 0.0), 6: (0.08, 0.08, 0.0)}  # nose, eyes, ears (head-relative)
NUM_VERTICES = 10_000
HEAD = 15


def write_synthetic_smplx(path: Path) -> None:
    """A SMPL-X-format npz: 10,000 vertices, 55 joints, 20 shape and 486 pose blend shapes."""
    rng = np.random.default_rng(0)
    joints = np.zeros((55, 3))
    for j in range(1, 55):
        joints[j] = joints[PARENTS[j]] + OFFSETS[j]
    owner = np.arange(NUM_VERTICES) % 55
    owner[list(FACE_VERTICES)] = HEAD
    verts = joints[owner] + rng.normal(scale=0.02, size=(NUM_VERTICES, 3))
    for v, offset in FACE_VERTICES.items():
        verts[v] = joints[HEAD] + offset
    regressor = np.zeros((55, NUM_VERTICES))
    for j in range(55):
        members = [v for v in np.flatnonzero(owner == j) if v not in FACE_VERTICES]
        regressor[j, members] = 1.0 / len(members)
    faces = np.stack([np.flatnonzero(owner == j)[:180].reshape(-1, 3) for j in range(55)])
    kintree = np.stack([np.array(PARENTS), np.arange(55)])
    posedirs = np.zeros((NUM_VERTICES, 3, 486))
    posedirs[:500] = rng.normal(scale=1e-3, size=(500, 3, 486))
    np.savez(path, v_template=verts, f=faces.reshape(-1, 3).astype(np.uint32),
             shapedirs=rng.normal(scale=0.01, size=(NUM_VERTICES, 3, 20)),
             posedirs=posedirs, J_regressor=regressor, weights=np.eye(55)[owner],
             kintree_table=kintree, hands_componentsl=np.eye(45), hands_componentsr=np.eye(45),
             hands_meanl=rng.normal(scale=0.1, size=45), hands_meanr=rng.normal(scale=0.1, size=45),
             lmk_faces_idx=np.arange(51), lmk_bary_coords=np.full((51, 3), 1 / 3))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the synthetic SMPLX_NEUTRAL.npz (tests using it need the smplx package)."""
    pytest.importorskip("smplx")
    folder = tmp_path_factory.mktemp("smplx")
    write_synthetic_smplx(folder / "SMPLX_NEUTRAL.npz")
    return folder


@pytest.fixture(scope="module")
def body(model_dir: Path) -> SmplxBodyModel:
    return SmplxBodyModel({"model_path": str(model_dir)})


@pytest.fixture(scope="module")
def rigid_body(model_dir: Path) -> SmplxBodyModel:
    """The same model without pose-corrective blend shapes."""
    model = SmplxBodyModel({"model_path": str(model_dir / "SMPLX_NEUTRAL.npz")})
    model._model.posedirs.zero_()
    return model


def _inputs(n: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    shape = torch.randn(10, generator=gen)
    pose = 0.4 * torch.randn(n, 21, 3, generator=gen)
    orient = 0.8 * torch.randn(n, 3, generator=gen)
    transl = torch.randn(n, 3, generator=gen)
    return shape, pose, orient, transl


def test_missing_model_file_names_the_config_key(tmp_path: Path) -> None:
    for options in ({}, {"model_path": None}, {"model_path": str(tmp_path / "nope.npz")},
                    {"model_path": str(tmp_path)}):
        with pytest.raises(BackendUnavailable, match=r"fit\.smplx\.model_path"):
            SmplxBodyModel(options)


def test_missing_package_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "SMPLX_NEUTRAL.npz").write_bytes(b"")  # never read: the import fails first
    monkeypatch.setitem(sys.modules, "smplx", None)
    with pytest.raises(BackendUnavailable, match=r'pip install -e "\.\[smplx\]"'):
        SmplxBodyModel({"model_path": str(tmp_path)})


def test_forward_shapes(body: SmplxBodyModel) -> None:
    shape, pose, orient, transl = _inputs(3)
    out = body.forward(shape, pose, orient, transl)
    assert out.vertices.shape == (3, NUM_VERTICES, 3)
    assert out.keypoints.shape == (3, len(COCO17), 3)
    assert out.bone_transforms.shape == (3, 55, 4, 4)
    assert body.shape_size == 10 and len(body.joint_names) == 21 and len(body.bone_names) == 55
    assert body.joint_names[0] == "left_hip" and body.joint_names[-1] == "right_wrist"
    assert body.faces.dtype == np.int64 and body.faces.shape == (55 * 60, 3)
    assert body.skinning_weights.shape == (NUM_VERTICES, 55)
    assert body.skinning_weights.dtype == np.float32
    assert body.neutral_pose().shape == (21, 3)


def test_keypoints_are_the_named_joints_and_face_vertices(body: SmplxBodyModel) -> None:
    canon = body.canonical(torch.zeros(10))
    kp = dict(zip(COCO17, canon.keypoints, strict=True))
    assert torch.allclose(kp["nose"], canon.vertices[9120])
    assert torch.allclose(kp["left_eye"], canon.vertices[9448])
    assert torch.allclose(kp["right_ear"], canon.vertices[616])
    assert kp["left_shoulder"][0] > 0 > kp["right_shoulder"][0]  # the body's left is +X
    assert kp["nose"][1] > kp["left_shoulder"][1] > kp["left_hip"][1] > kp["left_ankle"][1]


def test_canonical_is_a_star_pose(body: SmplxBodyModel) -> None:
    kp = dict(zip(COCO17, body.canonical(torch.zeros(10)).keypoints, strict=True))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        arm = kp[f"{side}_elbow"] - kp[f"{side}_shoulder"]
        below = math.degrees(math.atan2(-arm[1], sign * arm[0]))
        assert below == pytest.approx(40.0, abs=3.0)
        leg = kp[f"{side}_knee"] - kp[f"{side}_hip"]
        apart = math.degrees(math.atan2(sign * leg[0], -leg[1]))
        assert apart == pytest.approx(12.0, abs=3.0)


def test_neutral_pose_has_arms_down(body: SmplxBodyModel) -> None:
    zero = torch.zeros(1, 3)
    out = body.forward(torch.zeros(10), body.neutral_pose()[None], zero, zero)
    kp = dict(zip(COCO17, out.keypoints[0], strict=True))
    arm = kp["left_wrist"] - kp["left_shoulder"]
    off_vertical = math.degrees(math.atan2(arm[0], -arm[1]))
    assert 8.0 < off_vertical < 18.0


def test_skinning_canonical_gives_posed_vertices(rigid_body: SmplxBodyModel) -> None:
    shape, pose, orient, transl = _inputs(2)
    out = rigid_body.forward(shape, pose, orient, transl)
    canon = rigid_body.canonical(shape)
    weights = torch.from_numpy(rigid_body.skinning_weights)
    skinned = skin_points(canon.vertices, weights, out.bone_transforms)
    assert torch.allclose(skinned, out.vertices, atol=1e-5)
    # body keypoints are joints: each moves with its own bone
    bones = [rigid_body.bone_names.index(name) for name in COCO17[5:]]
    moved = (out.bone_transforms[:, bones, :3, :3] @ canon.keypoints[5:, :, None])[..., 0]
    moved = moved + out.bone_transforms[:, bones, :3, 3]
    assert torch.allclose(moved, out.keypoints[:, 5:], atol=1e-5)


def test_pose_correctives_are_the_only_difference(body: SmplxBodyModel) -> None:
    shape, pose, orient, transl = _inputs(2)
    out = body.forward(shape, pose, orient, transl)
    weights = torch.from_numpy(body.skinning_weights)
    skinned = skin_points(body.canonical(shape).vertices, weights, out.bone_transforms)
    diff = (skinned - out.vertices).norm(dim=-1)
    assert diff[:, 500:].max() < 1e-5 and 0 < diff[:, :500].max() < 0.1


def test_orient_and_transl_move_the_body_rigidly(body: SmplxBodyModel) -> None:
    shape, pose, orient, transl = _inputs(2)
    zero = torch.zeros(2, 3)
    base = body.forward(shape, pose, zero, zero)
    moved = body.forward(shape, pose, orient, transl)
    rot = axis_angle_to_matrix(orient)  # (2, 3, 3)
    offset = moved.vertices.mean(1) - (rot @ base.vertices.mean(1)[..., None])[..., 0]
    for before, after in ((base.vertices, moved.vertices), (base.keypoints, moved.keypoints)):
        expected = (rot[:, None] @ before[..., None])[..., 0] + offset[:, None]
        assert torch.allclose(after, expected, atol=1e-5)
    shifted = body.forward(shape, pose, zero, transl)
    assert torch.allclose(shifted.vertices, base.vertices + transl[:, None], atol=1e-5)
    assert torch.allclose(shifted.bone_transforms[..., :3, 3],
                          base.bone_transforms[..., :3, 3] + transl[:, None], atol=1e-5)


def test_gradients_reach_all_inputs(body: SmplxBodyModel) -> None:
    inputs = [t.clone().requires_grad_(True) for t in _inputs(2)]
    out = body.forward(*inputs)
    loss = (out.vertices**2).mean() + (out.keypoints**2).mean() + out.bone_transforms.sum()
    (loss + body.pose_prior(inputs[1]) + body.shape_prior(inputs[0])).backward()
    for tensor in inputs:
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0


def test_pose_prior_limits(body: SmplxBodyModel) -> None:
    neutral = body.neutral_pose()[None]
    assert body.pose_prior(neutral).item() == pytest.approx(0.0, abs=1e-12)
    knee = body.joint_names.index("left_knee")
    bent, hyper = neutral.clone(), neutral.clone()
    bent[0, knee, 0] = 1.2
    hyper[0, knee, 0] = -1.2
    assert body.pose_prior(hyper) > 10 * body.pose_prior(bent) > 0
    elbow = body.joint_names.index("right_elbow")
    wrong = neutral.clone()
    wrong[0, elbow, 1] = -1.0
    assert body.pose_prior(wrong) > 0.5


def test_shape_prior_and_summary(body: SmplxBodyModel) -> None:
    shape = torch.arange(10, dtype=torch.float32)
    assert body.shape_prior(shape).item() == pytest.approx(float((shape**2).mean()))
    assert body.shape_summary(shape) == {"betas": [float(i) for i in range(10)]}


def test_registry_builds_it(model_dir: Path) -> None:
    model = make_body_model("smplx", {"model_path": str(model_dir), "gender": "neutral"})
    assert model.name == "smplx" and model.shape_size == 10

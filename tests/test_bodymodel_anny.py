"""The Anny body model of the fit: exact against the synthetic truth's construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.bodymodel import axis_angle_to_matrix, make_body_model, skin_points
from pipeline.bodymodel.anny_model import AnnyBodyModel
from pipeline.errors import PipelineError
from pipeline.synthesize.body import Phenotype, canonical_body, posed_body
from pipeline.synthesize.poses import bone_rotation, get_pose

PHENOTYPE = Phenotype(gender=0.3, age=0.7, muscle=0.6, weight=0.4, height=0.55, proportions=0.5)


@pytest.fixture(scope="module")
def model() -> AnnyBodyModel:
    return AnnyBodyModel()


def _placement(pose_name: str, yaw: float) -> torch.Tensor:
    """Orientation (1, 3) equal to the synthetic truth's yaw after its root rotation."""
    from scipy.spatial.transform import Rotation

    root = bone_rotation("root", get_pose(pose_name).angles("root"))
    yawed = Rotation.from_euler("z", yaw).as_matrix() @ root
    return torch.tensor(Rotation.from_matrix(yawed).as_rotvec(), dtype=torch.float32)[None]


@pytest.mark.parametrize("pose_name", ["arms_forward", "bend_forward"])
def test_forward_matches_synthetic_truth(model, pose_name):
    truth = posed_body(model._model, PHENOTYPE, pose_name, yaw=0.7)
    shape = model.shape_from_phenotype(PHENOTYPE.as_dict())
    pose = model.pose_from_degrees(get_pose(pose_name).as_dict())[None]
    out = model.forward(shape, pose, _placement(pose_name, 0.7), torch.zeros(1, 3))
    vertices = out.vertices[0].detach().double().numpy()
    offset = (truth.vertices - vertices).mean(0)  # the truth stands on the ground
    np.testing.assert_allclose(vertices + offset, truth.vertices, atol=2e-4)
    np.testing.assert_allclose(out.keypoints[0].detach().numpy() + offset, truth.keypoints,
                               atol=2e-4)


def test_bones_equal_annys_own_forward(model):
    """The fit's shortcut (the rest mesh once, only the canonical body skinned) gives what
    Anny's own forward of all the bodies gives."""
    from pipeline.synthesize.body import PHENOTYPE_NAMES

    shape = torch.tensor([0.3, -0.2, 0.1, 0.0, 0.4, -0.1])
    generator = torch.Generator().manual_seed(0)
    pose = 0.3 * torch.randn(3, len(model.joint_names), 3, generator=generator)
    parts = model._bone_poses(shape, pose)
    deltas = torch.eye(4).repeat(4, len(model.bone_names), 1, 1)
    deltas[:, model._joint_index, :3, :3] = model._rotations(
        torch.cat([model._canonical_pose[None], pose], 0))
    phenotype = torch.sigmoid(shape)
    own = model._model(pose_parameters=deltas, phenotype_kwargs={
        name: phenotype[i].expand(4) for i, name in enumerate(PHENOTYPE_NAMES)})
    torch.testing.assert_close(parts["canonical"] - parts["lift"], own["vertices"][0],
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(parts["canon_bones"], own["bone_poses"][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(parts["posed_bones"], own["bone_poses"][1:], atol=1e-6, rtol=0)


def test_canonical_matches_truth_and_stands_on_the_ground(model):
    truth = canonical_body(model._model, PHENOTYPE)
    canonical = model.canonical(model.shape_from_phenotype(PHENOTYPE.as_dict()))
    np.testing.assert_allclose(canonical.vertices.detach().numpy(), truth.vertices, atol=2e-4)
    assert abs(float(canonical.vertices[:, 2].min())) < 1e-5


def test_bone_transforms_skin_the_canonical_body(model):
    shape = torch.tensor([0.3, -0.2, 0.1, 0.0, 0.4, -0.1])
    pose = model.neutral_pose()[None].repeat(2, 1, 1)
    pose[1, model.joint_names.index("lowerleg01.L"), 0] = 1.0
    out = model.forward(shape, pose, torch.tensor([[0.0, 0.0, 0.5], [0.2, 0.0, -1.0]]),
                        torch.tensor([[0.1, 0.2, 0.9], [0.0, 0.0, 1.0]]))
    canonical = model.canonical(shape).vertices
    skinned = skin_points(canonical, torch.from_numpy(model.skinning_weights),
                          out.bone_transforms)
    torch.testing.assert_close(skinned, out.vertices, atol=1e-4, rtol=0)


def test_orientation_and_translation_are_rigid(model):
    shape = torch.zeros(6)
    pose = model.neutral_pose()[None]
    base = model.forward(shape, pose, torch.zeros(1, 3), torch.zeros(1, 3))
    rotvec = torch.tensor([[0.1, -0.4, 1.2]])
    moved = model.forward(shape, pose, rotvec, torch.tensor([[1.0, 2.0, 3.0]]))
    expected = base.vertices[0] @ axis_angle_to_matrix(rotvec[0]).T + torch.tensor([1.0, 2, 3])
    torch.testing.assert_close(moved.vertices[0], expected, atol=1e-4, rtol=0)


def test_gradients_reach_every_parameter(model):
    shape = torch.zeros(6, requires_grad=True)
    pose = model.neutral_pose()[None].clone().requires_grad_(True)
    orient = torch.zeros(1, 3, requires_grad=True)
    transl = torch.zeros(1, 3, requires_grad=True)
    out = model.forward(shape, pose, orient, transl)
    (out.vertices.square().sum() + out.keypoints.square().sum()).backward()
    for tensor in (shape, pose, orient, transl):
        assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_pose_prior_is_zero_inside_limits_and_grows_outside(model):
    model_no_l2 = AnnyBodyModel({"pose_prior_l2": 0.0})
    neutral = model_no_l2.neutral_pose()[None]
    assert float(model_no_l2.pose_prior(neutral)) == 0.0
    bent = neutral.clone()
    bent[0, model.joint_names.index("lowerleg01.R"), 0] = -math.radians(30)  # knee backwards
    more = neutral.clone()
    more[0, model.joint_names.index("lowerleg01.R"), 0] = -math.radians(60)
    assert 0 < float(model_no_l2.pose_prior(bent)) < float(model_no_l2.pose_prior(more))


def test_shape_round_trip_and_unknown_option(model):
    shape = model.shape_from_phenotype(PHENOTYPE.as_dict())
    summary = model.shape_summary(shape)["phenotype"]
    assert summary["height"] == pytest.approx(0.55, abs=1e-5)
    assert float(model.shape_prior(torch.zeros(6))) == 0.0
    with pytest.raises(PipelineError, match="unknown options"):
        make_body_model("anny", {"bogus": 1})
    with pytest.raises(PipelineError, match="unknown body model"):
        make_body_model("smpl-h")

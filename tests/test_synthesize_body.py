"""Anny body wrapper and pose library: frames, LBS exactness, pose sanity, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import require

require("anny")

from pipeline.synthesize import body as B  # noqa: E402
from pipeline.synthesize import poses as P  # noqa: E402

NOSE, L_SHOULDER, R_SHOULDER, L_WRIST, R_WRIST, L_HIP, R_HIP, L_KNEE, R_KNEE = (
    0, 5, 6, 9, 10, 11, 12, 13, 14)


@pytest.fixture(scope="module")
def model():
    return B.load_body_model()


@pytest.fixture(scope="module")
def phenotype():
    return B.Phenotype(gender=0.3, age=0.7, muscle=0.6, weight=0.4, height=0.6, proportions=0.2)


@pytest.fixture(scope="module")
def canonical(model, phenotype):
    return B.canonical_body(model, phenotype)


def test_canonical_frame_and_arrays(canonical):
    v = canonical.vertices
    assert v.shape == (13718, 3) and v.dtype == np.float64
    assert canonical.faces.shape == (27420, 3) and canonical.faces.dtype == np.int64
    assert canonical.skinning_weights.shape == (13718, 104)
    assert canonical.skinning_weights.dtype == np.float32
    np.testing.assert_allclose(canonical.skinning_weights.sum(axis=1), 1.0, atol=1e-5)
    assert canonical.bone_transforms.shape == (104, 4, 4)
    np.testing.assert_array_equal(canonical.bone_transforms, np.tile(np.eye(4), (104, 1, 1)))
    assert canonical.keypoints.shape == (17, 3) and canonical.joints.shape == (104, 3)
    assert len(canonical.bone_names) == 104 and canonical.bone_names[0] == "root"
    assert v[:, 2].min() == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(canonical.joints[0, :2], 0.0, atol=1e-9)  # pelvis on the Z axis
    kp = canonical.keypoints
    assert kp[NOSE, 1] < kp[L_SHOULDER, 1] - 0.05  # faces -Y
    assert kp[L_SHOULDER, 0] > 0 > kp[R_SHOULDER, 0]  # left is +X
    assert 1.4 < v[:, 2].max() < 2.1


def test_canonical_pose_angles(canonical):
    j = dict(zip(canonical.bone_names, canonical.joints, strict=True))
    for side, sign in (("L", 1.0), ("R", -1.0)):
        arm = j[f"wrist.{side}"] - j[f"upperarm01.{side}"]
        below = math.degrees(math.atan2(-arm[2], sign * arm[0]))
        assert 30.0 <= below <= 45.0
        leg = j[f"foot.{side}"] - j[f"upperleg01.{side}"]
        spread = math.degrees(math.atan2(sign * leg[0], -leg[2]))
        assert 10.0 <= spread <= 15.0


def test_lbs_reproduces_posed_vertices(model, phenotype, canonical):
    posed = B.posed_body(model, phenotype, "lunge", yaw=0.7, translation=(1.0, -2.0, 0.3))
    lbs = B.skin(canonical.vertices, canonical.skinning_weights, posed.bone_transforms)
    assert np.abs(lbs - posed.vertices).max() < 1e-3
    assert posed.vertices[:, 2].min() == pytest.approx(0.3, abs=1e-9)
    # Against Anny's own rest-rigged posing (the canonical re-rigging only changes joints).
    still = B.posed_body(model, phenotype, "lunge")
    native = B.anny_posed_vertices(model, phenotype, "lunge")
    delta = still.vertices - native
    shift = np.median(delta, axis=0)
    np.testing.assert_allclose(shift[:2], 0.0, atol=1e-6)
    error = np.linalg.norm(delta - shift, axis=1)
    assert np.percentile(error, 90) < 1e-3 and error.max() < 0.01
    np.testing.assert_allclose(still.joints[0, :2], 0.0, atol=1e-9)


def test_yaw_turns_the_facing_direction(model, phenotype):
    body = B.posed_body(model, phenotype, "stand_relaxed", yaw=math.pi / 2)
    assert body.keypoints[NOSE, 0] > body.joints[0, 0] + 0.05  # -Y turned to +X


def test_poses_look_right(model, phenotype, canonical):
    def kp(name):
        return B.posed_body(model, phenotype, name).keypoints

    standing_hip = canonical.keypoints[L_HIP, 2]
    lunge = kp("lunge")
    assert lunge[L_KNEE, 1] < lunge[L_HIP, 1] - 0.25  # front knee well ahead of the hip
    assert lunge[R_KNEE, 1] > lunge[R_HIP, 1] + 0.1  # back knee behind
    assert lunge[L_HIP, 2] < standing_hip - 0.2
    squat = kp("squat")
    assert squat[L_HIP, 2] < standing_hip - 0.3
    raised = kp("arms_raised")
    assert min(raised[L_WRIST, 2], raised[R_WRIST, 2]) > raised[NOSE, 2] + 0.2
    t_pose = kp("t_pose")
    assert abs(t_pose[L_WRIST, 2] - t_pose[L_SHOULDER, 2]) < 0.1
    assert t_pose[L_WRIST, 0] - t_pose[R_WRIST, 0] > 1.2
    forward = kp("arms_forward")
    assert forward[L_WRIST, 1] < forward[L_SHOULDER, 1] - 0.4
    bend = kp("bend_forward")
    assert bend[NOSE, 2] < bend[L_HIP, 2] + 0.45 and bend[NOSE, 1] < bend[L_HIP, 1] - 0.3
    wave = kp("wave_right")
    assert wave[R_WRIST, 2] > wave[NOSE, 2] > wave[L_WRIST, 2]


def test_library_within_limits():
    assert len(P.POSE_LIBRARY) >= 15
    for name, pose in P.POSE_LIBRARY.items():
        assert pose.name == name
        assert P.within_limits(pose), name
    assert P.CANONICAL_POSE is P.POSE_LIBRARY["canonical"]
    as_json = P.CANONICAL_POSE.to_dict()
    assert as_json["rotations_deg"]["upperleg01.R"] == [0.0, -7.0, 0.0]
    assert P.make_pose("canonical", as_json["rotations_deg"]) == P.CANONICAL_POSE
    bad = P.make_pose("bad", {"lowerleg01.L": (-30.0, 0.0, 0.0)})  # knee bent backwards
    assert not P.within_limits(bad)


def test_sample_actions_deterministic_distinct():
    first = P.sample_actions(np.random.default_rng(3), 8)
    again = P.sample_actions(np.random.default_rng(3), 8)
    assert first == again
    assert len({pose.name for pose in first}) == 8
    assert "canonical" not in {pose.name for pose in first}
    assert all(P.within_limits(pose) for pose in first)
    assert first != P.sample_actions(np.random.default_rng(4), 8)
    with pytest.raises(ValueError, match="99"):
        P.sample_actions(np.random.default_rng(0), 99)


def test_interpolate_and_clip():
    a, b = P.get_pose("stand_relaxed"), P.get_pose("squat")
    assert P.interpolate(a, b, 0.0).as_dict() == a.as_dict()
    assert P.interpolate(a, b, 1.0).as_dict() == b.as_dict()
    frames = P.clip(a, b, 7)
    assert len(frames) == 7 and all(P.within_limits(f) for f in frames)
    knee = [f.angles("lowerleg01.L")[0] for f in frames]
    assert knee[0] == 0.0 and knee[-1] == pytest.approx(120.0)
    assert np.all(np.diff(knee) >= 0)


def test_errors_name_the_bad_value(model):
    with pytest.raises(ValueError, match="moonwalk"):
        P.get_pose("moonwalk")
    with pytest.raises(ValueError, match="moonwalk"):
        B.posed_body(model, B.Phenotype(), "moonwalk")
    with pytest.raises(ValueError, match=r"height=1\.2"):
        B.Phenotype(height=1.2)
    with pytest.raises(ValueError, match="weight"):
        B.sample_phenotype(np.random.default_rng(0), {"weight": (0.5, 1.5)})
    with pytest.raises(ValueError, match="shoe_size"):
        B.sample_phenotype(np.random.default_rng(0), {"shoe_size": (0.1, 0.2)})
    with pytest.raises(ValueError, match="tail"):
        P.make_pose("x", {"tail": (1.0, 0.0, 0.0)})


def test_sample_phenotype_deterministic():
    a = B.sample_phenotype(np.random.default_rng(11))
    assert a == B.sample_phenotype(np.random.default_rng(11))
    assert a != B.sample_phenotype(np.random.default_rng(12))
    for name, (low, high) in B.DEFAULT_PHENOTYPE_RANGES.items():
        assert low <= getattr(a, name) <= high
    fixed = B.sample_phenotype(np.random.default_rng(0), {"gender": (1.0, 1.0)})
    assert fixed.gender == 1.0


def test_body_vertex_uv(model):
    uv = B.body_vertex_uv(model)
    assert uv.shape == (13718, 2)
    assert uv.min() >= 0.0 and uv.max() <= 1.0
    layout, corners = B.body_uv_layout(model)
    assert corners.shape == (27420, 3) and corners.max() < len(layout)


def test_sample_actions_avoids_poses_while_it_can():
    avoid = P.LEG_SPREADING_POSES
    picked = {p.name for p in P.sample_actions(np.random.default_rng(1), 14, avoid=avoid)}
    assert not picked & set(avoid)
    # 15 actions cannot all avoid them: the full library is used rather than failing.
    assert len(P.sample_actions(np.random.default_rng(1), 15, avoid=avoid)) == 15

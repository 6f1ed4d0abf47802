"""Anny body model (free; its data ships in the ``anny`` wheel) for fitting.

Parameters:

* **shape** ``(6,)``: logits of Anny's phenotypes (gender, age, muscle, weight, height,
  proportions); ``phenotype = sigmoid(shape)``, so 0 is Anny's mean phenotype (all 0.5) and
  every value stays in (0, 1).
* **pose** ``(J, 3)``: for each of the J = 33 posed bones (:attr:`AnnyBodyModel.joint_names`:
  spine, neck, head, clavicles, shoulders, arms, forearm twists, wrists, legs, knees, feet),
  the angles ``(rx, ry, rk)`` in RADIANS of the project's pose convention
  (:mod:`pipeline.synthesize.poses`): ``R = Rx(rx) Ry(ry) Rk(rk)`` about world-aligned axes
  at the bone's head, ``k`` the bone's principal axis, right-side bones mirrored. Its joint
  limits are anatomical boxes (:data:`pipeline.synthesize.poses.JOINT_LIMITS`), the pose prior.
* **orient** ``(N, 3)``: axis-angle about the pelvis (Anny's root, which therefore is not
  among the posed bones); **transl** ``(N, 3)``: the pelvis position in the world.

Canonical frame: the body in the canonical star pose with its feet at z = 0 and the pelvis on
the Z axis, exactly as the synthetic truth's ``canonical_body.ply`` (Z up, facing -Y).

Posed bodies are linear blend skinning of the canonical body with Anny's skinning weights
and ``bone_transforms[b] = G W_pose[b] W_canon[b]^-1 T(-lift)`` (``W``: Anny's world bone
poses, ``G``: orient + transl, ``lift``: canonical feet to z = 0): the construction of the
synthetic truth, so canonical <-> posed maps are exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from pipeline.bodymodel import (
    BodyOutput,
    CanonicalBody,
    Skeleton,
    axis_angle_to_matrix,
    rigid,
)
from pipeline.errors import PipelineError
from pipeline.skeleton import COCO17
from pipeline.synthesize.body import PHENOTYPE_NAMES, load_body_model
from pipeline.synthesize.poses import (
    CANONICAL_POSE,
    JOINT_LIMITS,
    PRINCIPAL_AXES,
    poseable_bones,
)

ROOT = "root"
_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
# Arms hanging ~10 degrees from vertical with the elbows slightly bent: where fitting starts.
_NEUTRAL_DEG = {"upperarm01": (0.0, 30.0, 0.0), "lowerarm01": (0.0, 0.0, -22.0)}


def _limit_key(bone: str) -> str:
    return bone[:-2] + ".L" if bone.endswith(".R") else bone


class AnnyBodyModel:
    """The Anny backend of :class:`pipeline.bodymodel.BodyModel` (float32, CPU).

    Options (``fit.anny`` in config): ``pose_prior_l2`` (weight of a small pull of every
    angle towards zero, default 0.01); ``prior_phenotype`` (the shape prior's mean and the
    fit's start, ``{name: value}``, missing names 0.5: Anny's mean phenotype, whose age 0.5
    is an adolescent's).
    """

    name = "anny"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        self._l2 = float(options.pop("pose_prior_l2", 0.01))
        prior = dict(options.pop("prior_phenotype", {}))
        unknown = sorted(set(prior) - set(PHENOTYPE_NAMES))
        if unknown:
            raise PipelineError(f"fit.anny.prior_phenotype: unknown names {unknown}; known: "
                                f"{list(PHENOTYPE_NAMES)}")
        self._prior_mean = self.shape_from_phenotype(prior)
        if options:
            raise PipelineError(f"fit.anny: unknown options {sorted(options)}")
        model = load_body_model().to(torch.float32)
        self._model = model
        labels = list(model.bone_labels)
        self.bone_names = tuple(labels)
        self.joint_names = tuple(b for b in poseable_bones() if b != ROOT)
        self.shape_size = len(PHENOTYPE_NAMES)
        self._joint_index = torch.tensor([labels.index(b) for b in self.joint_names])
        axes = torch.tensor([PRINCIPAL_AXES.get(_limit_key(b), (0.0, 0.0, 1.0))
                             for b in self.joint_names], dtype=torch.float32)
        self._axes = axes / axes.norm(dim=1, keepdim=True)
        self._right = torch.tensor([b.endswith(".R") for b in self.joint_names])
        limits = np.radians([JOINT_LIMITS[_limit_key(b)] for b in self.joint_names])
        self._low = torch.tensor(limits[:, :, 0], dtype=torch.float32)
        self._high = torch.tensor(limits[:, :, 1], dtype=torch.float32)
        self.faces = model.faces.long().numpy().astype(np.int64)
        bone_index = model.vertex_bone_indices.long().numpy()  # (V, k)
        weights = model.vertex_bone_weights.to(torch.float32)
        weights = (weights / weights.sum(dim=1, keepdim=True)).numpy()  # (V, k)
        dense = np.zeros((weights.shape[0], len(labels)), dtype=np.float64)
        np.add.at(dense, (np.repeat(np.arange(weights.shape[0]), weights.shape[1]),
                          bone_index.ravel()), weights.ravel())
        self.skinning_weights = dense.astype(np.float32)
        # (V, B) with k of B bones per vertex: sparse for the skinning product
        self._sparse_weights = torch.from_numpy(self.skinning_weights).to_sparse_coo().coalesce()
        self._keypoint_matrix = self._coco_regressor(model)
        self._canonical_pose = self._pose_from_degrees(CANONICAL_POSE.as_dict())

    @staticmethod
    def _coco_regressor(model: Any) -> torch.Tensor:
        import anny

        regressor = anny.KeypointsRegressor.coco(model, labels=list(COCO17))
        return regressor.regression_weights.to(torch.float32)  # (17, V)

    def _pose_from_degrees(self, angles: Mapping[str, tuple[float, float, float]]) -> torch.Tensor:
        pose = torch.zeros(len(self.joint_names), 3)
        for bone, triple in angles.items():
            if bone != ROOT:
                pose[self.joint_names.index(bone)] = torch.tensor(
                    [math.radians(a) for a in triple])
        return pose

    def neutral_pose(self) -> torch.Tensor:
        """(J, 3) standing, arms hanging, elbows slightly bent."""
        return self._pose_from_degrees({f"{bone}.{side}": angles
                                        for bone, angles in _NEUTRAL_DEG.items()
                                        for side in ("L", "R")})

    def pose_from_degrees(self, angles: Mapping[str, tuple[float, float, float]]) -> torch.Tensor:
        """(J, 3) radians from a ``{bone: (rx, ry, rk)}`` degrees mapping (a synthetic
        ``Pose``'s ``as_dict()``); ``root`` is ignored (it is the global orientation)."""
        return self._pose_from_degrees(angles)

    def _rotations(self, pose: torch.Tensor) -> torch.Tensor:
        """(N, J, 3) radians -> (N, J, 3, 3) world-aligned delta rotations."""
        unit_x = torch.tensor([1.0, 0.0, 0.0])
        unit_y = torch.tensor([0.0, 1.0, 0.0])
        rx = axis_angle_to_matrix(pose[..., 0:1] * unit_x)
        ry = axis_angle_to_matrix(pose[..., 1:2] * unit_y)
        rk = axis_angle_to_matrix(pose[..., 2:3] * self._axes)
        rotation = rx @ ry @ rk
        mirrored = _MIRROR @ rotation @ _MIRROR
        return torch.where(self._right[:, None, None], mirrored, rotation)

    def _bone_poses(self, shape: torch.Tensor, pose: torch.Tensor) -> dict[str, torch.Tensor]:
        """Anny's bones for the canonical pose followed by ``pose`` (N, J, 3), one batch, and
        the canonical vertices.

        Anny's own forward would build the rest mesh N + 1 times and skin all N + 1 bodies;
        the fit needs the rest mesh once and only the canonical body skinned (the posed ones
        are skinned by :meth:`forward`), so this calls its steps directly: 2-3× faster with
        its gradient, the same numbers within 1e-6 (``tests/test_bodymodel_anny.py``).
        """
        n = pose.shape[0]
        all_poses = torch.cat([self._canonical_pose[None], pose], 0)
        deltas = torch.eye(4).repeat(n + 1, len(self.bone_names), 1, 1)
        deltas[:, self._joint_index, :3, :3] = self._rotations(all_poses)
        phenotype = torch.sigmoid(shape)
        kwargs = {name: phenotype[i].expand(1) for i, name in enumerate(PHENOTYPE_NAMES)}
        model = self._model
        _, values, local, facial = model.get_tensor_inputs(None, kwargs, None, None)
        rest = model.get_rest_model(
            model._get_phenotype_blendshape_coefficients(values, local, facial))
        transforms, bone_poses = model.get_bone_transforms(deltas, rest["rest_bone_poses"])
        canonical = model.get_skinned_vertices(rest["rest_vertices"], transforms[:1])[0]
        lift = torch.stack([torch.zeros(()), torch.zeros(()), -canonical[:, 2].min()])
        return {"canonical": canonical + lift, "lift": lift,
                "canon_bones": bone_poses[0], "posed_bones": bone_poses[1:]}

    def canonical(self, shape: torch.Tensor) -> CanonicalBody:
        vertices = self._bone_poses(shape, torch.zeros(0, len(self.joint_names), 3))["canonical"]
        return CanonicalBody(vertices=vertices, keypoints=self._keypoint_matrix @ vertices)

    def skeleton(self, shape: torch.Tensor) -> Skeleton:
        """Anny's bone tree and its bones' frames in the canonical pose (lifted like the
        canonical vertices)."""
        with torch.no_grad():
            parts = self._bone_poses(shape, torch.zeros(0, len(self.joint_names), 3))
            bind = rigid(torch.eye(3), parts["lift"]) @ parts["canon_bones"]
        return Skeleton(parents=np.asarray(self._model.bone_parents, dtype=np.int64),
                        bind=bind.numpy().astype(np.float64))

    def forward(self, shape: torch.Tensor, pose: torch.Tensor, orient: torch.Tensor,
                transl: torch.Tensor) -> BodyOutput:
        parts = self._bone_poses(shape, pose)
        unlift = rigid(torch.eye(3), -parts["lift"])
        local = parts["posed_bones"] @ torch.linalg.inv(parts["canon_bones"]) @ unlift
        world = rigid(axis_angle_to_matrix(orient), transl)[:, None] @ local  # (N, B, 4, 4)
        n, n_bones = world.shape[:2]
        # Linear blend skinning as one sparse (V, B) @ (B, N·12) product: each vertex's
        # blended 3×4 transform (10× faster with its gradient than gathering its k bones).
        flat = world[:, :, :3, :].reshape(n, n_bones, 12).permute(1, 0, 2).reshape(n_bones, -1)
        blended = torch.sparse.mm(self._sparse_weights, flat).reshape(-1, n, 3, 4).permute(
            1, 0, 2, 3)  # (N, V, 3, 4)
        c = parts["canonical"][None, :, None, :]  # (1, V, 1, 3)
        vertices = (blended[..., 0] * c[..., 0] + blended[..., 1] * c[..., 1]
                    + blended[..., 2] * c[..., 2] + blended[..., 3])  # (N, V, 3)
        keypoints = torch.einsum("kv,nvi->nki", self._keypoint_matrix, vertices)
        return BodyOutput(vertices=vertices, keypoints=keypoints, bone_transforms=world)

    def pose_prior(self, pose: torch.Tensor) -> torch.Tensor:
        excess = torch.relu(self._low - pose) + torch.relu(pose - self._high)
        return (excess ** 2).sum(dim=(-1, -2)).mean() + self._l2 * (pose ** 2).sum(
            dim=(-1, -2)).mean()

    def shape_prior(self, shape: torch.Tensor) -> torch.Tensor:
        return ((shape - self._prior_mean) ** 2).mean()

    def initial_shape(self) -> torch.Tensor:
        """The prior's mean phenotype (``fit.anny.prior_phenotype``) as logits."""
        return self._prior_mean.clone()

    def shape_summary(self, shape: torch.Tensor) -> dict[str, Any]:
        values = torch.sigmoid(shape.detach()).tolist()
        return {"phenotype": dict(zip(PHENOTYPE_NAMES, values, strict=True))}

    @staticmethod
    def shape_from_phenotype(phenotype: Mapping[str, float]) -> torch.Tensor:
        """(6,) logits of a ``{name: value in (0, 1)}`` phenotype (missing names: 0.5)."""
        values = torch.tensor([float(phenotype.get(n, 0.5)) for n in PHENOTYPE_NAMES])
        values = values.clamp(1e-4, 1 - 1e-4)
        return torch.log(values) - torch.log1p(-values)

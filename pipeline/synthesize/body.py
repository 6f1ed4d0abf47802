"""Anny body wrapper: phenotypes, the canonical (star) pose, posed bodies with LBS transforms.

Frame (project convention): metres, Z up (Anny's native frame). The person FACES -Y (nose at
negative y); their LEFT side is +X. Anny places the root (pelvis) bone head at the origin; every
:class:`BodyMesh` here is translated by ``(0, 0, -min z)`` so the pelvis is on the Z axis
(x = y = 0) and the lowest vertex touches z = 0.

Canonical pose (:data:`pipeline.synthesize.poses.CANONICAL_POSE`): a star / A-pose with the
upper arms 40 degrees below horizontal, elbows straight (4 degrees of flexion) and each leg
12 degrees from vertical (ankles ~0.6 m apart), so no limbs touch. These are the angles of the
default phenotype; the rest skeleton varies with the phenotype, moving them by a few degrees
(extremes seen: arms 39-46, elbows 4-13, legs 11-14 degrees).

After :func:`posed_body` with ``yaw`` the person faces ``(sin yaw, -cos yaw, 0)``.

Rigging: the canonical mesh is Anny's canonical-pose output; every other pose is LINEAR BLEND
SKINNING of that mesh with Anny's skinning weights and ``bone_transforms[b] = A W_pose[b]
W_canon[b]^-1`` (``W``: Anny's world bone poses, ``A``: the yaw/ground/world translation), i.e.
Anny's own forward kinematics + LBS with the canonical mesh as rest. This is exact
(``skin(canonical, T) == posed``), keeps bodies, garments and keypoints consistent, and differs
from Anny's rest-rigged output only at joints where the canonical pose bends (over the library:
95-99% of vertices within 1 mm, max 0.2-1.4 cm near elbows and shoulders)."""

from __future__ import annotations

import math
import numbers
import types
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.synthesize.poses import CANONICAL_POSE, Pose, get_pose, pose_rotations

if TYPE_CHECKING:
    import torch

COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
          "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
          "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")


def load_body_model() -> Any:
    """Anny's full-body model (``anny`` rig, 104 bones; ``anny`` topology, 13,718 vertices,
    27,420 triangles), CPU, float64, dense LBS. First call in a fresh ``$ANNY_CACHE_DIR``
    builds a cache (~1.5 min); later calls take ~1 s."""
    import anny

    model = anny.Anny(rig="anny", topology="anny", skinning_method="lbs")
    return model.eval()


@dataclass(frozen=True)
class Phenotype:
    """Anny's phenotype, each value in [0, 1]. gender: 0 male, 1 female; age: 1/3 child,
    2/3 young adult (~25 y), 1 old; the rest go from minimal to maximal."""

    gender: float = 0.5
    age: float = 0.667
    muscle: float = 0.5
    weight: float = 0.5
    height: float = 0.5
    proportions: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, numbers.Real) and 0.0 <= float(value) <= 1.0):
                raise ValueError(f"phenotype {f.name}={value!r} is outside [0, 1]")

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


PHENOTYPE_NAMES = tuple(f.name for f in fields(Phenotype))
# Adults (~22-60 years) of both genders, varied build; values are uniform within each range.
# Measured standing heights: height 0.3 -> 1.46-1.66 m, 0.62 -> 1.80-2.02 m (female-male).
DEFAULT_PHENOTYPE_RANGES: Mapping[str, tuple[float, float]] = types.MappingProxyType({
    "gender": (0.0, 1.0), "age": (0.6, 0.85), "muscle": (0.2, 0.8),
    "weight": (0.2, 0.8), "height": (0.3, 0.62), "proportions": (0.0, 0.7),
})


def sample_phenotype(rng: np.random.Generator,
                     ranges: Mapping[str, tuple[float, float]] | None = None) -> Phenotype:
    """A phenotype with each value uniform in its range (``DEFAULT_PHENOTYPE_RANGES`` for the
    names ``ranges`` omits); names are drawn in :data:`PHENOTYPE_NAMES` order."""
    ranges = dict(ranges or {})
    unknown = set(ranges) - set(PHENOTYPE_NAMES)
    if unknown:
        raise ValueError(f"unknown phenotype names {sorted(unknown)}; known: {PHENOTYPE_NAMES}")
    values = {}
    for name in PHENOTYPE_NAMES:
        low, high = ranges.get(name, DEFAULT_PHENOTYPE_RANGES[name])
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"phenotype range {name}=({low}, {high}) is not within [0, 1]")
        values[name] = float(rng.uniform(low, high))
    return Phenotype(**values)


@dataclass(frozen=True)
class BodyMesh:
    """A body mesh in the world frame (see module docstring).

    vertices: (V, 3) float64; faces: (F, 3) int64 triangles, outward-oriented;
    bone_transforms: (B, 4, 4) float64, canonical-world -> this-world for each bone (identity for
    the canonical body) so that ``vertices = skin(canonical.vertices, skinning_weights, T)``;
    skinning_weights: (V, B) float32, rows sum to 1; keypoints: (17, 3) float64, COCO-17 order
    (:data:`COCO17`); joints: (B, 3) float64 bone heads; bone_names: B Anny bone names.
    """

    vertices: np.ndarray
    faces: np.ndarray
    bone_transforms: np.ndarray
    skinning_weights: np.ndarray
    keypoints: np.ndarray
    joints: np.ndarray
    bone_names: tuple[str, ...]


def _pose_tensor(model: Any, pose: Pose) -> torch.Tensor:
    """(1, B, 4, 4) Anny ``local-ref`` deltas for ``pose``."""
    import torch

    labels = list(model.bone_labels)
    deltas = np.tile(np.eye(4), (len(labels), 1, 1))
    for bone, rotation in pose_rotations(pose).items():
        deltas[labels.index(bone), :3, :3] = rotation
    return torch.as_tensor(deltas, dtype=model.dtype)[None]


def _forward(model: Any, phenotype: Phenotype, pose: Pose) -> dict[str, np.ndarray]:
    """Anny's forward pass: posed ``vertices`` (V, 3) and world ``bone_poses`` (B, 4, 4)."""
    import torch

    if model.pose_parameterization != "local-ref":
        raise ValueError(f"model pose_parameterization={model.pose_parameterization!r}; "
                         "this module needs 'local-ref' (the anny.Anny default)")
    with torch.no_grad():
        out = model(pose_parameters=_pose_tensor(model, pose),
                    phenotype_kwargs=phenotype.as_dict())
    return {"vertices": out["vertices"][0].double().numpy(),
            "bone_poses": out["bone_poses"][0].double().numpy()}


def _dense_weights(model: Any) -> np.ndarray:
    """(V, B) float32 skinning weights, rows summing to 1."""
    weights = model.vertex_bone_weights.double().numpy()
    indices = model.vertex_bone_indices.long().numpy()
    dense = np.zeros((weights.shape[0], len(model.bone_labels)))
    np.add.at(dense, (np.repeat(np.arange(weights.shape[0]), weights.shape[1]),
                      indices.ravel()), weights.ravel())
    dense /= dense.sum(axis=1, keepdims=True)
    return dense.astype(np.float32)


def _keypoint_matrix(model: Any) -> np.ndarray:
    """(17, V) COCO-17 keypoint regression weights (Anny's ``coco`` regressor)."""
    import anny

    regressor = anny.KeypointsRegressor.coco(model, labels=list(COCO17))
    return regressor.regression_weights.double().numpy()


def skin(vertices: np.ndarray, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """LBS: (N, 3) points, (N, B) weights, (B, 4, 4) transforms -> (N, 3) float64."""
    blend = np.einsum("nb,bij->nij", np.asarray(weights, dtype=np.float64),
                      np.asarray(transforms, dtype=np.float64)[:, :3, :])
    return np.einsum("nij,nj->ni", blend[:, :, :3], vertices) + blend[:, :, 3]


def _translation(offset: np.ndarray) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    return matrix


def _yaw(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.eye(4)
    matrix[:2, :2] = [[c, -s], [s, c]]
    return matrix


@dataclass(frozen=True)
class _Rig:
    canonical_local: np.ndarray  # (V, 3) canonical vertices in Anny's frame
    canonical_poses: np.ndarray  # (B, 4, 4) canonical world bone poses, Anny's frame
    lift: np.ndarray  # (3,) Anny frame -> canonical world translation
    weights: np.ndarray  # (V, B) float32
    faces: np.ndarray  # (F, 3) int64
    keypoint_matrix: np.ndarray  # (17, V)


def _rig(model: Any, phenotype: Phenotype) -> _Rig:
    out = _forward(model, phenotype, CANONICAL_POSE)
    vertices = out["vertices"]
    return _Rig(canonical_local=vertices, canonical_poses=out["bone_poses"],
                lift=np.array([0.0, 0.0, -vertices[:, 2].min()]), weights=_dense_weights(model),
                faces=model.faces.long().numpy().astype(np.int64),
                keypoint_matrix=_keypoint_matrix(model))


def canonical_body(model: Any, phenotype: Phenotype) -> BodyMesh:
    """The body in the canonical star pose, feet at z = 0, pelvis on the Z axis."""
    rig = _rig(model, phenotype)
    vertices = rig.canonical_local + rig.lift
    joints = rig.canonical_poses[:, :3, 3] + rig.lift
    return BodyMesh(vertices=vertices, faces=rig.faces,
                    bone_transforms=np.tile(np.eye(4), (len(joints), 1, 1)),
                    skinning_weights=rig.weights, keypoints=rig.keypoint_matrix @ vertices,
                    joints=joints, bone_names=tuple(model.bone_labels))


def posed_body(model: Any, phenotype: Phenotype, pose: Pose | str, yaw: float = 0.0,
               translation: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0)) -> BodyMesh:
    """The body in ``pose`` (a :class:`Pose` or a library name), then turned by ``yaw`` radians
    about the world Z axis through the pelvis, lifted so its lowest vertex is at z = 0, then
    moved by ``translation`` (3,) metres. ``bone_transforms`` map the canonical body (as
    returned by :func:`canonical_body`) to this one."""
    if isinstance(pose, str):
        pose = get_pose(pose)
    offset = np.asarray(translation, dtype=np.float64)
    if offset.shape != (3,) or not np.all(np.isfinite(offset)) or not math.isfinite(yaw):
        raise ValueError(f"bad yaw={yaw!r} or translation={translation!r} (need (3,) finite)")
    rig = _rig(model, phenotype)
    posed = _forward(model, phenotype, pose)["bone_poses"]
    local = posed @ np.linalg.inv(rig.canonical_poses) @ _translation(-rig.lift)
    turned = np.einsum("ij,bjk->bik", _yaw(yaw), local)
    lowest = skin(rig.canonical_local + rig.lift, rig.weights, turned)[:, 2].min()
    world = _translation(offset + np.array([0.0, 0.0, -lowest])) @ _yaw(yaw)
    transforms = np.einsum("ij,bjk->bik", world, local)
    vertices = skin(rig.canonical_local + rig.lift, rig.weights, transforms)
    joints = np.einsum("ij,bj->bi", world[:3, :3], posed[:, :3, 3]) + world[:3, 3]
    return BodyMesh(vertices=vertices, faces=rig.faces, bone_transforms=transforms,
                    skinning_weights=rig.weights, keypoints=rig.keypoint_matrix @ vertices,
                    joints=joints, bone_names=tuple(model.bone_labels))


def anny_posed_vertices(model: Any, phenotype: Phenotype, pose: Pose | str) -> np.ndarray:
    """(V, 3) Anny's own (rest-rigged) posed vertices in Anny's frame (pelvis at the origin,
    no yaw, no lift); for comparisons with :func:`posed_body`."""
    return _forward(model, phenotype, get_pose(pose) if isinstance(pose, str) else pose)[
        "vertices"]


def body_uv_layout(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Anny's texture layout: UVs (U, 2) float64 (OBJ convention, v up) and per-face-corner
    UV indices (F, 3) int64 (UV seams make U > V)."""
    return (model.texture_coordinates.double().numpy(),
            model.face_texture_coordinate_indices.long().numpy().astype(np.int64))


def body_vertex_uv(model: Any) -> np.ndarray:
    """(V, 2) float64 per-vertex UV: the UV index used by most of the vertex's face corners
    (ties: the lowest index). Seam vertices thus take one side of the seam; averaging the
    duplicates would put them between distant islands of the texture."""
    uv, corner_uv = body_uv_layout(model)
    faces = model.faces.long().numpy()
    n_vertices = int(faces.max()) + 1
    pairs = np.unique(np.stack([faces.ravel(), corner_uv.ravel()], axis=1), axis=0,
                      return_counts=True)
    (vertex, uv_index), counts = pairs[0].T, pairs[1]
    order = np.lexsort((uv_index, -counts, vertex))  # per vertex: most used, then lowest index
    first = np.unique(vertex[order], return_index=True)[1]
    out = np.zeros((n_vertices, 2))
    out[vertex[order][first]] = uv[uv_index[order][first]]
    return out

"""SMPL-X behind :class:`pipeline.bodymodel.BodyModel`, through the ``smplx`` package.

The licensed model file (``SMPLX_NEUTRAL.npz``, ``SMPLX_MALE.npz``, ...) is never shipped:
config ``fit.smplx.model_path`` names it or its folder. Install the package with
``pip install -e ".[smplx]"``.

Frame: SMPL-X's native one, metres, **Y up**, the body facing +Z, its left side at +X. The
global orientation rotates about the root (pelvis) joint, then the translation is added.

Canonical pose: a star pose (hips abducted ~12 degrees each, upper arms ~40 degrees below
horizontal, zero orientation and translation). ``forward`` returns per-bone transforms
``G_posed[b] @ inverse(G_canonical[b])`` of the 55 SMPL-X joints, so that linear blend
skinning of the canonical vertices gives the posed ones **up to** (a) SMPL-X's pose-corrective
blend shapes, which differ between the canonical and the posed pose, and (b) the blending
error of vertices whose weights span bones with different canonical transforms (exact for
vertices driven by one bone). Hands keep the model's mean (relaxed) pose; jaw, eyes and
expression stay zero.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.backends import BackendUnavailable
from pipeline.bodymodel import (
    BodyOutput,
    CanonicalBody,
    Skeleton,
    axis_angle_to_matrix,
    rigid,
)
from pipeline.errors import PipelineError

INSTALL = 'install it with: pip install -e ".[smplx]"'
GENDERS = ("neutral", "male", "female")

BONE_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "jaw", "left_eye_smplhf", "right_eye_smplhf",
    *(f"{side}_{finger}{k}" for side in ("left", "right")
      for finger in ("index", "middle", "pinky", "ring", "thumb") for k in (1, 2, 3)),
)
JOINT_NAMES = BONE_NAMES[1:22]  # the 21 body joints of ``body_pose``, in its order
_J = {name: i for i, name in enumerate(JOINT_NAMES)}  # index into the (21, 3) pose

# COCO-17 body keypoints: SMPL-X skeleton joints (indices into the 55 bones)
_COCO_BODY = tuple(BONE_NAMES.index(n) for n in (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"))
# COCO-17 face keypoints: surface vertices, named as in smplx.vertex_ids.vertex_ids["smplx"]
_COCO_FACE = ("nose", "leye", "reye", "lear", "rear")

_DEG = math.pi / 180.0
_STAR = {"left_hip": (0, 0, 12), "right_hip": (0, 0, -12),
         "left_shoulder": (0, 0, -40), "right_shoulder": (0, 0, 40)}  # degrees
_NEUTRAL = {"left_shoulder": (0, 0, -77), "right_shoulder": (0, 0, 77)}  # arms 13 deg off vertical

# Approximate joint limits as boxes on the axis-angle components (radians), (lo, hi) per axis.
# They are rough bounds on x/y/z components, not anatomical Euler limits: knees flex about +x
# only, elbows about -y (left) / +y (right) only; the rest are generous boxes.
_LIMITS: dict[str, tuple[tuple[float, float], ...]] = {
    "left_hip": ((-2.6, 0.8), (-1.0, 1.0), (-0.6, 1.6)),
    "right_hip": ((-2.6, 0.8), (-1.0, 1.0), (-1.6, 0.6)),
    "left_knee": ((0.0, 2.7), (-0.3, 0.3), (-0.2, 0.2)),
    "right_knee": ((0.0, 2.7), (-0.3, 0.3), (-0.2, 0.2)),
    "left_ankle": ((-0.9, 0.9), (-0.6, 0.6), (-0.5, 0.5)),
    "right_ankle": ((-0.9, 0.9), (-0.6, 0.6), (-0.5, 0.5)),
    "left_foot": ((-0.6, 0.6),) * 3, "right_foot": ((-0.6, 0.6),) * 3,
    "spine1": ((-0.8, 0.8),) * 3, "spine2": ((-0.8, 0.8),) * 3, "spine3": ((-0.8, 0.8),) * 3,
    "neck": ((-0.9, 0.9),) * 3, "head": ((-0.9, 0.9),) * 3,
    "left_collar": ((-0.8, 0.8),) * 3, "right_collar": ((-0.8, 0.8),) * 3,
    "left_shoulder": ((-2.8, 2.8),) * 3, "right_shoulder": ((-2.8, 2.8),) * 3,
    "left_elbow": ((-1.6, 1.6), (-2.7, 0.0), (-0.3, 0.3)),
    "right_elbow": ((-1.6, 1.6), (0.0, 2.7), (-0.3, 0.3)),
    "left_wrist": ((-1.6, 1.6), (-1.0, 1.0), (-1.3, 1.3)),
    "right_wrist": ((-1.6, 1.6), (-1.0, 1.0), (-1.3, 1.3)),
}
POSE_L2_WEIGHT = 0.01  # the small L2 on the pose's deviation from neutral_pose()


def _pose_table(entries: dict[str, tuple[float, float, float]], scale: float) -> torch.Tensor:
    """(21, 3) pose, zero except the named joints (values times ``scale``)."""
    pose = torch.zeros(len(JOINT_NAMES), 3)
    for name, value in entries.items():
        pose[_J[name]] = torch.tensor(value, dtype=torch.float32) * scale
    return pose


def _model_file(options: dict[str, Any], gender: str) -> Path:
    """The SMPL-X file named by ``model_path`` (the file or its folder)."""
    how = ("set fit.smplx.model_path to SMPLX_<GENDER>.npz or its folder "
           "(download from https://smpl-x.is.tue.mpg.de, licence required)")
    raw = options.get("model_path")
    if not raw:
        raise BackendUnavailable(f"smplx: option fit.smplx.model_path is not set; {how}")
    path = Path(str(raw)).expanduser()
    if path.is_dir():
        for ext in ("npz", "pkl"):
            if (path / f"SMPLX_{gender.upper()}.{ext}").is_file():
                return path / f"SMPLX_{gender.upper()}.{ext}"
        raise BackendUnavailable(f"smplx: no SMPLX_{gender.upper()}.npz in {path} "
                                 f"(fit.smplx.model_path); {how}")
    if not path.is_file():
        raise BackendUnavailable(f"smplx: fit.smplx.model_path file {path} does not exist; {how}")
    return path


def _invert_rigid(t: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms (..., 4, 4)."""
    rot_t = t[..., :3, :3].transpose(-1, -2)
    return rigid(rot_t, -(rot_t @ t[..., :3, 3:])[..., 0])


class SmplxBodyModel:
    """SMPL-X (``smplx`` package) with J = 21 posed body joints and B = 55 bones.

    Options (config ``fit.smplx``): ``model_path`` (required), ``gender`` (neutral | male |
    female, default neutral), ``num_betas`` (default 10; the ``smplx`` loader caps it at 10 for
    model files with fewer than 300 shape components). Float32 on the CPU.
    """

    name = "smplx"
    joint_names = JOINT_NAMES
    bone_names = BONE_NAMES

    def __init__(self, options: dict[str, Any]) -> None:
        gender = str(options.get("gender", "neutral")).lower()
        if gender not in GENDERS:
            raise PipelineError(f"fit.smplx.gender must be one of {GENDERS}, got {gender!r}")
        path = _model_file(options, gender)
        try:
            import smplx
            from smplx.lbs import lbs
            from smplx.vertex_ids import vertex_ids
        except ImportError as exc:
            raise BackendUnavailable(f"the smplx body model needs the smplx package ({exc}); "
                                     f"{INSTALL}") from exc
        try:
            model = smplx.SMPLX(str(path), gender=gender, ext=path.suffix.lstrip("."),
                                num_betas=int(options.get("num_betas", 10)), use_pca=False,
                                flat_hand_mean=False, dtype=torch.float32)
        except (OSError, KeyError, AttributeError, ValueError, pickle.UnpicklingError,
                zipfile.BadZipFile) as exc:
            raise BackendUnavailable(f"smplx: cannot load {path} (fit.smplx.model_path) as an "
                                     f"SMPL-X model: {exc}") from exc
        self._model = model.eval()
        self._smplx_lbs = lbs
        self.shape_size = int(model.num_betas)
        self.faces = np.asarray(model.faces, dtype=np.int64)
        self.skinning_weights = model.lbs_weights.numpy().astype(np.float32)
        self._parents = [int(p) for p in model.parents]
        self._face_vertices = torch.tensor([vertex_ids["smplx"][n] for n in _COCO_FACE])
        self._coco_body = torch.tensor(_COCO_BODY)
        # body-independent part of the 55-joint pose (mean hands); (55, 3)
        self._pose_rest = model.pose_mean.detach().reshape(-1, 3).clone()
        self._lo = torch.tensor([[a[0] for a in _LIMITS[n]] for n in JOINT_NAMES])
        self._hi = torch.tensor([[a[1] for a in _LIMITS[n]] for n in JOINT_NAMES])

    # -- poses -------------------------------------------------------------------------------
    def neutral_pose(self) -> torch.Tensor:
        """(21, 3): standing, arms hanging ~13 degrees off vertical."""
        return _pose_table(_NEUTRAL, _DEG)

    def canonical_pose(self) -> torch.Tensor:
        """(21, 3): the star pose of :meth:`canonical`."""
        return _pose_table(_STAR, _DEG)

    # -- geometry ----------------------------------------------------------------------------
    def _full_pose(self, pose: torch.Tensor, orient: torch.Tensor) -> torch.Tensor:
        """(N, 21, 3) body pose and (N, 3) orientation -> (N, 55, 3) full SMPL-X pose."""
        full = self._pose_rest.expand(pose.shape[0], -1, -1).clone()
        full[:, 0] = full[:, 0] + orient
        full[:, 1:22] = full[:, 1:22] + pose
        return full

    def _surface(self, shape: torch.Tensor, full: torch.Tensor,
                 transl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """smplx's own LBS for one shape (S,), N full poses (N, 55, 3), transl (N, 3) ->
        vertices (N, V, 3) and COCO-17 keypoints (N, 17, 3)."""
        m = self._model
        betas = shape.reshape(1, -1).expand(full.shape[0], -1)
        vertices, joints = self._smplx_lbs(betas, full.reshape(full.shape[0], -1), m.v_template,
                                           m.shapedirs, m.posedirs, m.J_regressor, m.parents,
                                           m.lbs_weights, pose2rot=True)
        keypoints = torch.cat([vertices[:, self._face_vertices], joints[:, self._coco_body]], 1)
        return vertices + transl[:, None], keypoints + transl[:, None]

    def _joint_transforms(self, shape: torch.Tensor, full: torch.Tensor,
                          transl: torch.Tensor) -> torch.Tensor:
        """Global rigid joint transforms G (N, 55, 4, 4) (rest frame -> world) for one shape
        (S,), full poses (N, 55, 3) and transl (N, 3), down the kinematic tree from the rest
        joints J = J_regressor @ (v_template + shapedirs @ shape)."""
        m = self._model
        n = full.shape[0]
        rest = m.J_regressor @ (m.v_template + torch.einsum("vcs,s->vc", m.shapedirs, shape))
        rots = axis_angle_to_matrix(full)  # (N, 55, 3, 3)
        world = rigid(torch.eye(3, dtype=shape.dtype).expand(n, 3, 3), transl)  # (N, 4, 4)
        chain: list[torch.Tensor] = []
        for b, parent in enumerate(self._parents):
            offset = rest[b] - rest[parent] if parent >= 0 else rest[b]
            local = rigid(rots[:, b], offset.expand(n, 3))
            chain.append((chain[parent] if parent >= 0 else world) @ local)
        return torch.stack(chain, 1)

    def forward(self, shape: torch.Tensor, pose: torch.Tensor, orient: torch.Tensor,
                transl: torch.Tensor) -> BodyOutput:
        """Shape (S,), pose (N, 21, 3), orient (N, 3), transl (N, 3) -> vertices (N, V, 3),
        COCO-17 keypoints (N, 17, 3) and bone transforms (N, 55, 4, 4) canonical -> posed.

        ``skin_points(canonical(shape).vertices, skinning_weights, bone_transforms)`` equals
        ``vertices`` up to the pose-corrective blend shapes (see the module docstring).
        """
        full = self._full_pose(pose, orient)
        vertices, keypoints = self._surface(shape, full, transl)
        posed = self._joint_transforms(shape, full, transl)
        zero = torch.zeros(1, 3, dtype=shape.dtype)
        canon = self._joint_transforms(shape, self._full_pose(self.canonical_pose()[None], zero),
                                       zero)
        return BodyOutput(vertices, keypoints, posed @ _invert_rigid(canon))

    def skeleton(self, shape: torch.Tensor) -> Skeleton:
        """SMPL-X's kinematic tree and its joints' frames in the star pose (zero orientation
        and translation): the frames :meth:`forward`'s bone transforms start from."""
        zero = torch.zeros(1, 3, dtype=shape.dtype)
        with torch.no_grad():
            bind = self._joint_transforms(shape, self._full_pose(self.canonical_pose()[None],
                                                                 zero), zero)[0]
        return Skeleton(parents=np.asarray(self._parents, dtype=np.int64),
                        bind=bind.numpy().astype(np.float64))

    def canonical(self, shape: torch.Tensor) -> CanonicalBody:
        """Shape (S,) -> the star-posed body: vertices (V, 3), keypoints (17, 3), Y up,
        zero orientation and translation (includes the star pose's corrective shapes)."""
        zero = torch.zeros(1, 3, dtype=shape.dtype)
        full = self._full_pose(self.canonical_pose()[None], zero)
        vertices, keypoints = self._surface(shape, full, zero)
        return CanonicalBody(vertices[0], keypoints[0])

    # -- priors ------------------------------------------------------------------------------
    def pose_prior(self, pose: torch.Tensor) -> torch.Tensor:
        """Scalar for (N, 21, 3) poses: per frame, the summed squared excess of the axis-angle
        components beyond the approximate box limits, plus ``POSE_L2_WEIGHT`` times the
        squared distance from :meth:`neutral_pose`; averaged over frames (0 at neutral)."""
        excess = torch.relu(self._lo - pose) + torch.relu(pose - self._hi)
        l2 = ((pose - self.neutral_pose()) ** 2).sum((-1, -2))
        return ((excess**2).sum((-1, -2)) + POSE_L2_WEIGHT * l2).mean()

    def shape_prior(self, shape: torch.Tensor) -> torch.Tensor:
        """Scalar: the mean of the squared betas (S,) (the mean shape is betas = 0)."""
        return (shape**2).mean()

    def initial_shape(self) -> torch.Tensor:
        """(S,) zeros: SMPL-X's mean shape."""
        return torch.zeros(self.shape_size)

    def shape_summary(self, shape: torch.Tensor) -> dict[str, Any]:
        """``{"betas": [S floats]}``."""
        return {"betas": [float(b) for b in shape.detach().reshape(-1)]}

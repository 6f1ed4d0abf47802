"""A data set's canonical frame and pose, and the maps between it and the pipeline's.

The pipeline's canonical frame is the body model's: metres, Z up, the person facing −Y with
its left side at +X, the soles of the canonical (star) pose at z = 0. A data set states its
own in ``data.frame`` (MVP-Human's: Y up, facing +Z, origin at the pelvis, metres, a
"da-pose"), and may ship a rotation per scan (MVP-Human's ``R0.txt``).

:class:`DatasetFrame` holds the stated axes, unit, origin and pose; :func:`stated_pose` turns
a pose name and its angles into the body model's pose; :class:`Similarity` is the map
``x ↦ scale · R x + t``; :func:`read_rotation` reads and checks a rotation file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError
from pipeline.synthesize.poses import CANONICAL_POSE, Pose, make_pose

AXES = {"x": 0, "y": 1, "z": 2}
HEIGHT_M = (0.4, 3.0)
"""A scan's height outside this range (metres, by the stated unit) names data.frame.unit_m."""
# Each named pose: (upper arms' angle below horizontal, each leg's angle from vertical),
# degrees. "canonical" is the body model's own star pose (pipeline/synthesize/poses.py).
POSES: Mapping[str, tuple[float, float] | None] = {
    "canonical": None,
    "t": (0.0, 5.0),
    "a": (45.0, 5.0),
    "da": (0.0, 25.0),
}
# Anny's reference pose (all angles zero): upper arms 48° below horizontal, each leg 5°
# from vertical; its elbows straighten at -38° (pipeline/synthesize/poses.py).
_ARM_REFERENCE_DEG = 48.0
_LEG_REFERENCE_DEG = 5.0
_ELBOW_STRAIGHT_DEG = -38.0


def stated_pose(name: str, arm_deg: float | None = None, leg_deg: float | None = None) -> Pose:
    """The body model's pose for a data set's canonical pose.

    Args:
        name: ``canonical`` (the pipeline's own star pose), ``t``, ``a`` or ``da`` (SMPL's
            "da-pose": a T-pose with each leg turned 25° outwards).
        arm_deg: the upper arms' angle below horizontal, replacing the name's.
        leg_deg: each leg's angle from vertical, replacing the name's.

    Raises:
        PipelineError: an unknown name, or angles given for ``canonical``.
    """
    if name not in POSES:
        raise PipelineError(f"data.frame.pose.name {name!r}: unknown; use one of "
                            f"{', '.join(POSES)}")
    default = POSES[name]
    if default is None:
        if arm_deg is not None or leg_deg is not None:
            raise PipelineError("data.frame.pose: arm_deg and leg_deg apply to t, a and da, "
                                "not to the pipeline's canonical pose")
        return CANONICAL_POSE
    arm = default[0] if arm_deg is None else float(arm_deg)
    leg = default[1] if leg_deg is None else float(leg_deg)
    angles = {"upperarm01": (0.0, arm - _ARM_REFERENCE_DEG, 0.0),
              "lowerarm01": (0.0, 0.0, _ELBOW_STRAIGHT_DEG),
              "upperleg01": (0.0, _LEG_REFERENCE_DEG - leg, 0.0)}
    return make_pose(f"{name}(arms {arm:g}, legs {leg:g})",
                     {f"{bone}.{side}": a for bone, a in angles.items() for side in "LR"})


def axis_vector(name: str, key: str = "data.frame") -> np.ndarray:
    """The unit vector of ``x``, ``y``, ``z`` or their negatives (``-y``)."""
    sign = -1.0 if name.startswith("-") else 1.0
    axis = name.lstrip("+-").lower()
    if axis not in AXES:
        raise PipelineError(f"{key}: unknown axis {name!r}; use x, y, z, -x, -y or -z")
    out = np.zeros(3)
    out[AXES[axis]] = sign
    return out


@dataclass(frozen=True)
class DatasetFrame:
    """A data set's canonical frame (``data.frame``).

    up: the axis pointing up; forward: the axis the person faces; unit_m: metres per data
    set unit (0.01 for centimetres); origin: ``feet`` (the soles at 0 along ``up``, the
    pelvis on the up axis: the pipeline's) or ``pelvis``; pose: the canonical scan's pose.
    """

    up: str = "z"
    forward: str = "-y"
    unit_m: float = 1.0
    origin: str = "feet"
    pose: str = "canonical"
    arm_deg: float | None = None
    leg_deg: float | None = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> DatasetFrame:
        """From ``data.frame`` (validated: every key present)."""
        pose = section["pose"]
        frame = cls(up=section["up"], forward=section["forward"], unit_m=section["unit_m"],
                    origin=section["origin"], pose=pose["name"], arm_deg=pose["arm_deg"],
                    leg_deg=pose["leg_deg"])
        frame.axes()
        frame.body_pose()
        return frame

    def axes(self) -> np.ndarray:
        """``(3, 3)`` rotation taking the pipeline's axes to the data set's: its columns are
        where the pipeline's x (the person's left), y (behind) and z (up) point.

        Raises:
            PipelineError: up and forward on one axis.
        """
        up = axis_vector(self.up, "data.frame.up")
        forward = axis_vector(self.forward, "data.frame.forward")
        if abs(float(up @ forward)) > 0.5:
            raise PipelineError(f"data.frame: up {self.up!r} and forward {self.forward!r} lie "
                                "on the same axis")
        behind = -forward
        left = np.cross(behind, up)
        return np.stack([left, behind, up], axis=1)

    def body_pose(self) -> Pose:
        """The body model's pose of the data set's canonical scan."""
        return stated_pose(self.pose, self.arm_deg, self.leg_deg)

    @property
    def is_pipeline(self) -> bool:
        """Whether this is the pipeline's own frame and pose (no map needed)."""
        return (np.allclose(self.axes(), np.eye(3)) and self.unit_m == 1.0
                and self.origin == "feet" and self.pose == "canonical")


@dataclass(frozen=True)
class Similarity:
    """``x ↦ scale · rotation @ x + translation``."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3)`` points mapped forward."""
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation

    def invert(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3)`` points mapped back."""
        return (np.asarray(points) - self.translation) @ self.rotation / self.scale

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {"scale": float(self.scale), "rotation": np.asarray(self.rotation).tolist(),
                "translation": np.asarray(self.translation).tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Similarity:
        """The inverse of :meth:`as_dict`."""
        return cls(float(data["scale"]), np.asarray(data["rotation"], dtype=np.float64),
                   np.asarray(data["translation"], dtype=np.float64))


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """The angle of the rotation ``a @ b.T`` (degrees): how far apart two rotations are."""
    cos = (np.trace(np.asarray(a) @ np.asarray(b).T) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def read_rotation(path: str | Path) -> np.ndarray:
    """A scan's rotation file: a 3×3 rotation, or a 4×4 whose top-left 3×3 is one (and
    whose translation is then ignored, as the data sets that ship them do), as text.

    Raises:
        PipelineError: naming the file when it is missing, not numbers, of another shape,
            or not a rotation (not orthonormal, or a reflection).
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"rotation file {path} is missing (data.layout.scan_rotation)")
    try:
        matrix = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise PipelineError(f"rotation file {path}: not a matrix of numbers ({exc})") from exc
    if matrix.shape not in ((3, 3), (4, 4)):
        raise PipelineError(f"rotation file {path}: a {matrix.shape[0]}×{matrix.shape[1]} "
                            "matrix; expected 3×3 or 4×4")
    rotation = matrix[:3, :3]
    if (not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4)
            or np.linalg.det(rotation) < 0):
        raise PipelineError(f"rotation file {path}: its 3×3 part is not a rotation "
                            f"(R Rᵀ ≠ I or det {np.linalg.det(rotation):.3f} < 0)")
    return rotation


def check_up_axis(points: np.ndarray, frame: DatasetFrame, name: str) -> None:
    """Refuse a scan whose height does not lie along the stated up axis (a person standing
    in any canonical pose is taller than wide or deep), or whose height in the stated unit
    is no person's.

    Raises:
        PipelineError: naming the scan, the setting (``data.frame.up`` and the axis the
            scan's height lies along, or ``data.frame.unit_m``) and the figures.
    """
    extent = np.ptp(np.asarray(points), axis=0)
    longest = int(np.argmax(extent))
    stated = AXES[frame.up.lstrip("+-").lower()]
    height_m = float(extent[stated]) * frame.unit_m
    if longest == stated and not HEIGHT_M[0] <= height_m <= HEIGHT_M[1]:
        raise PipelineError(
            f"scan {name}: {extent[stated]:.4g} units high along {frame.up}, "
            f"{height_m:.3g} m with data.frame.unit_m {frame.unit_m:g}: no person is; set "
            "data.frame.unit_m to the metres per unit of the data set's scans (0.01 for "
            "centimetres, 0.001 for millimetres)")
    if longest != stated and extent[longest] > 1.1 * extent[stated]:
        axis = "xyz"[longest]
        raise PipelineError(
            f"scan {name}: data.frame.up is {frame.up!r}, but the scan's height lies along "
            f"{axis} (extent {extent[longest]:.3g} against {extent[stated]:.3g} along "
            f"{frame.up.lstrip('+-')}); set data.frame.up to '{axis}' or '-{axis}', or check "
            "data.layout.scan_rotation")

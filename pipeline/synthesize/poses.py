"""Pose library for the Anny body model (``anny`` rig, 104 bones).

Convention (read this before adding a pose)
-------------------------------------------
A :class:`Pose` gives, for a few Anny bones, three angles ``(rx, ry, rk)`` in DEGREES.
The bone's rotation, applied in Anny's ``local-ref`` parameterisation (a rotation about the
bone's head, in its parent's frame with world-aligned axes at Anny's reference pose, as in SMPL),
is the composition, applied right to left::

    R = Rx(rx) @ Ry(ry) @ Rk(rk)

* ``Rk`` turns about the bone's *principal axis* k (:data:`PRINCIPAL_AXES`, world Z unless
  listed): the twist axis along the bone for upper arms and forearm twist bones, the elbow
  HINGE for ``lowerarm01`` (so ``rk`` is elbow flexion, positive bends the forearm forward/up).
* ``Ry`` then turns about world Y (the axis pointing from the body's front to its back), in the
  frontal plane: for the LEFT arm/leg, negative ``ry`` raises the limb sideways (abduction).
* ``Rx`` last, about world X (the body's left): positive ``rx`` swings a hanging limb
  BACKWARDS (hip/shoulder extension), bends a knee, bends the spine forward, points toes down.

World: metres, Z up, the body faces -Y and its left side is +X (Anny's native frame).
The pose is relative to Anny's reference pose: arms ~48 degrees below horizontal with elbows
bent ~42 degrees forward, legs ~5 degrees apart (identity rotations). So elbow ``rk = -38``
straightens the arm, upper-arm ``ry = -48`` gives a T-pose and ``ry = +42`` lets the arm hang
vertically (then ``rx = -90`` points it forward). ``root`` turns the whole body about the
pelvis (``bend_forward`` tilts it and counter-rotates the hips to keep the legs vertical).

Right-side bones (``*.R``) are given in MIRRORED form: their angles mean the mirror image
(through the YZ plane) of the same angles on the ``.L`` bone, so a left/right-symmetric pose
has identical triples on both sides and both sides share one limit table
(:data:`JOINT_LIMITS`, keyed by the ``.L``/centre names).

Interpolation is a per-angle linear blend (the limits are boxes, so blends stay within them).
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Angles = tuple[float, float, float]
_CONVENTION = ("anny local-ref; R = Rx(rx) Ry(ry) Rk(rk), degrees, k = principal axis; "
               ".R bones mirrored (see pipeline/synthesize/poses.py)")

# Principal axes (unit vectors, world coordinates at Anny's reference pose, LEFT side), measured
# on the default phenotype: upper arm (shoulder -> elbow), elbow hinge (upper arm x forearm),
# forearm (elbow -> wrist), hand (wrist -> middle knuckle). Other bones: world Z.
_ARM = (0.669, -0.020, -0.743)
PRINCIPAL_AXES: Mapping[str, tuple[float, float, float]] = types.MappingProxyType({
    "upperarm01.L": _ARM,
    "upperarm02.L": _ARM,
    "lowerarm01.L": (-0.743, -0.047, -0.667),
    "lowerarm02.L": (0.511, -0.684, -0.521),
    "wrist.L": (0.422, -0.754, -0.503),
})

_LIMB = {
    # bone (.L or centre): ((rx_min, rx_max), (ry_min, ry_max), (rk_min, rk_max)) in degrees
    "root": ((-10.0, 80.0), (-25.0, 25.0), (-45.0, 45.0)),
    "spine05": ((-15.0, 30.0), (-15.0, 15.0), (-20.0, 20.0)),
    "spine04": ((-15.0, 30.0), (-15.0, 15.0), (-20.0, 20.0)),
    "spine03": ((-15.0, 30.0), (-15.0, 15.0), (-20.0, 20.0)),
    "spine02": ((-15.0, 30.0), (-15.0, 15.0), (-20.0, 20.0)),
    "spine01": ((-15.0, 30.0), (-15.0, 15.0), (-20.0, 20.0)),
    "neck01": ((-25.0, 35.0), (-20.0, 20.0), (-30.0, 30.0)),
    "neck02": ((-20.0, 25.0), (-15.0, 15.0), (-25.0, 25.0)),
    "neck03": ((-20.0, 25.0), (-15.0, 15.0), (-25.0, 25.0)),
    "head": ((-30.0, 30.0), (-20.0, 20.0), (-40.0, 40.0)),
    "clavicle.L": ((-15.0, 15.0), (-30.0, 10.0), (-20.0, 20.0)),
    "shoulder01.L": ((-20.0, 20.0), (-30.0, 10.0), (-20.0, 20.0)),
    "upperarm01.L": ((-150.0, 60.0), (-140.0, 45.0), (-95.0, 95.0)),
    "upperarm02.L": ((-5.0, 5.0), (-5.0, 5.0), (-60.0, 60.0)),
    "lowerarm01.L": ((-8.0, 8.0), (-8.0, 8.0), (-42.0, 105.0)),
    "lowerarm02.L": ((-5.0, 5.0), (-5.0, 5.0), (-80.0, 80.0)),
    "wrist.L": ((-60.0, 60.0), (-30.0, 30.0), (-30.0, 30.0)),
    "upperleg01.L": ((-125.0, 35.0), (-45.0, 20.0), (-40.0, 40.0)),
    "upperleg02.L": ((-5.0, 5.0), (-5.0, 5.0), (-30.0, 30.0)),
    "lowerleg01.L": ((0.0, 145.0), (-6.0, 6.0), (-20.0, 20.0)),
    "lowerleg02.L": ((-5.0, 5.0), (-5.0, 5.0), (-25.0, 25.0)),
    "foot.L": ((-35.0, 50.0), (-20.0, 20.0), (-25.0, 25.0)),
}
JOINT_LIMITS: Mapping[str, tuple[tuple[float, float], ...]] = types.MappingProxyType(_LIMB)


def _limit_key(bone: str) -> str:
    return bone[:-2] + ".L" if bone.endswith(".R") else bone


def poseable_bones() -> tuple[str, ...]:
    """All bone names a :class:`Pose` may rotate (the limit table, both sides), sorted."""
    names = set()
    for key in JOINT_LIMITS:
        names.add(key)
        if key.endswith(".L"):
            names.add(key[:-2] + ".R")
    return tuple(sorted(names))


@dataclass(frozen=True)
class Pose:
    """A named pose: ``rotations`` is a sorted tuple of ``(bone, (rx, ry, rk))``, degrees.

    Bones not listed keep Anny's reference orientation. See the module docstring for the
    angle convention. Build with :func:`make_pose` to validate and sort.
    """

    name: str
    rotations: tuple[tuple[str, Angles], ...]

    def __post_init__(self) -> None:
        allowed = set(poseable_bones())
        for bone, angles in self.rotations:
            if bone not in allowed:
                raise ValueError(f"pose {self.name!r}: bone {bone!r} is not poseable; "
                                 f"allowed: {sorted(allowed)}")
            if len(angles) != 3 or not all(math.isfinite(a) for a in angles):
                raise ValueError(f"pose {self.name!r}: bad angles {angles!r} for {bone!r}")

    def as_dict(self) -> dict[str, Angles]:
        return dict(self.rotations)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ``{"name", "convention", "rotations_deg": {bone: [rx, ry, rk]}}``."""
        return {"name": self.name, "convention": _CONVENTION,
                "rotations_deg": {bone: list(angles) for bone, angles in self.rotations}}

    def angles(self, bone: str) -> Angles:
        """The (rx, ry, rk) of ``bone``; zeros when the pose does not rotate it."""
        return self.as_dict().get(bone, (0.0, 0.0, 0.0))


def make_pose(name: str, rotations: Mapping[str, tuple[float, float, float]]) -> Pose:
    """A :class:`Pose` from a ``{bone: (rx, ry, rk)}`` mapping (degrees); zero triples dropped."""
    items = tuple(sorted((bone, tuple(float(a) for a in angles))
                         for bone, angles in rotations.items()
                         if any(float(a) != 0.0 for a in angles)))
    return Pose(name=name, rotations=items)  # type: ignore[arg-type]


def within_limits(pose: Pose, tolerance: float = 1e-6) -> bool:
    """True when every angle of ``pose`` lies within :data:`JOINT_LIMITS` (degrees)."""
    for bone, angles in pose.rotations:
        for value, (low, high) in zip(angles, JOINT_LIMITS[_limit_key(bone)], strict=True):
            if not (low - tolerance <= value <= high + tolerance):
                return False
    return True


def _axis_rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """(3, 3) rotation by ``degrees`` about unit ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    t = math.radians(degrees)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + math.sin(t) * k + (1.0 - math.cos(t)) * (k @ k)


_MIRROR = np.diag([-1.0, 1.0, 1.0])


def bone_rotation(bone: str, angles: Angles) -> np.ndarray:
    """(3, 3) world-aligned rotation of ``bone`` for ``angles`` = (rx, ry, rk) degrees."""
    key = _limit_key(bone)
    axis = np.asarray(PRINCIPAL_AXES.get(key, (0.0, 0.0, 1.0)))
    rx, ry, rk = angles
    rotation = (_axis_rotation(np.array([1.0, 0.0, 0.0]), rx)
                @ _axis_rotation(np.array([0.0, 1.0, 0.0]), ry) @ _axis_rotation(axis, rk))
    if bone.endswith(".R"):
        rotation = _MIRROR @ rotation @ _MIRROR
    return rotation


def pose_rotations(pose: Pose) -> dict[str, np.ndarray]:
    """``{bone: (3, 3) float64}`` world-aligned delta rotations (Anny ``local-ref``)."""
    return {bone: bone_rotation(bone, angles) for bone, angles in pose.rotations}


# ----------------------------------------------------------------------------- library
def _sym(**bones: Angles) -> dict[str, Angles]:
    """The same (mirrored) angles on both sides for ``name_L=...`` keyword bones."""
    out: dict[str, Angles] = {}
    for key, angles in bones.items():
        base = key[:-2] if key.endswith(("_L", "_R")) else key
        out[base + ".L"] = angles
        out[base + ".R"] = angles
    return out


def _side(side: str, **bones: Angles) -> dict[str, Angles]:
    return {key + "." + side: angles for key, angles in bones.items()}


# Arms hanging relaxed: ~10 degrees from vertical, elbows slightly bent.
_RELAXED_ARMS = _sym(upperarm01_L=(0.0, 30.0, 0.0), lowerarm01_L=(0.0, 0.0, -22.0))

# Canonical star pose (default phenotype): upper arms 40 degrees below horizontal, elbows
# straightened to ~4 degrees of flexion, each leg 12 degrees from vertical.
_CANONICAL = _sym(upperarm01_L=(0.0, -8.0, 0.0), lowerarm01_L=(0.0, 0.0, -38.0),
                  upperleg01_L=(0.0, -7.0, 0.0))


def _library() -> dict[str, Pose]:
    lib: dict[str, dict[str, Angles]] = {}
    lib["canonical"] = _CANONICAL
    lib["a_pose"] = _sym(upperarm01_L=(0.0, -3.0, 0.0), lowerarm01_L=(0.0, 0.0, -40.0))
    lib["t_pose"] = _sym(upperarm01_L=(0.0, -48.0, 0.0), lowerarm01_L=(0.0, 0.0, -40.0),
                         upperleg01_L=(0.0, -3.0, 0.0))
    lib["stand_relaxed"] = {**_RELAXED_ARMS, **_sym(upperleg01_L=(0.0, 2.0, 5.0))}
    lib["arms_raised"] = {
        **_sym(clavicle_L=(0.0, -15.0, 0.0), upperarm01_L=(0.0, -125.0, 0.0),
               lowerarm01_L=(0.0, 0.0, -35.0), upperleg01_L=(0.0, -3.0, 0.0)),
        "neck01": (-10.0, 0.0, 0.0)}
    lib["arms_forward"] = _sym(upperarm01_L=(-85.0, 38.0, -20.0),
                               lowerarm01_L=(0.0, 0.0, -35.0))
    lib["akimbo"] = _sym(upperarm01_L=(0.0, -5.0, 85.0), lowerarm01_L=(0.0, 0.0, 35.0),
                         upperleg01_L=(0.0, -4.0, 0.0))
    walk = {**_side("L", upperleg01=(-28.0, 0.0, 0.0), lowerleg01=(12.0, 0.0, 0.0),
                    foot=(-10.0, 0.0, 0.0), upperarm01=(25.0, 32.0, 0.0),
                    lowerarm01=(0.0, 0.0, -25.0)),
            **_side("R", upperleg01=(18.0, 0.0, 0.0), lowerleg01=(25.0, 0.0, 0.0),
                    foot=(10.0, 0.0, 0.0), upperarm01=(-25.0, 32.0, 0.0),
                    lowerarm01=(0.0, 0.0, 0.0)),
            "spine03": (3.0, 0.0, -4.0)}
    lib["walk_left"] = walk
    lib["walk_right"] = mirror_rotations(walk)
    lib["lunge"] = {**_side("L", upperleg01=(-85.0, -8.0, 0.0), lowerleg01=(88.0, 0.0, 0.0),
                            foot=(-5.0, 0.0, 0.0)),
                    **_side("R", upperleg01=(30.0, -5.0, 0.0), lowerleg01=(75.0, 0.0, 0.0),
                            foot=(-30.0, 0.0, 0.0)),
                    **_sym(upperarm01_L=(0.0, 30.0, 0.0), lowerarm01_L=(0.0, 0.0, -20.0)),
                    "spine04": (5.0, 0.0, 0.0)}
    lib["squat"] = {**_sym(upperleg01_L=(-105.0, -15.0, -10.0), lowerleg01_L=(120.0, 0.0, 0.0),
                           foot=(-20.0, 0.0, 0.0), upperarm01_L=(-80.0, 38.0, -20.0),
                           lowerarm01_L=(0.0, 0.0, -30.0)),
                    "spine04": (15.0, 0.0, 0.0), "spine02": (10.0, 0.0, 0.0),
                    "neck01": (-15.0, 0.0, 0.0)}
    lib["bend_forward"] = {"root": (55.0, 0.0, 0.0), "spine04": (10.0, 0.0, 0.0),
                           "spine02": (10.0, 0.0, 0.0), "neck01": (-20.0, 0.0, 0.0),
                           **_sym(upperleg01_L=(-55.0, -4.0, 0.0), upperarm01_L=(-20.0, 35.0, 0.0),
                                  lowerarm01_L=(0.0, 0.0, -30.0))}
    lib["twist"] = {"spine05": (0.0, 0.0, 12.0), "spine04": (0.0, 0.0, 12.0),
                    "spine03": (0.0, 0.0, 12.0), "spine02": (0.0, 0.0, 10.0),
                    "neck01": (0.0, 0.0, 15.0), "head": (0.0, 0.0, 15.0),
                    **_sym(upperarm01_L=(0.0, 20.0, 0.0), lowerarm01_L=(0.0, 0.0, 20.0),
                           upperleg01_L=(0.0, -3.0, 0.0))}
    lib["wave_right"] = {**_side("R", upperarm01=(-10.0, -60.0, -90.0),
                                 lowerarm01=(0.0, 0.0, 70.0), clavicle=(0.0, -10.0, 0.0)),
                         **_side("L", upperarm01=(0.0, 30.0, 0.0), lowerarm01=(0.0, 0.0, -20.0)),
                         "head": (0.0, 0.0, -10.0)}
    lib["point_left"] = {**_side("L", upperarm01=(-90.0, -3.0, 0.0), lowerarm01=(0.0, 0.0, -40.0)),
                         **_side("R", upperarm01=(0.0, 30.0, 0.0), lowerarm01=(0.0, 0.0, -20.0)),
                         "neck01": (0.0, 0.0, 15.0), "head": (0.0, 0.0, 10.0)}
    lib["knee_raise"] = {**_side("L", upperleg01=(-90.0, 0.0, 0.0), lowerleg01=(90.0, 0.0, 0.0),
                                 foot=(15.0, 0.0, 0.0)),
                         **_sym(upperarm01_L=(0.0, -15.0, 0.0), lowerarm01_L=(0.0, 0.0, -30.0)),
                         "spine03": (-3.0, 0.0, 0.0)}
    lib["side_stretch"] = {"spine04": (0.0, -10.0, 0.0), "spine03": (0.0, -10.0, 0.0),
                           "spine02": (0.0, -10.0, 0.0), "spine01": (0.0, -5.0, 0.0),
                           **_side("R", upperarm01=(0.0, -120.0, 0.0), lowerarm01=(0.0, 0.0, -20.0),
                                   clavicle=(0.0, -15.0, 0.0)),
                           **_side("L", upperarm01=(0.0, 30.0, 0.0), lowerarm01=(0.0, 0.0, 10.0)),
                           **_sym(upperleg01_L=(0.0, -8.0, 0.0))}
    lib["contrapposto"] = {**_side("L", upperleg01=(-8.0, 6.0, 0.0), lowerleg01=(15.0, 0.0, 0.0)),
                           **_side("R", upperleg01=(0.0, 3.0, 0.0)),
                           "root": (0.0, 5.0, 0.0), "spine03": (0.0, -4.0, 0.0),
                           "spine01": (0.0, -4.0, 0.0), "head": (0.0, 5.0, 0.0),
                           **_RELAXED_ARMS}
    lib["hands_forward_crouch"] = {
        **_sym(upperleg01_L=(-50.0, -8.0, 0.0), lowerleg01_L=(70.0, 0.0, 0.0),
               foot=(-20.0, 0.0, 0.0), upperarm01_L=(-60.0, 30.0, 0.0),
               lowerarm01_L=(0.0, 0.0, 30.0)),
        "spine04": (15.0, 0.0, 0.0), "spine02": (10.0, 0.0, 0.0)}
    return {name: make_pose(name, rotations) for name, rotations in sorted(lib.items())}


def mirror_rotations(rotations: Mapping[str, Angles]) -> dict[str, Angles]:
    """The left/right mirror image of a ``{bone: (rx, ry, rk)}`` mapping."""
    out: dict[str, Angles] = {}
    for bone, (rx, ry, rk) in rotations.items():
        if bone.endswith(".L"):
            out[bone[:-2] + ".R"] = (rx, ry, rk)
        elif bone.endswith(".R"):
            out[bone[:-2] + ".L"] = (rx, ry, rk)
        else:  # centre bones: mirrored rotation keeps rx, negates ry and rk (about Z)
            out[bone] = (rx, -ry, -rk)
    return out


POSE_LIBRARY: Mapping[str, Pose] = types.MappingProxyType(_library())
CANONICAL_POSE: Pose = POSE_LIBRARY["canonical"]

DA_POSE: Pose = make_pose("da_pose", _sym(upperarm01_L=(0.0, -48.0, 0.0),
                                          lowerarm01_L=(0.0, 0.0, -38.0),
                                          upperleg01_L=(0.0, -20.0, 0.0)))
"""SMPL's "da-pose" (the canonical pose of MVP-Human's scans) in Anny's convention.

Upper arms horizontal (T-pose: ``upperarm01 ry = -48``), elbows straight (``lowerarm01
rk = -38``), each leg turned outwards about the forward axis to 25 degrees from vertical
(``upperleg01 ry = -20``: Anny's reference legs are 5.2 degrees from vertical). Measured on
the default phenotype: arms 0.2 degrees below horizontal, elbows 3.7 degrees of flexion, legs
25.2 degrees from vertical. Kept OUT of :data:`POSE_LIBRARY` so that :func:`sample_actions`
never draws it; ``pipeline.synthesize.standin`` reposes canonical scans into it.
"""


def get_pose(name: str) -> Pose:
    """The library pose called ``name``; ValueError naming it when unknown."""
    if name not in POSE_LIBRARY:
        raise ValueError(f"unknown pose name {name!r}; known: {sorted(POSE_LIBRARY)}")
    return POSE_LIBRARY[name]


def jitter(pose: Pose, rng: np.random.Generator, sigma_deg: float = 4.0) -> Pose:
    """``pose`` with N(0, sigma) degrees added to each of its angles, clipped to the limits."""
    rotations: dict[str, Angles] = {}
    for bone, angles in pose.rotations:
        noise = rng.normal(0.0, sigma_deg, size=3)
        limits = JOINT_LIMITS[_limit_key(bone)]
        rotations[bone] = tuple(float(np.clip(a + n, lo, hi))  # type: ignore[assignment]
                                for a, n, (lo, hi) in zip(angles, noise, limits, strict=True))
    return make_pose(pose.name, rotations)


# Poses that spread or lift the legs far: a skirt or dress, skinned from the thighs, distorts
# in them (folds, hem underside, self-intersection), so skirted subjects avoid them if they can.
LEG_SPREADING_POSES = ("hands_forward_crouch", "knee_raise", "lunge", "squat")


def sample_actions(rng: np.random.Generator, n: int, sigma_deg: float = 4.0,
                   avoid: tuple[str, ...] = ()) -> list[Pose]:
    """``n`` distinct library poses (not the canonical one), each jittered within the limits.

    The poses keep their library names; ``n`` must be in [1, len(POSE_LIBRARY) - 1]. Poses in
    ``avoid`` are left out while enough others remain for ``n``.
    """
    names = sorted(name for name in POSE_LIBRARY if name != "canonical")
    if n <= len(names) - len(set(avoid) & set(names)):
        names = [name for name in names if name not in avoid]
    if not 1 <= n <= len(names):
        raise ValueError(f"n={n} poses requested; the library offers 1..{len(names)}")
    picks = rng.choice(len(names), size=n, replace=False)
    return [jitter(POSE_LIBRARY[names[int(i)]], rng, sigma_deg) for i in picks]


def interpolate(pose_a: Pose, pose_b: Pose, t: float) -> Pose:
    """Per-angle linear blend ``(1 - t) a + t b`` (missing bones count as zero), t in [0, 1]."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"interpolation parameter t={t} outside [0, 1]")
    a, b = pose_a.as_dict(), pose_b.as_dict()
    zero = (0.0, 0.0, 0.0)
    rotations = {bone: tuple((1.0 - t) * x + t * y
                             for x, y in zip(a.get(bone, zero), b.get(bone, zero), strict=True))
                 for bone in sorted(set(a) | set(b))}
    return make_pose(f"{pose_a.name}->{pose_b.name}@{t:.3f}", rotations)  # type: ignore[arg-type]


def clip(pose_a: Pose, pose_b: Pose, n_frames: int) -> list[Pose]:
    """``n_frames`` poses from ``pose_a`` to ``pose_b`` (both included), eased with smoothstep."""
    if n_frames < 2:
        raise ValueError(f"a clip needs n_frames >= 2, got {n_frames}")
    frames = []
    for i in range(n_frames):
        s = i / (n_frames - 1)
        frames.append(interpolate(pose_a, pose_b, s * s * (3.0 - 2.0 * s)))
    return frames

"""Procedural garments on the canonical Anny body -> one watertight clothed mesh, posable by LBS.

The clothed surface is the zero level of a field on a voxel grid (marching cubes):

* body part: ``d(x) - offset(s)``, ``d`` the unsigned distance from ``x`` to dense body surface
  samples and ``s`` the nearest one; ``offset = skin + garment thickness x coverage + folds``
  (``skin`` ~ one voxel keeps the naked body inside despite discretisation). Distances come from
  a Euclidean distance transform of the sampled voxels, refined with a KD-tree near the zero
  level; inside/outside from filling the enclosed part of ``{field < 0}`` (no ray casting).
* a skirt / dress: an elliptic cone from the waist to the hem, fitted to contain the hips and
  both legs, merged by a smooth union (it BRIDGES the legs: the topology differs from the body);
* hair: a thick cap on the scalp, plus a volume down the back ('long') or a bun ('bun').

Coverage comes from the body itself: each body vertex gets a part (torso / arm / hand / leg /
foot / head, by its dominant Anny bones) and its position along the arm (shoulder 0, elbow 1,
wrist 2) or the leg (hip 0, knee 1, ankle 2); sleeves and hems are thresholds on those.
A dress is labelled TOP above the waist and BOTTOM below it. Shoes cover the feet (SHOES).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage import measure

from pipeline.synthesize.body import BodyMesh, skin

SKIN, TOP, BOTTOM, HAIR, SHOES = 0, 1, 2, 3, 4
LABEL_NAMES = ("skin", "top", "bottom", "hair", "shoes")
SLEEVES = ("none", "short", "long")
BOTTOMS = ("trousers", "shorts", "skirt", "dress")
HAIRSTYLES = ("short", "long", "bun")
_TORSO, _ARM, _HAND, _LEG, _FOOT, _HEAD = range(6)
_PART_PREFIX = (("root", "pelvis", "spine", "clavicle", "shoulder"), ("upperarm", "lowerarm"),
                ("wrist", "finger", "metacarpal"), ("upperleg", "lowerleg"), ("foot", "toe"),
                ("neck", "head", "eye"))
_SKIRT_LEG = 0.8  # share of the thighs (vs the pelvis) in the skinning of a skirt's hem
_SLEEVE_END = {"none": -1.0, "short": 0.45, "long": 1.93}


@dataclass(frozen=True)
class Outfit:
    """A garment set. Thicknesses in metres (0.005-0.04); ``hem``: where shorts / skirt / dress
    end along the leg (hip 0, knee 1, ankle 2; trousers always reach 1.95); ``skirt_flare`` in
    [0, 1]; folds: low-frequency noise of ``fold_amplitude`` m at ``fold_frequency`` cycles/m."""

    sleeves: str = "short"
    bottom: str = "trousers"
    hair: str = "short"
    shoes: bool = True
    top_thickness: float = 0.012
    bottom_thickness: float = 0.015
    hair_thickness: float = 0.02
    shoe_thickness: float = 0.012
    hem: float = 0.6
    skirt_flare: float = 0.5
    fold_amplitude: float = 0.004
    fold_frequency: float = 6.0
    fold_seed: int = 0

    def __post_init__(self) -> None:
        for name, options in (("sleeves", SLEEVES), ("bottom", BOTTOMS), ("hair", HAIRSTYLES)):
            if getattr(self, name) not in options:
                raise ValueError(f"outfit {name}={getattr(self, name)!r}; options: {options}")
        for name in ("top_thickness", "bottom_thickness", "hair_thickness", "shoe_thickness"):
            if not 0.005 <= getattr(self, name) <= 0.04:
                raise ValueError(f"outfit {name}={getattr(self, name)!r} outside [0.005, 0.04] m")
        checks = {"hem": (0.2, 1.95), "skirt_flare": (0.0, 1.0), "fold_amplitude": (0.0, 0.01),
                  "fold_frequency": (0.5, 30.0)}
        for name, (low, high) in checks.items():
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"outfit {name}={getattr(self, name)!r} outside [{low}, {high}]")


def sample_outfit(rng: np.random.Generator, skirt_fraction: float = 0.4,
                  bottom: str | None = None,
                  top_thickness: tuple[float, float] = (0.006, 0.02),
                  bottom_thickness: tuple[float, float] = (0.008, 0.025)) -> Outfit:
    """A random outfit: always a top, a bottom and hair; a ``skirt_fraction`` share of skirts
    or dresses (which bridge the legs), the rest trousers or shorts. ``bottom`` imposes the
    bottom garment (the draws are the same either way, so the rest of the outfit does not
    change); the thicknesses are uniform in their ranges (metres)."""
    if not 0.0 <= skirt_fraction <= 1.0:
        raise ValueError(f"skirt_fraction={skirt_fraction} outside [0, 1]")
    if bottom is not None and bottom not in BOTTOMS:
        raise ValueError(f"outfit bottom={bottom!r}; options: {BOTTOMS}")
    f = float(skirt_fraction)
    drawn = str(rng.choice(BOTTOMS, p=[0.58 * (1 - f), 0.42 * (1 - f), 0.55 * f, 0.45 * f]))
    bottom = drawn if bottom is None else bottom
    hem = {"trousers": 1.95, "shorts": rng.uniform(0.3, 0.7), "skirt": rng.uniform(0.55, 1.3),
           "dress": rng.uniform(0.7, 1.5)}[bottom]
    top_t, bottom_t = rng.uniform(*top_thickness), rng.uniform(*bottom_thickness)
    return Outfit(sleeves=str(rng.choice(SLEEVES, p=[0.25, 0.4, 0.35])), bottom=bottom,
                  hair=str(rng.choice(HAIRSTYLES)), shoes=bool(rng.random() < 0.8),
                  top_thickness=float(top_t), bottom_thickness=float(bottom_t),
                  hair_thickness=float(rng.uniform(0.012, 0.035)),
                  shoe_thickness=float(rng.uniform(0.008, 0.02)), hem=float(hem),
                  skirt_flare=float(rng.uniform(0.0, 1.0)),
                  fold_amplitude=float(rng.uniform(0.1, 0.4) * min(top_t, bottom_t)),
                  fold_frequency=float(rng.uniform(3.0, 10.0)),
                  fold_seed=int(rng.integers(0, 2**31 - 1)))


@dataclass(frozen=True)
class ClothedMesh:
    """The clothed canonical mesh: vertices (N, 3) float64, faces (M, 3) int64 (watertight,
    outward), labels (N,) uint8 (SKIN/TOP/BOTTOM/HAIR/SHOES), skinning_weights (N, B) float32
    (rows sum to 1, the body's bones), nearest_body_vertex (N,) int64, thickness_mean: mean
    distance (m) to the naked body of the TOP/BOTTOM/SHOES vertices on the body-following layer
    (the skirt cone is left out: its distance to the body is the gap between the legs)."""

    vertices: np.ndarray
    faces: np.ndarray
    labels: np.ndarray
    skinning_weights: np.ndarray
    nearest_body_vertex: np.ndarray
    thickness_mean: float


def skin_vertices(vertices_canonical: np.ndarray, skinning_weights: np.ndarray,
                  bone_transforms: np.ndarray) -> np.ndarray:
    """LBS: (N, 3) canonical points, (N, B) weights, (B, 4, 4) canonical->posed -> (N, 3)."""
    return skin(np.asarray(vertices_canonical, dtype=np.float64), skinning_weights,
                bone_transforms)


def _smoothstep(low: float, high: float, x: np.ndarray) -> np.ndarray:
    s = np.clip((x - low) / (high - low), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def _bone_part(name: str) -> int:
    return next(i for i, prefixes in enumerate(_PART_PREFIX) if name.startswith(prefixes))


def _chain_param(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Position of (N, 3) points along the polyline a-b-c: 0 at a, 1 at b, 2 at c."""
    out, dist = [], []
    for start, end, base in ((a, b, 0.0), (b, c, 1.0)):
        seg = end - start
        t = np.clip((points - start) @ seg / (seg @ seg), 0.0, 1.0)
        out.append(base + t)
        dist.append(np.linalg.norm(points - (start + t[:, None] * seg), axis=1))
    return np.where(dist[0] <= dist[1], out[0], out[1])


@dataclass(frozen=True)
class _Frame:
    part: np.ndarray  # (V,) dominant body part
    cover: np.ndarray  # (V, 4) coverage of TOP, BOTTOM, HAIR, SHOES in [0, 1]
    z_waist: float
    z_hem: float
    head: dict[str, float]  # cy (mean y), eye_z, top, half_width, back (max y), shoulder_z


def _frame(body: BodyMesh, outfit: Outfit) -> _Frame:
    """Body parts, garment coverage per body vertex and landmark heights for ``outfit``."""
    v, names = body.vertices, body.bone_names
    joint = {name: body.joints[i] for i, name in enumerate(names)}
    bone_part = np.array([_bone_part(n) for n in names])
    group = np.zeros((len(v), 6))
    np.add.at(group.T, bone_part, body.skinning_weights.T.astype(np.float64))
    part = group.argmax(axis=1)
    left = v[:, 0] >= 0.0
    arm_t, leg_t = np.zeros(len(v)), np.zeros(len(v))
    for side, mask in (("L", left), ("R", ~left)):
        arm_t[mask] = _chain_param(v[mask], joint[f"upperarm01.{side}"],
                                   joint[f"lowerarm01.{side}"], joint[f"wrist.{side}"])
        leg_t[mask] = _chain_param(v[mask], joint[f"upperleg01.{side}"],
                                   joint[f"lowerleg01.{side}"], joint[f"foot.{side}"])
    z = v[:, 2]
    z_waist = float(joint["spine04"][2])
    leg_z = [np.mean([joint[f"{b}.{s}"][2] for s in "LR"]) for b in ("upperleg01",
                                                                      "lowerleg01", "foot")]
    z_hem = float(np.interp(outfit.hem, [0.0, 1.0, 2.0], leg_z))
    torso, arm, leg = part == _TORSO, part == _ARM, part == _LEG
    top = torso * _smoothstep(z_waist - 0.06, z_waist - 0.05, z)
    top = top + arm * (1.0 - _smoothstep(_SLEEVE_END[outfit.sleeves] - 0.02,
                                         _SLEEVE_END[outfit.sleeves] + 0.02, arm_t))
    hem = {"trousers": 1.95, "skirt": 0.12, "dress": 0.12}.get(outfit.bottom, outfit.hem)
    bottom = torso * (1.0 - _smoothstep(z_waist - 0.005, z_waist + 0.005, z))
    bottom = bottom + leg * (1.0 - _smoothstep(hem - 0.02, hem + 0.02, leg_t))
    shoes = (part == _FOOT) + leg * _smoothstep(1.9, 1.93, leg_t) if outfit.shoes else 0.0 * z
    eye_z = 0.5 * (body.keypoints[1, 2] + body.keypoints[2, 2])
    head_pts = v[part == _HEAD]
    y_rel, z_rel = v[:, 1] - head_pts[:, 1].mean(), z - eye_z
    low = -0.09 if outfit.hair == "long" else -0.05
    hairline = 0.045 + (low - 0.045) * _smoothstep(-0.04, 0.03, y_rel)
    hair = (part == _HEAD) * _smoothstep(hairline, hairline + 0.01, z_rel)
    head = {"cy": float(head_pts[:, 1].mean()), "eye_z": float(eye_z),
            "top": float(head_pts[:, 2].max()), "half_width": float(np.abs(head_pts[:, 0]).max()),
            "back": float(head_pts[:, 1].max()),
            "shoulder_z": float(0.5 * (body.keypoints[5, 2] + body.keypoints[6, 2]))}
    cover = np.clip(np.stack([top, bottom, hair, shoes], axis=1), 0.0, 1.0)
    return _Frame(part=part, cover=cover, z_waist=z_waist, z_hem=z_hem, head=head)


def _surface_samples(vertices: np.ndarray, faces: np.ndarray,
                     spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Barycentric-lattice samples, edge length / ``spacing`` per triangle edge.
    Returns points (S, 3), face index (S,), barycentrics (S, 3)."""
    tri = vertices[faces]
    edge = np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2).max(axis=1)
    levels = np.maximum(1, np.ceil(edge / spacing)).astype(int)
    points, face_ids, barys = [], [], []
    for k in np.unique(levels):
        i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
        keep = i + j <= k
        bary = np.stack([i[keep], j[keep], k - i[keep] - j[keep]], axis=1) / k
        sel = np.nonzero(levels == k)[0]
        points.append(np.einsum("kc,fcd->fkd", bary, tri[sel]).reshape(-1, 3))
        face_ids.append(np.repeat(sel, len(bary)))
        barys.append(np.tile(bary, (len(sel), 1)))
    return np.concatenate(points), np.concatenate(face_ids), np.concatenate(barys)


def _fold_noise(points: np.ndarray, outfit: Outfit) -> np.ndarray:
    """(N,) smooth noise in [-1, 1]: a sum of 6 plane waves of frequency ``fold_frequency``."""
    gen = np.random.default_rng(outfit.fold_seed)
    dirs = gen.normal(size=(6, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    phases = gen.uniform(0.0, 2.0 * math.pi, size=6)
    waves = np.sin(2.0 * math.pi * outfit.fold_frequency * (points @ dirs.T) + phases)
    return np.clip(waves.sum(axis=1) / math.sqrt(6.0) / 1.2, -1.0, 1.0)


def _skirt_profile(body: BodyMesh, frame: _Frame, outfit: Outfit,
                   skin_offset: float) -> np.ndarray:
    """(K, 4) rows (z, a, b, cy), z ascending: elliptic cross-sections of the skirt, a straight
    (flared) cone from just below the waist to the hem containing the hips and both legs."""
    v = body.vertices
    keep = np.isin(frame.part, (_TORSO, _LEG, _FOOT))
    z_top = frame.z_waist - 0.02
    zs = np.linspace(frame.z_hem, z_top, 12)
    slabs = [v[keep & (np.abs(v[:, 2] - z) < 0.5 * (zs[1] - zs[0]) + 0.01)] for z in zs]
    mid = [0.5 * (p[:, 1].min() + p[:, 1].max()) for p in slabs]
    cy = np.interp(zs, [zs[0], zs[-1]], [mid[0], mid[-1]])
    need = []
    for pts, c in zip(slabs, cy, strict=True):
        ax, by = np.abs(pts[:, 0]).max(), np.abs(pts[:, 1] - c).max()
        scale = np.sqrt((pts[:, 0] / ax) ** 2 + ((pts[:, 1] - c) / by) ** 2).max()
        need.append([scale * ax, scale * by])
    need = np.array(need) + skin_offset + outfit.bottom_thickness
    depth = (z_top - zs)[:, None]
    slope = np.max((need[:-1] - need[-1]) / depth[:-1], axis=0).clip(0.0)
    radii = need[-1] + depth * (slope + 0.25 * outfit.skirt_flare)
    return np.column_stack([zs, radii, cy])


def _skirt_field(points: np.ndarray, prof: np.ndarray) -> np.ndarray:
    z = points[:, 2]
    a, b, cy = (np.interp(z, prof[:, 0], prof[:, i]) for i in (1, 2, 3))
    rho = np.sqrt((points[:, 0] / a) ** 2 + ((points[:, 1] - cy) / b) ** 2)
    return np.maximum.reduce([(rho - 1.0) * np.minimum(a, b), z - prof[-1, 0], prof[0, 0] - z])


def _hair_field(points: np.ndarray, frame: _Frame, outfit: Outfit) -> np.ndarray:
    """(N,) field of the hair volume beyond the scalp cap ('long': down the back; 'bun')."""
    h = frame.head
    if outfit.hair == "bun":
        centre = np.array([0.0, h["back"] + 0.01, h["eye_z"] + 0.05])
        return np.linalg.norm(points - centre, axis=1) - 0.045
    if outfit.hair == "short":
        return np.full(len(points), np.inf)
    z0, z1 = h["shoulder_z"] - 0.08, h["eye_z"]
    t = np.clip((points[:, 2] - z0) / (z1 - z0), 0.0, 1.0)
    a = h["half_width"] * (0.85 + 0.25 * t)
    b = 0.035 + 0.03 * t
    cy = h["back"] - 0.02 - 0.02 * t
    rho = np.sqrt((points[:, 0] / a) ** 2 + ((points[:, 1] - cy) / b) ** 2)
    return np.maximum.reduce([(rho - 1.0) * b, points[:, 2] - z1, z0 - points[:, 2]])


def _hair_box(frame: _Frame, outfit: Outfit) -> tuple[np.ndarray, np.ndarray] | None:
    """Bounding box (lo (3,), hi (3,)) of the hair volume, None for short hair (cap only)."""
    if outfit.hair == "short":
        return None
    hd = frame.head
    half = hd["half_width"] * 1.2 + 0.02
    return (np.array([-half, hd["cy"] - 0.05, hd["shoulder_z"] - 0.12]),
            np.array([half, hd["back"] + 0.1, hd["top"] + 0.06]))


def _sub_grid(lo: np.ndarray, h: float, shape: tuple[int, ...], box_lo: np.ndarray,
              box_hi: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """Grid slices covering [box_lo, box_hi] and their points (P, 3), C order."""
    start = np.clip(np.floor((box_lo - lo) / h).astype(int), 0, shape)
    stop = np.clip(np.ceil((box_hi - lo) / h).astype(int) + 1, 0, shape)
    axes = [lo[i] + h * np.arange(start[i], stop[i]) for i in range(3)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return tuple(slice(a, b) for a, b in zip(start, stop, strict=True)), points


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.clip(k - np.abs(a - b), 0.0, None) / k
    return np.minimum(a, b) - h * h * k * 0.25


def build_clothed_canonical(body: BodyMesh, outfit: Outfit, voxel_size: float = 0.006,
                            skin_offset: float | None = None) -> ClothedMesh:
    """The clothed canonical surface of ``body`` (canonical pose) wearing ``outfit``.

    ``skin_offset`` (default: ``voxel_size``) inflates bare skin so the naked body stays inside.
    """
    if not 0.001 <= voxel_size <= 0.05:
        raise ValueError(f"voxel_size={voxel_size} outside [0.001, 0.05] m")
    h = float(voxel_size)
    skin_off = h if skin_offset is None else float(skin_offset)
    frame = _frame(body, outfit)
    pts, face_id, bary = _surface_samples(body.vertices, body.faces, min(0.5 * h, 0.004))
    cover = np.einsum("sk,skc->sc", bary, frame.cover[body.faces[face_id]])
    thick = np.array([outfit.top_thickness, outfit.bottom_thickness, outfit.hair_thickness,
                      outfit.shoe_thickness])
    garment = (cover * thick).max(axis=1)
    amount = cover.max(axis=1)
    label = np.where(amount >= 0.5, np.array([TOP, BOTTOM, HAIR, SHOES])[
        np.argmax(cover * np.array([2.0, 1.0, 4.0, 3.0]) * (cover >= 0.5), axis=1)], SKIN)
    skirt = outfit.bottom in ("skirt", "dress")
    prof = _skirt_profile(body, frame, outfit, skin_off) if skirt else None
    reach = skin_off + thick.max() + outfit.fold_amplitude + 3 * h
    lo, hi = body.vertices.min(axis=0) - reach, body.vertices.max(axis=0) + reach
    if prof is not None:
        lo[:2] = np.minimum(lo[:2], -prof[:, 1:3].max(axis=0) - 3 * h + [0.0, prof[:, 3].min()])
        hi[:2] = np.maximum(hi[:2], prof[:, 1:3].max(axis=0) + 3 * h + [0.0, prof[:, 3].max()])
    hair_box = _hair_box(frame, outfit)
    if hair_box is not None:
        lo, hi = np.minimum(lo, hair_box[0]), np.maximum(hi, hair_box[1])
    shape = tuple(np.ceil((hi - lo) / h).astype(int) + 1)
    cell = np.floor((pts - lo) / h + 0.5).astype(np.int64)
    flat = np.ravel_multi_index(cell.T, shape)
    cells, first = np.unique(flat, return_index=True)
    occupied = np.zeros(shape, dtype=bool)
    occupied.flat[cells] = True
    rep = np.zeros(shape, dtype=np.int64)
    rep.flat[cells] = first
    dist, near = ndimage.distance_transform_edt(~occupied, sampling=h, return_indices=True)
    offset = skin_off + garment
    field = dist - offset[rep[tuple(near)]]
    del near, dist, rep
    fold_w = outfit.fold_amplitude * amount
    busy = np.nonzero(np.abs(field.ravel()) < 1.5 * h + outfit.fold_amplitude)[0]
    xyz = lo + np.stack(np.unravel_index(busy, shape), axis=1) * h
    tree = cKDTree(pts)
    d, idx = tree.query(xyz, workers=2)
    folds = fold_w[idx] * _fold_noise(xyz, outfit)
    field.flat[busy] = d - skin_off - np.maximum(garment[idx] + folds, 0.0)
    if prof is not None:
        box = (np.array([-prof[:, 1].max(), (prof[:, 3] - prof[:, 2]).min(), prof[0, 0]]),
               np.array([prof[:, 1].max(), (prof[:, 3] + prof[:, 2]).max(), prof[-1, 0]]))
        sl, xyz = _sub_grid(lo, h, shape, box[0] - 3 * h, box[1] + 3 * h)
        field[sl] = _smooth_min(field[sl].ravel(), _skirt_field(xyz, prof),
                                0.03).reshape(field[sl].shape)
    if hair_box is not None:
        sl, xyz = _sub_grid(lo, h, shape, *hair_box)
        field[sl] = np.minimum(field[sl].ravel(),
                               _hair_field(xyz, frame, outfit)).reshape(field[sl].shape)
    solid = ndimage.binary_fill_holes(field < 0.0)
    field[solid & (field >= 0.0)] = -h
    field[field == 0.0] = 1e-9
    verts, faces, _, _ = measure.marching_cubes(field.astype(np.float32), 0.0, spacing=(h, h, h))
    mesh = trimesh.Trimesh(verts + lo, faces, process=True)
    parts = mesh.split(only_watertight=False)
    mesh = max(parts, key=lambda m: len(m.faces))
    if mesh.volume < 0:
        mesh.invert()
    return _finish(mesh, body, outfit, frame, (face_id, bary, label, offset), tree, prof)


def _finish(mesh: trimesh.Trimesh, body: BodyMesh, outfit: Outfit, frame: _Frame,
            samples: tuple[np.ndarray, ...], tree: cKDTree,
            prof: np.ndarray | None) -> ClothedMesh:
    """Labels, transferred skinning weights and nearest body vertices of the clothed mesh;
    ``samples`` = per body sample (face index, barycentrics, label, offset)."""
    face_id, bary, sample_label, offset = samples
    x = np.asarray(mesh.vertices, dtype=np.float64)
    d, idx = tree.query(x, workers=2)
    labels = sample_label[idx].astype(np.uint8)
    body_f = d - offset[idx]
    skirt_f = _skirt_field(x, prof) if prof is not None else np.full(len(x), np.inf)
    hair_f = _hair_field(x, frame, outfit)
    labels[skirt_f < body_f] = BOTTOM
    labels[(hair_f < body_f) & (hair_f < skirt_f)] = HAIR
    w_body = body.skinning_weights
    weights = np.zeros((len(x), w_body.shape[1]), dtype=np.float32)
    for start in range(0, len(x), 20000):
        s = idx[start:start + 20000]
        weights[start:start + 20000] = np.einsum("nk,nkb->nb", bary[s],
                                                 w_body[body.faces[face_id[s]]])
    names = list(body.bone_names)
    if prof is not None:
        z_top, z_hem = prof[-1, 0] + 0.02, prof[0, 0]
        sel = (labels == BOTTOM) & (x[:, 2] < z_top)
        beta = np.clip((z_top - x[sel, 2]) / (z_top - z_hem), 0.0, 1.0)[:, None]
        beta *= _smoothstep(0.0, 0.04, body_f[sel])[:, None]  # hugging the legs: follow them
        half = 1.5 * abs(body.joints[names.index("upperleg01.L"), 0])
        s_left = _smoothstep(-half, half, x[sel, 0])
        legs = np.zeros((int(sel.sum()), len(names)), dtype=np.float32)
        legs[:, names.index("upperleg01.L")] = _SKIRT_LEG * s_left
        legs[:, names.index("upperleg01.R")] = _SKIRT_LEG * (1.0 - s_left)
        legs[:, names.index("root")] = 1.0 - _SKIRT_LEG
        weights[sel] = (1.0 - beta) * weights[sel] + beta * legs
    hair = labels == HAIR
    alpha = _smoothstep(float(body.joints[names.index("neck01"), 2]), frame.head["eye_z"],
                        x[hair, 2])[:, None]
    head = np.zeros((int(hair.sum()), len(names)), dtype=np.float32)
    head[:, names.index("head")] = 1.0
    weights[hair] = alpha * head + (1.0 - alpha) * weights[hair]
    weights /= weights.sum(axis=1, keepdims=True)
    nearest = cKDTree(body.vertices).query(x, workers=2)[1].astype(np.int64)
    garment = np.isin(labels, (TOP, BOTTOM, SHOES)) & (body_f <= skirt_f)
    return ClothedMesh(vertices=x, faces=np.asarray(mesh.faces, dtype=np.int64), labels=labels,
                       skinning_weights=weights.astype(np.float32), nearest_body_vertex=nearest,
                       thickness_mean=float(d[garment].mean()) if garment.any() else 0.0)

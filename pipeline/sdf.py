"""Signed distance, inside/outside labels and SDF training samples for closed triangle meshes
(and, with ``closed=False``, for scans with holes that ``pipeline.scans`` found signable).

Sign convention of the project: the SDF is NEGATIVE INSIDE the surface, POSITIVE OUTSIDE and
zero on it, in the mesh's units (metres). ``occupancy`` is True inside, and for every point
``occupancy(...) == np.signbit(signed_distance(...))`` (a point exactly on an inside-labelled
surface gets ``-0.0``); away from the surface this is simply ``sdf < 0``.

Backend: libigl. The magnitude is the exact closest-point distance (``igl.AABB``, built once per
call); the sign comes from the generalised winding number (``igl.fast_winding_number``,
inside where w > 0.5), which stays right where a closed scan intersects itself (an arm through
the torso), unlike the pseudonormal test. libigl threads its loops; ``IGL_NUM_THREADS`` caps the
thread count (set it to the cores a SLURM job got).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import igl
import numpy as np
from scipy.spatial import cKDTree

from pipeline.errors import PipelineError
from pipeline.meshio import read_ply

DEFAULT_CHUNK = 200_000
"""Query points per libigl call: bounds the temporary arrays to ~100 bytes × chunk."""


def _as_mesh(vertices: np.ndarray, faces: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Float64 ``(V, 3)`` and int64 ``(F, 3)`` C-contiguous copies, or PipelineError."""
    v = np.ascontiguousarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise PipelineError(f"mesh {name}: vertices must be a non-empty (V, 3) array, "
                            f"got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or not np.issubdtype(f.dtype, np.integer):
        raise PipelineError(f"mesh {name}: faces must be a non-empty integer (F, 3) array, "
                            f"got {f.dtype} shape {f.shape}")
    if not np.isfinite(v).all():
        raise PipelineError(f"mesh {name}: vertices hold NaN or infinite coordinates")
    if f.min() < 0 or f.max() >= len(v):
        raise PipelineError(f"mesh {name}: face indices outside [0, {len(v) - 1}]")
    return v, np.ascontiguousarray(f, dtype=np.int64)


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    """Float64 ``(N, 3)`` C-contiguous copy of the query points, or PipelineError."""
    p = np.ascontiguousarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise PipelineError(f"query points for mesh {name} must be (N, 3), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise PipelineError(f"query points for mesh {name} hold NaN or infinite values")
    return p


def check_watertight(vertices: np.ndarray, faces: np.ndarray, name: str) -> None:
    """Refuse a mesh that is not a closed, consistently and outward oriented surface.

    Every undirected edge must be shared by exactly two faces that traverse it in opposite
    directions, no face may repeat a vertex, and the enclosed (signed) volume must be positive.
    An inside-out mesh (all faces flipped) is refused, not silently repaired. Several closed
    components (and self-intersections) are allowed.

    Args:
        vertices: ``(V, 3)`` positions.
        faces: ``(F, 3)`` vertex indices, counter-clockwise seen from outside.
        name: what to call the mesh in messages (its file).

    Raises:
        PipelineError: naming ``name`` and every problem found.
    """
    v, f = _as_mesh(vertices, faces, name)
    problems: list[str] = []
    degenerate = int(np.sum((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])))
    if degenerate:
        problems.append(f"{degenerate} faces repeat a vertex index")
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])  # (3F, 2)
    low, high = directed.min(axis=1), directed.max(axis=1)
    _, inverse, counts = np.unique(low * len(v) + high, return_inverse=True, return_counts=True)
    boundary, non_manifold = int(np.sum(counts == 1)), int(np.sum(counts > 2))
    if boundary:
        problems.append(f"{boundary} open boundary edges (holes: each edge must join 2 faces)")
    if non_manifold:
        problems.append(f"{non_manifold} non-manifold edges (shared by more than 2 faces)")
    # A consistently wound pair runs its shared edge once low→high (+1) and once high→low (−1).
    direction = np.where(directed[:, 0] < directed[:, 1], 1.0, -1.0)
    balance = np.bincount(inverse.ravel(), weights=direction, minlength=len(counts))
    flipped = int(np.sum((counts == 2) & (balance != 0)))
    if flipped:
        problems.append(f"inconsistent winding: {flipped} edges are traversed in the same "
                        "direction by both of their faces")
    if not problems:
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        volume = float(np.einsum("ij,ij->", a, np.cross(b, c))) / 6.0
        diagonal = float(np.linalg.norm(v.max(axis=0) - v.min(axis=0)))
        if abs(volume) <= 1e-9 * diagonal**3:
            problems.append(f"zero enclosed volume ({volume:.3g})")
        elif volume < 0:
            problems.append(f"inverted (inside-out) orientation: enclosed volume {volume:.3g} "
                            "is negative; flip the faces (faces[:, ::-1])")
    if problems:
        raise PipelineError(f"mesh {name} is not a closed oriented surface: "
                            + "; ".join(problems))


def _check(vertices: np.ndarray, faces: np.ndarray, name: str, closed: bool) -> None:
    """``check_watertight`` when ``closed``; else only the arrays' shapes and values."""
    if closed:
        check_watertight(vertices, faces, name)
    else:
        _as_mesh(vertices, faces, name)


def read_watertight(path: str | Path, hint: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``(V, 3)`` float64 vertices and ``(F, 3)`` int64 faces of a closed, outward-oriented
    truth mesh file; PipelineError naming the file when it is missing, unreadable or open
    (``hint``: what needs it, appended to the missing-file message)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"truth mesh {path} is missing{hint}")
    mesh = read_ply(path)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    check_watertight(vertices, faces, str(path))
    return vertices, faces


def _signed(v: np.ndarray, f: np.ndarray, p: np.ndarray, chunk: int,
            with_distance: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(inside (N,) bool, unsigned distance (N,) float64)``; distance is empty unless asked."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    inside = np.empty(len(p), dtype=bool)
    distance = np.empty(len(p) if with_distance else 0, dtype=np.float64)
    tree = None
    if with_distance:
        tree = igl.AABB()
        tree.init(v, f)
    for start in range(0, len(p), chunk):
        part = p[start:start + chunk]
        inside[start:start + chunk] = igl.fast_winding_number(v, f, part) > 0.5
        if tree is not None:
            sq = tree.squared_distance(v, f, part)[0]
            distance[start:start + chunk] = np.sqrt(np.maximum(sq, 0.0))
    return inside, distance


def _sdf(v: np.ndarray, f: np.ndarray, p: np.ndarray, chunk: int) -> np.ndarray:
    """``(N,)`` float32 SDF of checked float64/int64 arrays (see ``signed_distance``)."""
    inside, distance = _signed(v, f, p, chunk, with_distance=True)
    return np.where(inside, -distance, distance).astype(np.float32)


def signed_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, *,
                    name: str = "mesh", chunk: int = DEFAULT_CHUNK,
                    closed: bool = True) -> np.ndarray:
    """Signed distance from ``points`` to the closed mesh: negative inside, positive outside.

    Args:
        vertices: ``(V, 3)`` positions. faces: ``(F, 3)`` indices, outward (CCW) winding.
        points: ``(N, 3)`` query points.
        name: the mesh's name (file) for error messages.
        chunk: query points per libigl call (memory bound, not a result change).
        closed: refuse a mesh that is not watertight (``check_watertight``); False for a
            scan with holes that ``pipeline.scans.read_scan`` has found signable.

    Returns:
        ``(N,)`` float32 SDF (exact Euclidean distance to the surface, winding-number sign).

    Raises:
        PipelineError: the mesh is not watertight / oriented (see ``check_watertight``).
    """
    _check(vertices, faces, name, closed)
    v, f = _as_mesh(vertices, faces, name)
    return _sdf(v, f, _as_points(points, name), chunk)


def sdf_function(vertices: np.ndarray, faces: np.ndarray, *, name: str = "mesh",
                 chunk: int = DEFAULT_CHUNK, closed: bool = True
                 ) -> Callable[[np.ndarray], np.ndarray]:
    """``signed_distance`` with the mesh checked once: a function ``(N, 3) → (N,)`` float32
    for many calls on the same mesh (a grid's batches)."""
    _check(vertices, faces, name, closed)
    v, f = _as_mesh(vertices, faces, name)
    return lambda points: _sdf(v, f, _as_points(points, name), chunk)


def occupancy(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, *,
              name: str = "mesh", chunk: int = DEFAULT_CHUNK, closed: bool = True
              ) -> np.ndarray:
    """Inside/outside labels (PIFu targets): ``(N,)`` bool, True inside the closed mesh.

    Same winding-number test as the sign of ``signed_distance``, so
    ``occupancy == np.signbit(signed_distance)`` for the same inputs.
    """
    _check(vertices, faces, name, closed)
    v, f = _as_mesh(vertices, faces, name)
    return _signed(v, f, _as_points(points, name), chunk, with_distance=False)[0]


def surface_samples(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator,
                    *, name: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform over the surface area (faces picked by area, uniform barycentrics).

    Returns:
        ``points (n, 3)`` and ``normals (n, 3)``, both float64; the normals are the unit
        normals of the sampled faces (flat shading, outward for CCW winding), not interpolated.
    """
    v, f = _as_mesh(vertices, faces, name)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = np.linalg.norm(cross, axis=1)
    if not area.sum() > 0:
        raise PipelineError(f"mesh {name}: cannot sample a surface of zero area")
    cumulative = np.cumsum(area)
    face = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    face = np.minimum(face, len(f) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    root = np.sqrt(r1)
    u, w = root * (1.0 - r2), root * r2  # weights of b and c; a gets 1 - root
    points = a[face] + u[:, None] * (b[face] - a[face]) + w[:, None] * (c[face] - a[face])
    normals = cross[face] / np.maximum(area[face], np.finfo(np.float64).tiny)[:, None]
    return points, normals


def sample_sdf_points(vertices: np.ndarray, faces: np.ndarray, n_points: int, *,
                      uniform_fraction: float = 0.2,
                      sigmas: float | Sequence[float] = (0.01, 0.05),
                      padding: float = 0.1, rng: np.random.Generator,
                      name: str = "mesh", closed: bool = True,
                      signed: Callable[[np.ndarray], np.ndarray] | None = None
                      ) -> dict[str, np.ndarray]:
    """SDF training samples: a uniform share in the padded box, the rest near the surface.

    ``round(n_points * uniform_fraction)`` points are uniform in the mesh's axis-aligned
    bounding box grown on every side by ``padding`` × the box diagonal (a fraction, so it
    scales with the mesh). The others are area-weighted surface samples moved by isotropic
    Gaussian offsets of standard deviation ``sigma`` (mesh units, metres), split evenly between
    ``sigmas`` (earlier sigmas take the remainder). Order: uniform points, then near-surface
    points sigma by sigma. Deterministic for a given ``rng`` state.

    Returns:
        ``points (N, 3)`` float32, ``sdf (N,)`` float32 (negative inside) and ``kind (N,)``
        uint8 (0 uniform in the padded box, 1 near-surface).
    """
    if n_points < 0 or not 0.0 <= uniform_fraction <= 1.0 or padding < 0:
        raise ValueError("need n_points >= 0, 0 <= uniform_fraction <= 1 and padding >= 0")
    sigma_list = [float(sigmas)] if np.isscalar(sigmas) else [float(s) for s in sigmas]
    if not sigma_list or min(sigma_list) < 0:
        raise ValueError(f"sigmas must be one or more values >= 0, got {sigmas!r}")
    _check(vertices, faces, name, closed)
    v, f = _as_mesh(vertices, faces, name)
    n_uniform = round(n_points * uniform_fraction)
    n_near = n_points - n_uniform
    low, high = v.min(axis=0), v.max(axis=0)
    margin = padding * float(np.linalg.norm(high - low))
    uniform = rng.uniform(low - margin, high + margin, size=(n_uniform, 3))
    counts = [n_near // len(sigma_list) + (i < n_near % len(sigma_list))
              for i in range(len(sigma_list))]
    base, _ = surface_samples(v, f, n_near, rng, name=name)
    scale = np.repeat(np.asarray(sigma_list), counts)[:, None]
    near = base + rng.standard_normal((n_near, 3)) * scale
    points = np.concatenate([uniform, near]).astype(np.float32)
    sdf = (_sdf(v, f, points.astype(np.float64), DEFAULT_CHUNK) if signed is None
           else np.asarray(signed(points.astype(np.float64)), dtype=np.float32))
    kind = np.concatenate([np.zeros(n_uniform, np.uint8), np.ones(n_near, np.uint8)])
    return {"points": points, "sdf": sdf, "kind": kind}


def sdf_volume(vertices: np.ndarray, faces: np.ndarray, resolution: int, padding: float, *,
               name: str = "mesh", chunk: int = DEFAULT_CHUNK, closed: bool = True
               ) -> dict[str, np.ndarray]:
    """Exact signed distances on a regular grid over a cube around the mesh.

    The cube is centred on the mesh's bounding box, its half side the box's largest half
    extent × ``(1 + 2 · padding)``: the latent volume's cube
    (:func:`models.pixel2isdf.model.body_cube`) with this padding, so a volume built with a
    padding at least ``train.model.volume_padding`` covers it.

    Args:
        vertices, faces: the closed mesh (checked as ``signed_distance`` does).
        resolution: R grid points per side (the first and last on the cube's faces).
        padding: margin per side as a fraction of the largest extent.

    Returns:
        ``values`` ``(R, R, R)`` float32 indexed ``[z, y, x]`` (negative inside),
        ``nearest`` ``(R, R, R)`` int32, the index of each grid point's nearest vertex (the
        silhouette feature carries a point into each pose with its skinning), ``lo`` and
        ``hi`` ``(3,)`` float64 corners (x, y, z).
    """
    if resolution < 2 or padding < 0:
        raise ValueError(f"need resolution >= 2 and padding >= 0, got {resolution}, {padding}")
    _check(vertices, faces, name, closed)
    v, f = _as_mesh(vertices, faces, name)
    low, high = v.min(axis=0), v.max(axis=0)
    centre = (low + high) / 2
    half = float((high - low).max()) / 2 * (1 + 2 * padding)
    lo, hi = centre - half, centre + half
    axis = np.linspace(0.0, 1.0, resolution)
    zz, yy, xx = np.meshgrid(axis, axis, axis, indexing="ij")
    points = lo + np.stack([xx, yy, zz], axis=-1).reshape(-1, 3) * (hi - lo)
    shape = (resolution, resolution, resolution)
    values = _sdf(v, f, points, chunk).reshape(shape)
    # A sliding-midpoint tree of 64-point leaves answers the grid's far points several times
    # faster than scipy's default balanced one, with the same nearest vertices (docs/
    # results.md "cache_speed": benchmarks/stage_speed.py cache compares every dataset).
    tree = cKDTree(v, leafsize=64, balanced_tree=False, compact_nodes=False)
    nearest = tree.query(points, workers=-1)[1].astype(np.int32).reshape(shape)
    return {"values": values, "nearest": nearest, "lo": lo, "hi": hi}

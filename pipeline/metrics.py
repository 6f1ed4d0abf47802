"""Surface and volume metrics of a reconstructed mesh against its ground-truth scan.

Meshes are in metres; every reported distance is in CENTIMETRES (× 100). No alignment
(ICP, scale or translation fit) is applied: the prediction is scored where it stands. The exact
definitions, and how they relate to PIFuHD, ICON/ECON and the MVP-Human challenge, are in
``docs/evaluation.md``.

Directions: "P2S" is prediction → truth (points sampled on the prediction, distance to the truth
surface; as PIFuHD), "S2P" is truth → prediction (what ICON/ECON call P2S). Both are reported;
the Chamfer distance is their mean.

Backend: libigl (``igl.AABB`` exact point-to-triangle distance, ``igl.fast_winding_number``
inside tests) and scipy's ``cKDTree`` for the MVP-Human nearest-vertex variant. libigl threads
its loops; ``IGL_NUM_THREADS`` caps the thread count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import igl
import numpy as np
from scipy.spatial import cKDTree

from pipeline.errors import PipelineError
from pipeline.sdf import check_watertight, occupancy, read_watertight, surface_samples

CM_PER_M = 100.0
"""Meshes are in metres; metrics are reported in centimetres."""

FSCORE_THRESHOLDS_CM = (1.0, 2.0)
"""Distance thresholds τ (cm) of the reported F-scores."""

CHUNK = 200_000
"""Query points per libigl call (bounds temporary memory, does not change results)."""


@dataclass(frozen=True)
class SurfaceMetrics:
    """Scores of one prediction against one truth mesh (distances in cm, lower is better).

    ``surface`` is False when the prediction has no surface (no faces, or zero area: the
    network's field never crossed zero); every distance and score is then NaN and ``iou`` 0.
    """

    chamfer_cm: float
    """Mean of ``p2s_cm`` and ``s2p_cm``."""
    p2s_cm: float
    """Mean distance from prediction surface samples to the truth surface."""
    s2p_cm: float
    """Mean distance from truth surface samples to the prediction surface."""
    normal_consistency: float
    """Mean |cos| between sample normals and the closest faces' normals, both ways, in [0, 1]."""
    fscore_1cm: float
    """F-score at τ = 1 cm, in [0, 1]."""
    fscore_2cm: float
    """F-score at τ = 2 cm, in [0, 1]."""
    iou: float
    """Volumetric intersection over union, in [0, 1]."""
    mvp_chamfer_cm: float
    """MVP-Human challenge Chamfer: surface samples to the other mesh's nearest vertex."""
    n_samples: int
    """Surface samples drawn on each mesh for the exact distances."""
    surface: bool
    """False: the prediction has no surface."""

    def to_dict(self) -> dict[str, float | int | bool | None]:
        """Plain dict for JSON; NaN becomes None (JSON ``null``)."""
        return {key: None if isinstance(value, float) and math.isnan(value) else value
                for key, value in asdict(self).items()}


def _mesh_arrays(vertices: np.ndarray, faces: np.ndarray,
                 name: str) -> tuple[np.ndarray, np.ndarray]:
    """Float64 ``(V, 3)`` and int64 ``(F, 3)`` copies (``F`` may be 0), or PipelineError."""
    v = np.ascontiguousarray(vertices, dtype=np.float64)
    v = v.reshape(0, 3) if v.size == 0 else v
    f = np.asarray(faces)
    f = f.reshape(0, 3).astype(np.int64) if f.size == 0 else f
    if v.ndim != 2 or v.shape[1] != 3:
        raise PipelineError(f"mesh {name}: vertices must be (V, 3), got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise PipelineError(f"mesh {name}: faces must be an integer (F, 3) array, "
                            f"got {f.dtype} shape {f.shape}")
    if not np.isfinite(v).all():
        raise PipelineError(f"mesh {name}: vertices hold NaN or infinite coordinates")
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise PipelineError(f"mesh {name}: face indices outside [0, {len(v) - 1}]")
    return v, np.ascontiguousarray(f, dtype=np.int64)


def _face_normals(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit face normals ``(F, 3)`` (zero for degenerate faces) and face areas ``(F,)`` (m²)."""
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    double_area = np.linalg.norm(cross, axis=1)
    normals = cross / np.maximum(double_area, np.finfo(np.float64).tiny)[:, None]
    return normals, 0.5 * double_area


def _drop_degenerate(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Faces of nonzero area: zero-area triangles (marching cubes makes some) have no normal."""
    return f[_face_normals(v, f)[1] > 0.0]


def surface_distances(points: np.ndarray, vertices: np.ndarray,
                      faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean distance from each point to the closest point of a triangle mesh.

    Args:
        points: ``(P, 3)`` query points (metres).
        vertices: ``(V, 3)`` mesh positions (metres). faces: ``(F, 3)`` indices, ``F >= 1``.

    Returns:
        ``distance (P,)`` float64 in the mesh's units (metres, NOT squared) and
        ``face (P,)`` int64, the index of the face holding each closest point.
    """
    v, f = _mesh_arrays(vertices, faces, "target")
    if len(f) == 0:
        raise ValueError("surface_distances needs a mesh with at least one face")
    p = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
    tree = igl.AABB()
    tree.init(v, f)
    distance = np.empty(len(p), dtype=np.float64)
    face = np.empty(len(p), dtype=np.int64)
    for start in range(0, len(p), CHUNK):
        squared, index, _ = tree.squared_distance(v, f, p[start:start + CHUNK])
        distance[start:start + CHUNK] = np.sqrt(np.maximum(squared, 0.0))
        face[start:start + CHUNK] = index
    return distance, face


def fscore(p2s: np.ndarray, s2p: np.ndarray, threshold: float) -> float:
    """Harmonic mean of precision and recall at distance ``threshold`` (same units as inputs).

    Precision is the share of prediction samples with ``p2s <= threshold``, recall the share of
    truth samples with ``s2p <= threshold``; 0 when both are 0.
    """
    precision = float(np.mean(p2s <= threshold))
    recall = float(np.mean(s2p <= threshold))
    total = precision + recall
    return 0.0 if total == 0.0 else 2.0 * precision * recall / total


def mvp_chamfer_cm(pred_v: np.ndarray, pred_f: np.ndarray, truth_v: np.ndarray,
                   truth_f: np.ndarray, n: int, rng: np.random.Generator) -> float:
    """MVP-Human challenge Chamfer (cm): surface samples to the other mesh's nearest VERTEX.

    ``n`` area-uniform samples on the prediction (drawn first from ``rng``) and ``n`` on the
    truth; each sample's Euclidean distance (not squared) to the nearest vertex of the other
    mesh (scipy ``cKDTree``); the mean of the two directions' means, × 100.
    """
    pred_points, _ = surface_samples(pred_v, pred_f, n, rng, name="prediction")
    truth_points, _ = surface_samples(truth_v, truth_f, n, rng, name="truth")
    to_truth, _ = cKDTree(np.asarray(truth_v, dtype=np.float64)).query(pred_points)
    to_pred, _ = cKDTree(np.asarray(pred_v, dtype=np.float64)).query(truth_points)
    return CM_PER_M * 0.5 * (float(np.mean(to_truth)) + float(np.mean(to_pred)))


def volume_iou(pred_v: np.ndarray, pred_f: np.ndarray, truth_v: np.ndarray,
               truth_f: np.ndarray, n: int, padding: float, rng: np.random.Generator,
               truth_closed: bool = True) -> float:
    """Monte-Carlo volumetric IoU from ``n`` points uniform in the truth's padded box.

    The box is the truth's axis-aligned bounding box grown on every side by ``padding`` × its
    diagonal; prediction volume outside it is not seen. Inside tests use the generalised winding
    number: the truth must be closed and outward (``pipeline.sdf.occupancy`` checks it), or
    ``truth_closed`` False for a scan with holes found signable (``pipeline.scans``); the
    prediction need not be closed and may be inside out (inside where |w| > 0.5). A prediction
    without faces has no volume. NaN only if no point falls inside either mesh.
    """
    low, high = truth_v.min(axis=0), truth_v.max(axis=0)
    margin = padding * float(np.linalg.norm(high - low))
    points = rng.uniform(low - margin, high + margin, size=(n, 3))
    inside_truth = occupancy(truth_v, truth_f, points, name="truth", chunk=CHUNK,
                             closed=truth_closed)
    inside_pred = np.zeros(n, dtype=bool)
    if len(pred_f):
        for start in range(0, n, CHUNK):
            part = points[start:start + CHUNK]
            inside_pred[start:start + CHUNK] = \
                np.abs(igl.fast_winding_number(pred_v, pred_f, part)) > 0.5
    union = int(np.sum(inside_truth | inside_pred))
    return float("nan") if union == 0 else int(np.sum(inside_truth & inside_pred)) / union


def compare_meshes(pred_v: np.ndarray, pred_f: np.ndarray, truth_v: np.ndarray,
                   truth_f: np.ndarray, *, n_samples: int = 100_000, n_iou: int = 100_000,
                   iou_padding: float = 0.1, seed: int = 0,
                   mvp_samples: int = 10_000, truth_closed: bool = True) -> SurfaceMetrics:
    """Score a predicted mesh against the truth mesh, both in metres, without alignment.

    Distances: ``n_samples`` area-uniform samples on each mesh; exact point-to-triangle distance
    (not squared) to the other surface. P2S = mean over prediction samples → truth surface
    (PIFuHD's direction; ICON/ECON's "P2S" is truth → prediction, our ``s2p_cm``); Chamfer =
    mean of the two directions. F-score at τ ∈ {1, 2} cm from the same distances. Normal
    consistency: mean |cos| between each sample's face normal and the normal of the face of its
    closest point on the other mesh, averaged over both directions. IoU: see ``volume_iou``
    (``n_iou`` points, ``iou_padding``). MVP variant: see ``mvp_chamfer_cm``
    (``mvp_samples``). Deterministic for a given ``seed``: samples of each part come from
    independent child streams of ``np.random.SeedSequence(seed)`` (surface, IoU, MVP).

    Args:
        pred_v, pred_f: prediction ``(V, 3)`` float, ``(F, 3)`` int; ``F`` may be 0, and the
            mesh need not be closed (zero-area faces are ignored).
        truth_v, truth_f: closed, outward-oriented truth mesh.

    Returns:
        ``SurfaceMetrics``; ``surface=False`` with NaN distances/scores and IoU 0 when the
        prediction has no faces of nonzero area.

    Raises:
        PipelineError: malformed arrays, or a truth that is not closed and outward.
        ValueError: non-positive sample counts or negative padding.
    """
    if min(n_samples, n_iou, mvp_samples) < 1 or iou_padding < 0:
        raise ValueError("need n_samples, n_iou, mvp_samples >= 1 and iou_padding >= 0")
    tv, tf = _mesh_arrays(truth_v, truth_f, "truth")
    if truth_closed:  # else a scan with holes that pipeline.scans found signable
        check_watertight(tv, tf, "truth")
    pv, pf = _mesh_arrays(pred_v, pred_f, "prediction")
    pf = _drop_degenerate(pv, pf) if len(pf) else pf
    surface_seed, iou_seed, mvp_seed = np.random.SeedSequence(seed).spawn(3)
    if len(pf) == 0:
        nan = float("nan")
        return SurfaceMetrics(chamfer_cm=nan, p2s_cm=nan, s2p_cm=nan, normal_consistency=nan,
                              fscore_1cm=nan, fscore_2cm=nan, iou=0.0, mvp_chamfer_cm=nan,
                              n_samples=n_samples, surface=False)

    rng = np.random.default_rng(surface_seed)
    pred_points, pred_normals = surface_samples(pv, pf, n_samples, rng, name="prediction")
    truth_points, truth_normals = surface_samples(tv, tf, n_samples, rng, name="truth")
    p2s, truth_face = surface_distances(pred_points, tv, tf)
    s2p, pred_face = surface_distances(truth_points, pv, pf)
    p2s_cm, s2p_cm = p2s * CM_PER_M, s2p * CM_PER_M
    truth_face_normals, _ = _face_normals(tv, tf)
    pred_face_normals, _ = _face_normals(pv, pf)
    cos_pt = np.abs(np.einsum("ij,ij->i", pred_normals, truth_face_normals[truth_face]))
    cos_tp = np.abs(np.einsum("ij,ij->i", truth_normals, pred_face_normals[pred_face]))
    f1, f2 = (fscore(p2s_cm, s2p_cm, tau) for tau in FSCORE_THRESHOLDS_CM)
    iou = volume_iou(pv, pf, tv, tf, n_iou, iou_padding, np.random.default_rng(iou_seed),
                     truth_closed)
    mvp = mvp_chamfer_cm(pv, pf, tv, tf, mvp_samples, np.random.default_rng(mvp_seed))
    p2s_mean, s2p_mean = float(np.mean(p2s_cm)), float(np.mean(s2p_cm))
    return SurfaceMetrics(
        chamfer_cm=0.5 * (p2s_mean + s2p_mean), p2s_cm=p2s_mean, s2p_cm=s2p_mean,
        normal_consistency=0.5 * (float(np.mean(cos_pt)) + float(np.mean(cos_tp))),
        fscore_1cm=f1, fscore_2cm=f2, iou=iou, mvp_chamfer_cm=mvp, n_samples=n_samples,
        surface=True)


def load_truth(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a ground-truth PLY: ``vertices (V, 3)`` float64 metres, ``faces (F, 3)`` int64.

    Raises:
        PipelineError: naming the file when it is missing, unreadable (not a PLY triangle
            mesh) or not a closed, outward-oriented surface.
    """
    return read_watertight(path, " (the evaluation's truth)")


def _cell(value: float, digits: int) -> str:
    """A table cell: fixed ``digits`` decimals, an em dash for NaN."""
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(rows: Sequence[tuple[str, SurfaceMetrics]]) -> str:
    """A Markdown table, one row per ``(name, metrics)``; distances in cm, "—" for NaN.

    A row whose prediction has no surface says so in its name column.
    """
    header = ("| mesh | Chamfer (cm) | P2S (cm) | S2P (cm) | NC | F@1cm | F@2cm | IoU "
              "| MVP CD (cm) |")
    lines = [header, "|" + "---|" * 9]
    for name, m in rows:
        label = name if m.surface else f"{name} (no surface)"
        cells = [_cell(m.chamfer_cm, 3), _cell(m.p2s_cm, 3), _cell(m.s2p_cm, 3),
                 _cell(m.normal_consistency, 3), _cell(m.fscore_1cm, 3),
                 _cell(m.fscore_2cm, 3), _cell(m.iou, 3), _cell(m.mvp_chamfer_cm, 3)]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines) + "\n"

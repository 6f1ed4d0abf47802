"""Seconds per evaluation (``pipeline.metrics.compare_meshes``) of a human-sized mesh pair.

    python benchmarks/eval_speed.py [--repeats 3] [--threads 2]

Truth: an icosphere (subdivision 6, 81,920 faces) scaled to a 1.7 m × 0.5 m × 0.3 m ellipsoid;
prediction: the same ellipsoid at subdivision 5 (20,480 faces, 10,242 vertices, about a
coarse marching-cubes body), its vertices moved along their normals by Gaussian noise of 5 mm
so the scores are not trivial (normal consistency comes out low, ~0.75, because the edges
across the 0.3 m axis are only ~5 mm long: the pair is for timing, not a quality reference).
Rows in the same run: the default evaluation (100k surface samples each way, 100k IoU
points, 10k MVP samples), the same with 10k samples and 10k IoU points (PIFuHD's sample count),
and parts of the default one: exact distances of 100k points (libigl AABB), the winding-number
inside test of 100k box points and of 100k surface points, and trimesh's
``proximity.closest_point`` on 10k points scaled to 100k when its optional ``rtree``
dependency is installed. Threads are capped at ``--threads`` (libigl, BLAS) before import.
"""

import os
import sys

_threads = next((sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--threads"), "2")
for _var in ("IGL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _threads

import argparse  # noqa: E402

import igl  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from timing import median_seconds  # noqa: E402

from pipeline.metrics import compare_meshes, surface_distances  # noqa: E402
from pipeline.sdf import surface_samples  # noqa: E402

AXES = np.array([0.25, 0.15, 0.85])  # ellipsoid half-axes (m): 0.5 × 0.3 × 1.7 m overall


def ellipsoid(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Icosphere of radius 1 scaled to the body-sized ellipsoid: (V, 3) metres, (F, 3)."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    return np.asarray(mesh.vertices) * AXES, np.asarray(mesh.faces, dtype=np.int64)


def noisy(vertices: np.ndarray, faces: np.ndarray, sigma: float,
          rng: np.random.Generator) -> np.ndarray:
    """Vertices moved along their normals by N(0, sigma²) metres."""
    normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals
    return vertices + normals * rng.normal(0.0, sigma, (len(vertices), 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="2", help="libigl / BLAS threads (set pre-import)")
    args = parser.parse_args()

    truth_v, truth_f = ellipsoid(6)
    pred_v, pred_f = ellipsoid(5)
    pred_v = noisy(pred_v, pred_f, 0.005, np.random.default_rng(0))
    points, _ = surface_samples(pred_v, pred_f, 100_000, np.random.default_rng(1))
    print(f"truth {len(truth_v)} vertices / {len(truth_f)} faces; prediction {len(pred_v)} "
          f"vertices / {len(pred_f)} faces; threads {os.environ['IGL_NUM_THREADS']}; "
          f"median of {args.repeats}")

    rows: list[tuple[str, float, str]] = []

    def bench(label: str, fn, scale: float = 1.0, note=None) -> None:
        seconds, out = median_seconds(fn, args.repeats)
        rows.append((label, seconds * scale, note(out) if note else ""))

    def summary(m) -> str:
        return (f"CD {m.chamfer_cm:.3f} cm, P2S {m.p2s_cm:.3f}, S2P {m.s2p_cm:.3f}, "
                f"NC {m.normal_consistency:.4f}, F@1 {m.fscore_1cm:.3f}, IoU {m.iou:.4f}, "
                f"MVP {m.mvp_chamfer_cm:.3f}")

    bench("compare_meshes default (100k samples, 100k IoU, 10k MVP)",
          lambda: compare_meshes(pred_v, pred_f, truth_v, truth_f), note=summary)
    bench("baseline: compare_meshes 10k samples, 10k IoU, 10k MVP",
          lambda: compare_meshes(pred_v, pred_f, truth_v, truth_f, n_samples=10_000,
                                 n_iou=10_000), note=summary)
    bench("  part: surface_distances 100k points → truth (AABB)",
          lambda: surface_distances(points, truth_v, truth_f)[0],
          note=lambda d: f"mean {100 * d.mean():.3f} cm")
    low, high = truth_v.min(axis=0), truth_v.max(axis=0)
    margin = 0.1 * float(np.linalg.norm(high - low))
    box = np.random.default_rng(2).uniform(low - margin, high + margin, (100_000, 3))
    bench("  part: igl.fast_winding_number 100k box points (truth)",
          lambda: igl.fast_winding_number(truth_v, truth_f, box))
    bench("  part: igl.fast_winding_number 100k surface points (truth)",
          lambda: igl.fast_winding_number(truth_v, truth_f, points))
    try:
        import rtree  # noqa: F401  (trimesh.proximity needs it)
    except ImportError:
        rows.append(("baseline: trimesh.proximity.closest_point", float("nan"),
                     "skipped: needs the rtree package"))
    else:
        mesh = trimesh.Trimesh(truth_v, truth_f, process=False)
        bench("baseline: trimesh.proximity.closest_point 10k points, ×10",
              lambda: trimesh.proximity.closest_point(mesh, points[:10_000])[1], scale=10.0)

    width = max(len(label) for label, _, _ in rows)
    print(f"{'what':<{width}}  {'seconds':>8}  notes")
    for label, seconds, note in rows:
        print(f"{label:<{width}}  {seconds:8.3f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

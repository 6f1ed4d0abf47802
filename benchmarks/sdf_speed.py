"""Seconds for signed distance from query points to a closed ~50k-face mesh, medians.

    python benchmarks/sdf_speed.py [--points 100000] [--faces 50000] [--repeats 3]

The mesh is a torus (R = 0.3 m, r = 0.1 m, about human-limb scale) so the result can be checked
against its analytic SDF. Query points mimic the training cache: 20 % uniform in the padded
bounding box, 80 % near the surface (sigmas 1 cm and 5 cm). Baselines in the same run: libigl's
unsigned closest-point distance alone, the winding-number sign alone, trimesh's embree ray
parity test (sign only), and trimesh's own signed_distance on a subset, scaled up (only when
its optional rtree dependency is installed). libigl uses all cores unless IGL_NUM_THREADS is set.
"""

import argparse
import os

import igl
import numpy as np
import trimesh
from timing import median_seconds

from pipeline.sdf import check_watertight, occupancy, sample_sdf_points, signed_distance

R, r = 0.3, 0.1


def torus(n_faces):
    """A closed torus grid with about ``n_faces`` faces, outward winding: (V, 3), (F, 3)."""
    nv = max(3, round(np.sqrt(n_faces / 2 / (R / r + 1))))
    nu = max(3, round(n_faces / 2 / nv))
    u = np.linspace(0, 2 * np.pi, nu, endpoint=False)[:, None]
    v = np.linspace(0, 2 * np.pi, nv, endpoint=False)[None, :]
    ring = R + r * np.cos(v)
    verts = np.stack(np.broadcast_arrays(ring * np.cos(u), ring * np.sin(u), r * np.sin(v)),
                     axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a, b = i * nv + j, (i + 1) % nu * nv + j
    c, d = (i + 1) % nu * nv + (j + 1) % nv, i * nv + (j + 1) % nv
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                            np.stack([a, c, d], -1).reshape(-1, 3)])
    return verts, faces


def torus_sdf(p):
    return np.hypot(np.hypot(p[:, 0], p[:, 1]) - R, p[:, 2]) - r


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--faces", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    verts, faces = torus(args.faces)
    faces64 = faces.astype(np.int64)
    rng = np.random.default_rng(0)
    points = sample_sdf_points(verts, faces, args.points, rng=rng)["points"].astype(np.float64)
    exact = torus_sdf(points)
    threads = os.environ.get("IGL_NUM_THREADS", f"all ({os.cpu_count()})")
    print(f"torus: {len(faces)} faces, {len(verts)} vertices; {len(points)} query points; "
          f"median of {args.repeats}; libigl threads: {threads}")

    rows = []

    def bench(label, fn, scale=1.0, check=None):
        seconds, out = median_seconds(fn, args.repeats)
        note = f"max |err| vs analytic {np.abs(np.asarray(out) - check).max():.1e} m" \
            if check is not None else ""
        rows.append((label, seconds * scale, note))

    bench("pipeline.sdf.signed_distance (AABB + fast winding no.)",
          lambda: signed_distance(verts, faces, points), check=exact)
    bench("  of which check_watertight", lambda: check_watertight(verts, faces, "torus"))
    bench("pipeline.sdf.occupancy (sign only)", lambda: occupancy(verts, faces, points))
    bench("pipeline.sdf.sample_sdf_points (sampling + SDF)",
          lambda: sample_sdf_points(verts, faces, args.points, rng=np.random.default_rng(1)))
    bench("baseline: igl.point_mesh_squared_distance (unsigned)",
          lambda: np.sqrt(igl.point_mesh_squared_distance(points, verts, faces64)[0]),
          check=np.abs(exact))
    bench("baseline: igl.signed_distance pseudonormal",
          lambda: igl.signed_distance(points, verts, faces64,
                                      igl.SignedDistanceType.SIGNED_DISTANCE_TYPE_PSEUDONORMAL)[0],
          check=exact)
    bench("baseline: trimesh contains (embree ray parity, sign only)",
          lambda: trimesh.Trimesh(verts, faces, process=False).contains(points))
    try:
        import rtree  # noqa: F401  (trimesh.proximity needs it)
    except ImportError:
        rows.append(("baseline: trimesh.proximity.signed_distance", float("nan"),
                     "skipped: needs the rtree package"))
    else:
        subset = max(1, len(points) // 10)
        bench(f"baseline: trimesh.proximity.signed_distance ({subset} pts, scaled)",
              lambda: -trimesh.proximity.signed_distance(
                  trimesh.Trimesh(verts, faces, process=False), points[:subset]),
              scale=len(points) / subset)

    width = max(len(label) for label, _, _ in rows)
    print(f"{'what':<{width}}  {'seconds':>8}  notes")
    for label, seconds, note in rows:
        print(f"{label:<{width}}  {seconds:8.3f}  {note}")


if __name__ == "__main__":
    main()

"""Signed distance, occupancy and SDF sampling against analytic sphere and torus SDFs."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from pipeline.errors import PipelineError
from pipeline.sdf import (
    check_watertight,
    occupancy,
    sample_sdf_points,
    signed_distance,
    surface_samples,
)

# Icosphere (subdivisions 4, radius 1): its vertices lie on the sphere and its flat faces sag
# inwards by at most ~7e-4, so mesh and analytic SDF agree to within that.
SPHERE_TOL = 2e-3
# Torus grid 64 × 32 with R = 1, r = 0.35: chord sag ≤ 1.35(1 − cos π/64) + 0.35(1 − cos π/32).
TORUS_R, TORUS_r = 1.0, 0.35
TORUS_TOL = 5e-3


def sphere() -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def sphere_sdf(p: np.ndarray) -> np.ndarray:
    return np.linalg.norm(p, axis=1) - 1.0


def torus(nu: int = 64, nv: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Torus around z: u around the axis, v around the tube; (du, dv) order points outward."""
    u = np.linspace(0, 2 * np.pi, nu, endpoint=False)[:, None]
    v = np.linspace(0, 2 * np.pi, nv, endpoint=False)[None, :]
    ring = TORUS_R + TORUS_r * np.cos(v)
    verts = np.stack(np.broadcast_arrays(ring * np.cos(u), ring * np.sin(u),
                                         TORUS_r * np.sin(v)), axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a, b = i * nv + j, (i + 1) % nu * nv + j
    c, d = (i + 1) % nu * nv + (j + 1) % nv, i * nv + (j + 1) % nv
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                            np.stack([a, c, d], -1).reshape(-1, 3)])
    return verts, faces


def torus_sdf(p: np.ndarray) -> np.ndarray:
    q = np.hypot(p[:, 0], p[:, 1]) - TORUS_R
    return np.hypot(q, p[:, 2]) - TORUS_r


def query_points(seed: int, n: int = 3000, half: float = 1.6) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-half, half, (n, 3))


def test_sphere_matches_analytic_sdf():
    v, f = sphere()
    p = query_points(0)
    sdf = signed_distance(v, f, p, name="sphere.ply")
    assert sdf.dtype == np.float32 and sdf.shape == (len(p),)
    exact = sphere_sdf(p)
    np.testing.assert_allclose(sdf, exact, atol=SPHERE_TOL)
    clear = np.abs(exact) > SPHERE_TOL
    assert np.all(np.sign(sdf[clear]) == np.sign(exact[clear]))
    assert signed_distance(v, f, np.zeros((1, 3)))[0] == pytest.approx(-1.0, abs=SPHERE_TOL)


def test_torus_matches_analytic_sdf_and_hole_is_outside():
    v, f = torus()
    check_watertight(v, f, "torus")
    p = query_points(1)
    sdf = signed_distance(v, f, p, chunk=700)  # several chunks
    exact = torus_sdf(p)
    np.testing.assert_allclose(sdf, exact, atol=TORUS_TOL)
    clear = np.abs(exact) > TORUS_TOL
    assert np.all(np.sign(sdf[clear]) == np.sign(exact[clear]))
    hole = np.array([[0.0, 0.0, 0.0], [0.3, 0.0, 0.1], [0.0, -0.4, -0.2]])
    hole_sdf = signed_distance(v, f, hole)
    assert np.all(hole_sdf > 0)
    np.testing.assert_allclose(hole_sdf, torus_sdf(hole), atol=TORUS_TOL)
    tube = np.array([[TORUS_R, 0.0, 0.0], [0.0, -TORUS_R, 0.1]])
    assert np.all(signed_distance(v, f, tube) < 0)


@pytest.mark.parametrize("make", [sphere, torus])
def test_occupancy_matches_sign(make):
    v, f = make()
    p = query_points(2)
    inside = occupancy(v, f, p)
    assert inside.dtype == bool and inside.any() and not inside.all()
    np.testing.assert_array_equal(inside, np.signbit(signed_distance(v, f, p)))


def test_self_intersecting_closed_mesh_uses_winding_number_sign():
    # Two overlapping closed spheres: the point is inside the left one, 0.05 outside the right
    # one's (interior) surface. The winding number calls it inside; a pseudonormal would not.
    left, right = trimesh.creation.icosphere(4), trimesh.creation.icosphere(4)
    left.apply_translation([-0.5, 0, 0])
    right.apply_translation([0.5, 0, 0])
    both = trimesh.util.concatenate([left, right])
    sdf = signed_distance(both.vertices, both.faces, np.array([[-0.55, 0.0, 0.0]]))
    assert sdf[0] == pytest.approx(-0.05, abs=SPHERE_TOL)


def test_mesh_with_a_hole_is_refused_by_name():
    v, f = sphere()
    with pytest.raises(PipelineError, match=r"scan_0042\.obj.*3 open boundary edges"):
        signed_distance(v, f[1:], np.zeros((1, 3)), name="scan_0042.obj")
    with pytest.raises(PipelineError, match=r"scan_0042\.obj"):
        occupancy(v, f[1:], np.zeros((1, 3)), name="scan_0042.obj")


def test_inconsistent_winding_and_non_manifold_are_refused():
    v, f = torus()
    bad = f.copy()
    bad[5] = bad[5, ::-1]
    with pytest.raises(PipelineError, match=r"torus\.ply.*inconsistent winding: 3 edges"):
        check_watertight(v, bad, "torus.ply")
    with pytest.raises(PipelineError, match="3 non-manifold edges"):
        check_watertight(v, np.concatenate([f, f[:1]]), "torus.ply")


def test_inside_out_mesh_is_refused_not_repaired():
    v, f = sphere()
    with pytest.raises(PipelineError, match=r"flipped\.ply.*inverted \(inside-out\)"):
        signed_distance(v, f[:, ::-1], np.zeros((1, 3)), name="flipped.ply")


def test_bad_arrays_are_refused():
    v, f = sphere()
    with pytest.raises(PipelineError, match="outside"):
        check_watertight(v, f + 10_000, "m")
    with pytest.raises(PipelineError, match=r"\(N, 3\)"):
        signed_distance(v, f, np.zeros((4, 2)))


def test_surface_samples_are_area_weighted_with_face_normals():
    box = trimesh.creation.box(extents=(4.0, 1.0, 1.0))  # 16 of its 18 m² face ±y / ±z
    points, normals = surface_samples(box.vertices, box.faces, 20_000,
                                      np.random.default_rng(3))
    assert points.shape == normals.shape == (20_000, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
    assert np.mean(np.abs(normals[:, 0]) > 0.5) == pytest.approx(2 / 18, abs=0.01)
    assert np.all(np.abs(points) <= np.array([2.0, 0.5, 0.5]) + 1e-12)
    v, f = sphere()
    points, normals = surface_samples(v, f, 2000, np.random.default_rng(4))
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, atol=SPHERE_TOL)
    assert np.all(np.einsum("ij,ij->i", points, normals) > 0.99)


def test_sampler_split_box_and_near_surface():
    v, f = sphere()
    out = sample_sdf_points(v, f, 1000, sigmas=(0.01, 0.05), padding=0.1,
                            rng=np.random.default_rng(5))
    points, sdf, kind = out["points"], out["sdf"], out["kind"]
    assert points.dtype == sdf.dtype == np.float32 and kind.dtype == np.uint8
    assert points.shape == (1000, 3) and sdf.shape == kind.shape == (1000,)
    assert np.sum(kind == 0) == 200 and np.sum(kind == 1) == 800
    margin = 0.1 * np.linalg.norm(v.max(0) - v.min(0))
    uniform = points[kind == 0]
    assert np.all(uniform >= v.min(0) - margin - 1e-6)
    assert np.all(uniform <= v.max(0) + margin + 1e-6)
    assert uniform.max() > 1.0 and uniform.min() < -1.0  # reaches into the padding
    np.testing.assert_allclose(sdf, sphere_sdf(points.astype(np.float64)), atol=SPHERE_TOL)
    fine, coarse = np.abs(sdf[200:600]), np.abs(sdf[600:])
    assert np.median(fine) < 0.015 and np.median(coarse) < 0.06
    assert fine.max() < 0.1 and coarse.max() < 0.35
    assert np.median(fine) < np.median(coarse)


def test_sampler_single_sigma_and_determinism():
    v, f = torus()
    a = sample_sdf_points(v, f, 501, sigmas=0.02, rng=np.random.default_rng(7))
    b = sample_sdf_points(v, f, 501, sigmas=0.02, rng=np.random.default_rng(7))
    c = sample_sdf_points(v, f, 501, sigmas=0.02, rng=np.random.default_rng(8))
    for key in ("points", "sdf", "kind"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["points"], c["points"])
    assert np.sum(a["kind"] == 0) == 100
    assert np.abs(a["sdf"][a["kind"] == 1]).max() < 0.15

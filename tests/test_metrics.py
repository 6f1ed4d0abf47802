"""Evaluation metrics against cases with known answers: concentric spheres, offset boxes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import trimesh

from pipeline.errors import PipelineError
from pipeline.meshio import write_ply
from pipeline.metrics import (
    SurfaceMetrics,
    compare_meshes,
    load_truth,
    markdown_table,
    mvp_chamfer_cm,
    surface_distances,
)
from pipeline.sdf import surface_samples

R = 0.5  # sphere radius, metres
SMALL = {"n_samples": 20_000, "n_iou": 20_000, "mvp_samples": 2_000}


def icosphere(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Subdivision-5 icosphere (10242 vertices, 20480 faces) centred at the origin."""
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def unit_box(shift_x: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned 1 m cube centred at ``(shift_x, 0, 0)``, outward winding."""
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    return np.asarray(mesh.vertices) + np.array([shift_x, 0.0, 0.0]), np.asarray(mesh.faces)


def faceted_gap_cm(d: float) -> float:
    """Exact mean gap (cm) between the icospheres of radii R and R + d.

    The outer mesh is the inner one scaled by k = (R + d) / R, so each inner face's plane lies
    at h from the centre and the outer one's at k h: the gap is (k - 1) h = d h / R, and its
    area-weighted mean is d h̄ / R. Flat faces sit slightly inside the sphere (h̄ < R): at
    subdivision 5 this shortens the gap by 0.024 %, well below the sampling noise, but the
    expectation is exact for inner → outer samples (outer → inner differs only near edges).
    """
    v, f = icosphere(R)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = np.linalg.norm(cross, axis=1)
    h = np.einsum("ij,ij->i", a, cross / area[:, None])
    return 100.0 * d * float(np.sum(h * area) / np.sum(area)) / R


@pytest.fixture(scope="module")
def spheres_1cm() -> SurfaceMetrics:
    """Prediction: sphere of radius R; truth: radius R + 1 cm."""
    return compare_meshes(*icosphere(R), *icosphere(R + 0.01), **SMALL)


def test_concentric_spheres_chamfer_is_gap(spheres_1cm):
    expected = faceted_gap_cm(0.01)
    assert abs(expected - 1.0) < 5e-4  # the faceting correction is tiny at subdivision 5
    assert spheres_1cm.chamfer_cm == pytest.approx(expected, rel=1e-4)


def test_concentric_spheres_p2s_equals_s2p(spheres_1cm):
    expected = faceted_gap_cm(0.01)
    assert spheres_1cm.p2s_cm == pytest.approx(expected, rel=1e-4)
    assert spheres_1cm.s2p_cm == pytest.approx(expected, rel=1e-4)


def test_concentric_spheres_normals_agree(spheres_1cm):
    assert spheres_1cm.normal_consistency == pytest.approx(1.0, abs=1e-4)


def test_concentric_spheres_iou_is_volume_ratio(spheres_1cm):
    # The meshes are scaled copies, so their volume ratio is exactly (R / (R + d))³.
    assert spheres_1cm.iou == pytest.approx((R / (R + 0.01)) ** 3, abs=0.01)


def test_fscore_one_when_gap_below_threshold():
    m = compare_meshes(*icosphere(R), *icosphere(R + 0.005), **SMALL)
    assert m.fscore_1cm == 1.0 and m.fscore_2cm == 1.0


def test_fscore_zero_when_gap_above_threshold():
    m = compare_meshes(*icosphere(R), *icosphere(R + 0.03), **SMALL)
    assert m.fscore_1cm == 0.0 and m.fscore_2cm == 0.0


def test_mesh_against_itself_is_perfect():
    v, f = icosphere(R)
    m = compare_meshes(v, f, v, f, **SMALL)
    assert m.surface
    assert m.chamfer_cm < 1e-6 and m.p2s_cm < 1e-6 and m.s2p_cm < 1e-6
    assert m.iou == 1.0 and m.fscore_1cm == 1.0 and m.fscore_2cm == 1.0
    assert m.normal_consistency == pytest.approx(1.0, abs=1e-9)


def test_iou_of_offset_boxes_is_one_third():
    # Padding 0.3 × diagonal (0.52 m) makes the truth's sample box reach x = 1.02, so it holds
    # the shifted box too: IoU = 0.5 / 1.5.
    m = compare_meshes(*unit_box(0.5), *unit_box(), n_samples=1_000, n_iou=200_000,
                       iou_padding=0.3, mvp_samples=1_000)
    assert m.iou == pytest.approx(1.0 / 3.0, abs=0.01)


def test_iou_ignores_prediction_outside_truth_box():
    # Default padding 0.1 × √3: the box ends at x = 0.673, so only 0.673 m³ of the shifted box
    # is seen and IoU = 0.5 / (1 + 0.673 - 0.5).
    m = compare_meshes(*unit_box(0.5), *unit_box(), n_samples=1_000, n_iou=200_000,
                       mvp_samples=1_000)
    seen = 0.5 + 0.1 * math.sqrt(3.0)
    assert m.iou == pytest.approx(0.5 / (1.0 + seen - 0.5), abs=0.01)


def test_iou_accepts_inside_out_prediction():
    v, f = unit_box()
    m = compare_meshes(v, f[:, ::-1], v, f, n_samples=1_000, n_iou=20_000, mvp_samples=1_000)
    assert m.iou == 1.0


def test_mvp_chamfer_is_nearest_vertex_distance():
    tet_v = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1]])
    tet_f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    moved = tet_v + np.array([0.03, 0.01, -0.02])
    got = mvp_chamfer_cm(moved, tet_f, tet_v, tet_f, 500, np.random.default_rng(7))
    rng = np.random.default_rng(7)  # same stream: prediction samples first, then truth
    pred_points, _ = surface_samples(moved, tet_f, 500, rng)
    truth_points, _ = surface_samples(tet_v, tet_f, 500, rng)

    def brute(points: np.ndarray, vertices: np.ndarray) -> float:
        return float(np.linalg.norm(points[:, None] - vertices[None], axis=2).min(1).mean())

    expected = 50.0 * (brute(pred_points, tet_v) + brute(truth_points, moved))
    assert got == pytest.approx(expected, rel=1e-12)


def test_surface_distances_to_box_faces():
    v, f = unit_box()
    points = np.array([[0.0, 0.0, 0.8], [1.5, 0.0, 0.0], [0.0, 0.1, 0.0]])
    distance, face = surface_distances(points, v, f)
    np.testing.assert_allclose(distance, [0.3, 1.0, 0.4], atol=1e-12)
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    np.testing.assert_allclose(np.sign(normals[face[0]]), [0, 0, 1])


def test_prediction_without_faces_is_no_surface():
    m = compare_meshes(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), *unit_box(),
                       **SMALL)
    assert not m.surface and m.iou == 0.0
    assert all(math.isnan(x) for x in (m.chamfer_cm, m.p2s_cm, m.s2p_cm, m.normal_consistency,
                                       m.fscore_1cm, m.fscore_2cm, m.mvp_chamfer_cm))
    assert m.to_dict()["chamfer_cm"] is None and m.to_dict()["surface"] is False


def test_same_seed_same_metrics():
    pred, truth = icosphere(R), unit_box()
    counts = {"n_samples": 5_000, "n_iou": 5_000, "mvp_samples": 1_000}
    first = compare_meshes(*pred, *truth, seed=3, **counts)
    assert compare_meshes(*pred, *truth, seed=3, **counts) == first
    assert compare_meshes(*pred, *truth, seed=4, **counts) != first


def test_load_truth_round_trip(tmp_path: Path):
    v, f = unit_box()
    write_ply(tmp_path / "box.ply", v, f)
    got_v, got_f = load_truth(tmp_path / "box.ply")
    np.testing.assert_allclose(got_v, v, atol=1e-7)
    np.testing.assert_array_equal(got_f, f)


def test_load_truth_missing_file(tmp_path: Path):
    with pytest.raises(PipelineError, match=r"missing\.ply"):
        load_truth(tmp_path / "missing.ply")


def test_load_truth_not_a_ply(tmp_path: Path):
    path = tmp_path / "notes.ply"
    path.write_text("this is not a mesh\n")
    with pytest.raises(PipelineError, match=r"notes\.ply"):
        load_truth(path)


def test_load_truth_open_mesh(tmp_path: Path):
    v, f = icosphere(R)
    write_ply(tmp_path / "open.ply", v, f[5:])
    with pytest.raises(PipelineError, match=r"open\.ply.*open boundary edges"):
        load_truth(tmp_path / "open.ply")


def test_markdown_table_rows():
    v, f = unit_box()
    good = compare_meshes(v, f, v, f, n_samples=500, n_iou=500, mvp_samples=500)
    empty = compare_meshes(np.zeros((0, 3)), np.zeros((0, 3), int), v, f, n_samples=500,
                           n_iou=500, mvp_samples=500)
    lines = markdown_table([("self", good), ("blank", empty)]).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| mesh | Chamfer (cm)")
    assert lines[2].startswith("| self | 0.000 |")
    assert lines[3].startswith("| blank (no surface) | — |")

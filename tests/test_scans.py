"""Scans with holes, textured OBJ files and the winding-number sign against the exact one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from pipeline.errors import PipelineError
from pipeline.scans import boundary_edge_count, read_mesh, read_scan, scan_sign, weld
from pipeline.sdf import signed_distance


def capsule() -> tuple[np.ndarray, np.ndarray]:
    """A closed capsule, 1.2 m long and 0.3 m across: a limb-like closed scan."""
    mesh = trimesh.creation.capsule(height=0.9, radius=0.15, count=[32, 32])
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def punch(vertices: np.ndarray, faces: np.ndarray, centres: np.ndarray, radius: float
          ) -> np.ndarray:
    """The faces without those whose centroid lies within ``radius`` of any of ``centres``."""
    centroids = vertices[faces].mean(axis=1)
    gone = np.zeros(len(faces), dtype=bool)
    for centre in centres:
        gone |= np.linalg.norm(centroids - centre, axis=1) < radius
    return faces[~gone]


def riddled(faces: np.ndarray) -> np.ndarray:
    """Half of the faces, drawn at random: a scan too broken to enclose anything."""
    return faces[np.random.default_rng(0).random(len(faces)) < 0.5]


# Holes at both ends (a scan's soles and crown) and one on the side (an armpit).
HOLES = np.array([[0.0, 0.0, -0.6], [0.0, 0.0, 0.6], [0.15, 0.0, 0.1]])


def test_winding_sign_of_a_scan_with_holes_matches_the_closed_twin() -> None:
    v, f = capsule()
    holed = punch(v, f, HOLES, 0.05)
    assert boundary_edge_count(holed, len(v)) > 0
    rng = np.random.default_rng(0)
    points = rng.uniform([-0.3, -0.3, -0.8], [0.3, 0.3, 0.8], size=(20_000, 3))
    exact = signed_distance(v, f, points)
    ours = signed_distance(v, holed, points, closed=False)
    # Away from the holes the sign agrees; the magnitude is the distance to what is left of
    # the surface, the same near the surface wherever the nearest point was not in a hole.
    near_hole = np.min(np.linalg.norm(points[:, None] - HOLES[None], axis=2), axis=1) < 0.1
    agree = np.sign(exact[~near_hole]) == np.sign(ours[~near_hole])
    assert agree.mean() > 0.999
    band = ~near_hole & (np.abs(exact) < 0.03)
    np.testing.assert_allclose(np.abs(ours[band]), np.abs(exact[band]), atol=1e-5)
    assert (np.sign(exact) == np.sign(ours)).mean() > 0.99


def test_signed_distance_refuses_an_open_mesh_unless_told() -> None:
    v, f = capsule()
    with pytest.raises(PipelineError, match="open boundary edges"):
        signed_distance(v, punch(v, f, HOLES, 0.05), np.zeros((1, 3)))


def test_scan_sign_is_sure_with_small_holes_and_unsure_when_half_gone() -> None:
    v, f = capsule()
    closed = scan_sign(v, f)
    assert closed.closed and closed.unsure_share == 0.0
    holed = scan_sign(v, punch(v, f, HOLES, 0.05))
    assert not holed.closed and holed.boundary_edges > 0
    assert holed.unsure_share < 0.05
    assert scan_sign(v, riddled(f)).unsure_share > 0.5


def write_obj_with_seams(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """An OBJ whose every face has its own three vertices and texture coordinates (the
    worst case of seams), with a material library line, as capture software writes it."""
    lines = ["mtllib scan.mtl", "usemtl skin"]
    for i, face in enumerate(faces):
        lines += [f"v {x:.9f} {y:.9f} {z:.9f}" for x, y, z in vertices[face]]
        lines += [f"vt {0.1 * k:.3f} {0.05 * (i % 7):.3f}" for k in range(3)]
    for i in range(len(faces)):
        a = 3 * i + 1
        lines.append(f"f {a}/{a} {a + 1}/{a + 1} {a + 2}/{a + 2}")
    path.write_text("\n".join(lines) + "\n")


def test_read_mesh_welds_a_textured_obj_into_the_closed_surface(tmp_path: Path) -> None:
    v, f = capsule()
    write_obj_with_seams(tmp_path / "scan.obj", v, f)
    got_v, got_f = read_mesh(tmp_path / "scan.obj")
    assert len(got_v) == len(v) and len(got_f) == len(f)
    assert boundary_edge_count(got_f, len(got_v)) == 0
    area = trimesh.Trimesh(got_v, got_f, process=False).area
    assert area == pytest.approx(trimesh.Trimesh(v, f, process=False).area, rel=1e-6)
    _, _, sign = read_scan(tmp_path / "scan.obj")
    assert sign.closed


def test_weld_drops_collapsed_faces_and_unused_vertices() -> None:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1e-9, 0, 0], [5, 5, 5.0]])
    faces = np.array([[0, 1, 2], [0, 3, 2]])  # the second collapses when 3 welds onto 0
    v, f = weld(vertices, faces)
    np.testing.assert_array_equal(f, [[0, 1, 2]])
    np.testing.assert_allclose(v, vertices[:3])


def test_read_scan_refuses_an_open_scan_when_open_scans_are_off(tmp_path: Path) -> None:
    v, f = capsule()
    trimesh.Trimesh(v, punch(v, f, HOLES, 0.05), process=False).export(tmp_path / "s.ply")
    with pytest.raises(PipelineError, match=r"s\.ply.*open boundary edges"):
        read_scan(tmp_path / "s.ply", open_scans=False)
    *_, sign = read_scan(tmp_path / "s.ply")
    assert not sign.closed and sign.unsure_share < 0.05


def test_read_scan_names_a_scan_too_broken_to_sign(tmp_path: Path) -> None:
    v, f = capsule()
    trimesh.Trimesh(v, riddled(f), process=False).export(tmp_path / "broken.ply")
    with pytest.raises(PipelineError, match=r"broken\.ply.*too broken to sign"):
        read_scan(tmp_path / "broken.ply", max_unsure=0.05)


def test_read_scan_names_an_inside_out_open_scan(tmp_path: Path) -> None:
    v, f = capsule()
    holed = punch(v, f, HOLES, 0.05)[:, ::-1]
    trimesh.Trimesh(v, holed, process=False).export(tmp_path / "flipped.obj")
    with pytest.raises(PipelineError, match=r"flipped\.obj.*inside out"):
        read_scan(tmp_path / "flipped.obj")


@pytest.mark.parametrize("name, content, message", [
    ("missing.ply", None, "is missing"),
    ("scan.stl", b"solid x", "unknown format"),
    ("scan.obj", b"# nothing here\n", "no triangle mesh|cannot read"),
])
def test_read_mesh_names_the_file(tmp_path: Path, name: str, content: bytes | None,
                                  message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        read_mesh(path)

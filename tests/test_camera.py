"""Tests of the pinhole camera (pipeline.camera)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.camera import Camera, intrinsics_from_fov, look_at, ring_cameras

K0 = np.array([[800.0, 0.0, 319.5], [0.0, 810.0, 239.5], [0.0, 0.0, 1.0]])


def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def test_project_known_point() -> None:
    cam = Camera(K=K0, R=np.eye(3), t=np.array([0.0, 0.0, 2.0]), width=640, height=480)
    uv, depth = cam.project(np.array([[0.1, -0.2, 0.0], [0.0, 0.0, 0.0]]))
    assert depth == pytest.approx([2.0, 2.0])
    assert uv[0] == pytest.approx([800 * 0.05 + 319.5, 810 * -0.1 + 239.5])
    assert uv[1] == pytest.approx([319.5, 239.5])
    assert cam.center == pytest.approx([0.0, 0.0, -2.0])


def test_rays_and_backproject_are_consistent() -> None:
    cam = look_at((1.0, -3.0, 1.2), (0.0, 0.0, 0.9), K=K0, width=640, height=480)
    uv = np.array([[0.0, 0.0], [639.0, 479.0], [100.25, 300.5]])
    o, d = cam.rays(uv)
    assert np.linalg.norm(d, axis=1) == pytest.approx(np.ones(3))
    uv2, _ = cam.project(o + 2.5 * d)
    assert uv2 == pytest.approx(uv, abs=1e-9)
    pts = cam.backproject(uv, np.array([1.0, 2.0, 3.0]))
    uv3, z3 = cam.project(pts)
    assert uv3 == pytest.approx(uv, abs=1e-9) and z3 == pytest.approx([1.0, 2.0, 3.0])
    o_all, d_all = cam.rays()
    assert o_all.shape == d_all.shape == (640 * 480, 3)
    assert d_all[641] == pytest.approx(cam.rays(np.array([[1.0, 1.0]]))[1][0])  # row-major


def test_look_at_puts_target_at_principal_point_and_up_is_up() -> None:
    target = np.array([0.2, 0.1, 0.9])
    cam = look_at((2.0, -2.5, 1.5), target, K=K0, width=640, height=480)
    uv, depth = cam.project(np.stack([target, target + np.array([0.0, 0.0, 0.3])]))
    assert uv[0] == pytest.approx([K0[0, 2], K0[1, 2]], abs=1e-9)
    assert depth[0] == pytest.approx(np.linalg.norm(target - cam.center))
    assert uv[1, 1] < uv[0, 1]  # world up is image up (smaller v)
    rolled = look_at((2.0, -2.5, 1.5), target, K=K0, width=640, height=480, roll_deg=10.0)
    assert rolled.project(target[None])[0][0] == pytest.approx([319.5, 239.5], abs=1e-9)


def test_with_crop_maps_pixels() -> None:
    cam = look_at((0.0, -3.0, 1.0), (0.0, 0.0, 1.0), K=K0, width=640, height=480)
    pts = np.array([[0.1, 0.2, 1.3], [-0.3, 0.0, 0.6], [0.5, -0.1, 1.0]])
    uv, _ = cam.project(pts)
    for x0, y0, size, out in [(100, 50, 200, 100), (-60, -30, 400, 256), (500, 300, 300, 300)]:
        crop = cam.with_crop(x0, y0, size, out)
        assert (crop.width, crop.height) == (out, out)
        uv_c, _ = crop.project(pts)
        s = out / size
        assert uv_c == pytest.approx(s * (uv - [x0, y0] + 0.5) - 0.5, abs=1e-9)
    # pixel (x0, y0)'s top-left corner is the crop's top-left corner; same size -> shift
    crop = cam.with_crop(-10, 20, 64, 64)
    assert crop.project(pts)[0] == pytest.approx(uv - [-10, 20], abs=1e-9)
    # the centre of a 2x2 block becomes the centre of one pixel when halved
    half = cam.with_crop(0, 0, 480, 240)
    c = cam.backproject(np.array([[0.5, 0.5]]), np.array([2.0]))
    assert half.project(c)[0][0] == pytest.approx([0.0, 0.0], abs=1e-9)
    with pytest.raises(ValueError):
        cam.with_crop(0, 0, 0, 10)


def test_dict_round_trip_is_exact() -> None:
    cam = ring_cameras(np.random.default_rng(3), 8, 3.1, 7.0, 1234.5, 1280, 720, (0, 0, 0.9),
                       jitter={"distance_frac": 0.1, "roll_deg": 3, "target_m": 0.1})[5]
    d = json.loads(json.dumps(cam.to_dict()))
    back = Camera.from_dict(d)
    assert back == cam
    assert np.array_equal(back.R, cam.R) and np.array_equal(back.t, cam.t)
    assert isinstance(d["K"][0][0], float) and isinstance(d["width"], int)


@pytest.mark.parametrize("bad", [
    {"R": np.diag([1.0, 1.0, -1.0])},  # reflection
    {"R": np.eye(3) * 1.01},  # not orthonormal
    {"t": np.array([0.0, np.nan, 0.0])},
    {"K": np.where(np.eye(3) > 0, np.inf, 0.0)},
    {"K": np.diag([-5.0, 5.0, 1.0])},
    {"K": np.array([[5.0, 0, 1], [0, 5, 1], [0, 0, 2]])},
    {"width": 0},
    {"height": 2.5},
    {"t": np.zeros(4)},
])
def test_invalid_camera_raises(bad: dict) -> None:
    args = {"K": K0, "R": np.eye(3), "t": np.zeros(3), "width": 640, "height": 480} | bad
    with pytest.raises(ValueError):
        Camera(**args)


def test_camera_is_immutable() -> None:
    cam = Camera(K=K0, R=_rot("x", 30) @ _rot("z", 20), t=np.ones(3), width=640, height=480)
    with pytest.raises(ValueError):
        cam.K[0, 0] = 1.0  # read-only arrays
    with pytest.raises(AttributeError):
        cam.width = 3  # type: ignore[misc]


def test_ring_without_jitter_is_exact() -> None:
    target = np.array([0.0, 0.0, 0.9])
    cams = ring_cameras(np.random.default_rng(0), 8, 3.0, 10.0, 1000.0, 1280, 720, target,
                        start_deg=-90.0, jitter={})
    assert len(cams) == 8
    for i, cam in enumerate(cams):
        off = cam.center - target
        assert np.linalg.norm(off) == pytest.approx(3.0)
        assert np.rad2deg(np.arcsin(off[2] / 3.0)) == pytest.approx(10.0)
        az = np.rad2deg(np.arctan2(off[1], off[0]))
        assert (az - (-90.0 + 45.0 * i) + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=1e-9)
        assert cam.project(target[None])[0][0] == pytest.approx([639.5, 359.5], abs=1e-9)
        assert cam.fx == cam.fy == 1000.0
    first = cams[0].center - target
    second = cams[1].center - target
    cosang = first[:2] @ second[:2] / np.linalg.norm(first[:2]) / np.linalg.norm(second[:2])
    assert np.rad2deg(np.arccos(cosang)) == pytest.approx(45.0)


def test_ring_jitter_is_seeded_and_bounded() -> None:
    jitter = {"distance_frac": 0.1, "elevation_deg": 5.0, "target_m": 0.15, "focal_frac": 0.1,
              "roll_deg": 4.0, "azimuth_deg": 5.0}
    a = ring_cameras(np.random.default_rng(9), 8, 3.0, 5.0, 1000.0, 640, 480, (0, 0, 1),
                     jitter=jitter)
    b = ring_cameras(np.random.default_rng(9), 8, 3.0, 5.0, 1000.0, 640, 480, (0, 0, 1),
                     jitter=jitter)
    assert a == b
    for cam in a:
        d = np.linalg.norm(cam.center - [0, 0, 1])
        assert 2.7 - 1e-9 <= d <= 3.3 + 1e-9
        assert 900.0 - 1e-9 <= cam.fx <= 1100.0 + 1e-9
    assert len({round(c.fx, 6) for c in a}) > 1
    with pytest.raises(ValueError):
        ring_cameras(np.random.default_rng(0), jitter={"bogus": 1.0})


def test_intrinsics_from_fov() -> None:
    K = intrinsics_from_fov(90.0, 640, 480)
    assert K[0, 0] == pytest.approx(320.0) and K[1, 1] == pytest.approx(320.0)
    assert (K[0, 2], K[1, 2]) == (319.5, 239.5)
    with pytest.raises(ValueError):
        intrinsics_from_fov(180.0, 10, 10)

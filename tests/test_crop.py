"""Crop geometry: maps, cutting with zero padding, agreement with Camera.with_crop."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.camera import Camera, look_at
from pipeline.crop import CropBox, box_iou, mask_box, square_box


def test_square_box_centres_and_grows():
    crop = square_box(np.array([100, 50, 199, 249]), margin=0.1, out_size=512)
    assert crop.size == pytest.approx(200 * 1.2)
    centre = crop.to_image(np.array([[255.5, 255.5]]))[0]
    np.testing.assert_allclose(centre, [149.5, 149.5])


def test_maps_are_inverse_and_match_camera_crop():
    crop = CropBox(x0=-37.25, y0=12.5, size=300.0, out_size=512)
    uv = np.array([[0.0, 0.0], [10.5, 99.0], [639.0, 479.0]])
    np.testing.assert_allclose(crop.to_image(crop.to_crop(uv)), uv)
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    cam = look_at(np.array([0.0, -3.0, 1.0]), np.array([0.0, 0.0, 1.0]), K=K, width=640,
                  height=480)
    points = np.array([[0.1, 0.2, 1.3], [-0.3, 0.0, 0.5]])
    cropped = cam.with_crop(crop.x0, crop.y0, crop.size, crop.out_size)
    np.testing.assert_allclose(cropped.project(points)[0], crop.to_crop(cam.project(points)[0]))
    assert isinstance(cropped, Camera)


def test_cut_pads_with_zeros_and_places_pixels():
    image = np.zeros((40, 60, 3), np.uint8)
    image[10, 20] = 255
    crop = CropBox(x0=-10.0, y0=0.0, size=40.0, out_size=40)  # scale 1, shifted 10 px left
    out = crop.cut(image, resample="nearest")
    assert out.shape == (40, 40, 3)
    assert (out[:, :10] == 0).all()  # outside the photo
    assert tuple(np.argwhere(out[..., 0] == 255)[0]) == (10, 30)
    np.testing.assert_allclose(crop.to_crop(np.array([[20.0, 10.0]])), [[30.0, 10.0]])


def test_box_helpers():
    assert box_iou(np.array([0, 0, 9, 9]), np.array([0, 0, 9, 9])) == 1.0
    assert box_iou(np.array([0, 0, 9, 9]), np.array([5, 0, 14, 9])) == pytest.approx(50 / 150)
    mask = np.zeros((5, 5), bool)
    assert mask_box(mask) is None
    mask[1:3, 2:5] = True
    np.testing.assert_array_equal(mask_box(mask), [2, 1, 4, 2])
    with pytest.raises(ValueError):
        CropBox(0.0, 0.0, 0.0, 10)

"""DensePose segmenter: pasting part-index maps, choosing the instance, options and errors.

detectron2 / DensePose cannot be installed here (not on PyPI; built from git in
envs/densepose.yaml), so the model itself is not run; everything around it is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.backends import BackendUnavailable, make_backend
from pipeline.backends.densepose import (
    DensePoseOptions,
    DensePoseSegmenter,
    iuv_to_mask,
    merge_instances,
)
from pipeline.errors import PipelineError

REPO = Path(__file__).resolve().parents[1]
HAVE_DETECTRON2 = importlib.util.find_spec("detectron2") is not None


def test_iuv_to_mask_box_sized_map_is_pasted_exactly():
    labels = np.zeros((4, 6), dtype=np.int64)
    labels[1:3, 2:5] = 7
    labels[0, 0] = 24
    mask = iuv_to_mask(labels, [10, 20, 15, 23], (40, 30, 3))
    assert mask.shape == (40, 30) and mask.dtype == np.float32
    expected = np.zeros((40, 30), np.float32)
    expected[20:24, 10:16] = labels > 0
    np.testing.assert_array_equal(mask, expected)


def test_iuv_to_mask_resamples_by_nearest_neighbour():
    labels = np.array([[1, 0], [0, 2]])
    mask = iuv_to_mask(labels, [0, 0, 3, 3], (4, 4))  # 2x2 map over a 4x4 box
    np.testing.assert_array_equal(mask, np.kron(labels > 0, np.ones((2, 2))))
    big = np.kron(np.array([[3, 0], [0, 0]]), np.ones((5, 5), dtype=np.int64))  # 10x10 map
    mask = iuv_to_mask(big, [1, 1, 2, 2], (4, 4))  # down to 2x2 pixels
    expected = np.zeros((4, 4), np.float32)
    expected[1, 1] = 1
    np.testing.assert_array_equal(mask, expected)


def test_iuv_to_mask_cuts_the_box_at_the_image_border():
    labels = np.ones((10, 10), dtype=np.int64)
    mask = iuv_to_mask(labels, [-5, -5, 4, 4], (8, 8))
    expected = np.zeros((8, 8), np.float32)
    expected[:5, :5] = 1
    np.testing.assert_array_equal(mask, expected)
    assert iuv_to_mask(labels, [20, 20, 29, 29], (8, 8)).sum() == 0


def test_iuv_to_mask_fractional_box_covers_pixel_centres_inside():
    # edge extent [2.0, 5.0) in x: pixel centres 2, 3, 4; in y [0.9, 2.9): 1, 2
    mask = iuv_to_mask(np.ones((3, 3), dtype=np.int64), [2.5, 1.4, 4.5, 2.4], (5, 8))
    assert set(zip(*np.nonzero(mask), strict=True)) == {(r, c) for r in (1, 2) for c in (2, 3, 4)}


@pytest.mark.parametrize("labels, box", [(np.zeros((0, 3)), [0, 0, 1, 1]),
                                         (np.zeros(3), [0, 0, 1, 1]),
                                         (np.ones((2, 2)), [3, 0, 1, 1]),
                                         (np.ones((2, 2)), [0, 0, np.nan, 1])])
def test_iuv_to_mask_rejects_bad_input(labels, box):
    with pytest.raises(ValueError):
        iuv_to_mask(labels, box, (4, 4))


def _masks():
    small = np.zeros((6, 6), np.float32)
    small[0, 0] = 1
    large = np.zeros((6, 6), np.float32)
    large[2:6, 2:6] = 1
    return small, large


def test_merge_instances_by_score_and_by_area():
    small, large = _masks()
    np.testing.assert_array_equal(merge_instances([small, large], [0.9, 0.6], (6, 6)), small)
    np.testing.assert_array_equal(
        merge_instances([small, large], [0.9, 0.6], (6, 6), rule="area"), large)
    # ties: the other criterion decides
    np.testing.assert_array_equal(merge_instances([small, large], [0.7, 0.7], (6, 6)), large)
    np.testing.assert_array_equal(
        merge_instances([large, large * 1.0], [0.5, 0.8], (6, 6), rule="area"), large)


def test_merge_instances_empty_and_errors():
    empty = merge_instances([], [], (5, 7, 3))
    assert empty.shape == (5, 7) and empty.dtype == np.float32 and not empty.any()
    small, large = _masks()
    with pytest.raises(ValueError, match="rule"):
        merge_instances([small], [1.0], (6, 6), rule="union")
    with pytest.raises(ValueError, match="scores"):
        merge_instances([small, large], [1.0], (6, 6))
    with pytest.raises(ValueError, match="does not match"):
        merge_instances([small], [1.0], (5, 6))


def test_segment_pastes_and_keeps_the_best_instance():
    segmenter = object.__new__(DensePoseSegmenter)  # the model part is replaced
    near = np.full((3, 3), 5)
    far = np.full((2, 2), 1)
    segmenter.instances = lambda image: [(far, np.array([0.0, 0.0, 1.0, 1.0]), 0.6),
                                         (near, np.array([4.0, 4.0, 6.0, 6.0]), 0.95)]
    mask = segmenter.segment(np.zeros((8, 8, 3), np.uint8))
    expected = np.zeros((8, 8), np.float32)
    expected[4:7, 4:7] = 1
    np.testing.assert_array_equal(mask, expected)


def test_options():
    assert DensePoseOptions.from_mapping({}) == DensePoseOptions()
    assert DensePoseOptions.from_mapping({"device": None}).device == "cpu"
    with pytest.raises(PipelineError, match="unknown densepose option"):
        DensePoseOptions.from_mapping({"weights": "x"})
    with pytest.raises(PipelineError, match="score_threshold"):
        DensePoseOptions.from_mapping({"score_threshold": 1.5})
    with pytest.raises(PipelineError, match="device"):
        DensePoseOptions.from_mapping({"device": "tpu"})


def test_missing_files_are_named(tmp_path):
    with pytest.raises(BackendUnavailable, match="'config' is not set"):
        make_backend("mask", "densepose", {})
    config = tmp_path / "densepose_rcnn_R_50_FPN_s1x.yaml"
    config.write_text("MODEL: {}\n")
    with pytest.raises(BackendUnavailable, match="'checkpoint' is not set"):
        make_backend("mask", "densepose", {"config": str(config)})
    with pytest.raises(BackendUnavailable, match=r"nope\.pth does not exist"):
        make_backend("mask", "densepose", {"config": str(config),
                                           "checkpoint": str(tmp_path / "nope.pth")})


@pytest.mark.skipif(HAVE_DETECTRON2, reason="detectron2 is installed")
def test_missing_detectron2_says_how_to_install(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("MODEL: {}\n")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    with pytest.raises(BackendUnavailable, match=r"detectron2.*envs/densepose\.yaml.*git"):
        make_backend("mask", "densepose", {"config": str(config), "checkpoint": str(weights)})


def test_env_file_installs_detectron2_and_densepose_from_git():
    env = yaml.safe_load((REPO / "envs" / "densepose.yaml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "torch==2.13.0" in pip and "torchvision==0.28.0" in pip and "-e .." in pip
    script = (REPO / "envs" / "densepose.post-deploy.sh").read_text()
    assert "--no-build-isolation" in script
    assert "github.com/facebookresearch/detectron2.git@" in script
    assert "#subdirectory=projects/DensePose" in script

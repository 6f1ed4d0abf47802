"""Mask stage: segmentation → trimap → matte, outputs and their agreement with the truth."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline.crop import CropBox
from pipeline.errors import PipelineError
from pipeline.imageio import read_gray
from pipeline.mask import MaskParams, mask_action


@pytest.fixture
def crops(oracle_crops):
    return oracle_crops


def _truth_crop(subject, crops, view):
    record = json.loads((crops / "crop.json").read_text())["views"][view]
    mask = read_gray(subject["truth"] / "act00" / f"{view}_mask.png")
    return CropBox.from_dict(record["crop"]).cut(mask, resample="nearest") > 127


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_oracle_without_matting_is_the_truth(synthetic_subject, crops, tmp_path):
    result = mask_action(crops=crops, action="act00", truth=synthetic_subject["truth"],
                         output=tmp_path / "m", params=MaskParams("oracle", "none", 4, {}, {}))
    assert result["oracle"] is True
    for view in ("cam0", "cam1", "cam2"):
        alpha = read_gray(tmp_path / "m" / f"{view}.png")
        assert set(np.unique(alpha)) <= {0, 255}
        assert _iou(alpha > 127, _truth_crop(synthetic_subject, crops, view)) > 0.95
        masked = np.asarray(Image.open(tmp_path / "m" / f"{view}_masked.png"))
        assert (masked[alpha == 0] == 0).all() and masked[alpha == 255].any()
        with Image.open(tmp_path / "m" / f"{view}_coarse.png") as image:
            assert image.text["pixel2isdf:backend"] == "oracle"
    assert result["views"]["cam0"]["unknown_pixels"] > 0


def test_matting_keeps_the_mask(synthetic_subject, crops, tmp_path):
    mask_action(crops=crops, action="act00", truth=synthetic_subject["truth"],
                output=tmp_path / "m", params=MaskParams("oracle", "pymatting", 3, {}, {}))
    for view in ("cam0", "cam2"):
        alpha = read_gray(tmp_path / "m" / f"{view}.png")
        assert _iou(alpha > 127, _truth_crop(synthetic_subject, crops, view)) > 0.95


def _with_masks(crops, tmp_path, masks):
    """A copy of the detect folder whose records name ``masks[view]`` (as detect writes
    them from a manifest made with ``data.layout.masks``); a view absent has no mask."""
    copy = tmp_path / "crop"
    shutil.copytree(crops, copy)
    detected = json.loads((copy / "crop.json").read_text())
    for view, record in detected["views"].items():
        if view in masks:
            record["mask"] = str(masks[view])
    (copy / "crop.json").write_text(json.dumps(detected))
    return copy


def test_given_masks_of_16_bits_are_the_truth(synthetic_subject, crops, tmp_path):
    """``mask.backend: given``: a data set's own mask per photo, here 16-bit PNGs, found
    through the detect record's ``mask`` (data.layout.masks, via the manifest)."""
    masks = {}
    for view in ("cam0", "cam1", "cam2"):
        mask = read_gray(synthetic_subject["truth"] / "act00" / f"{view}_mask.png")
        wide = (mask.astype(np.uint32) * 257).astype(np.uint16)
        masks[view] = tmp_path / "masks" / "act00" / f"{view}.png"
        masks[view].parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(wide).save(masks[view])
    result = mask_action(crops=_with_masks(crops, tmp_path, masks), action="act00",
                         truth=synthetic_subject["truth"], output=tmp_path / "m",
                         params=MaskParams("given", "none", 4, {}, {}))
    assert result["backend"] == "given" and result["oracle"] is False
    for view in ("cam0", "cam1", "cam2"):
        alpha = read_gray(tmp_path / "m" / f"{view}.png")
        assert _iou(alpha > 127, _truth_crop(synthetic_subject, crops, view)) > 0.95


def test_a_missing_given_mask_is_named(synthetic_subject, crops, tmp_path):
    masks = {v: tmp_path / "nowhere" / f"{v}.png" for v in ("cam0", "cam1", "cam2")}
    with pytest.raises(PipelineError,
                       match=r"nowhere/cam\d\.png is missing.*data\.layout\.masks"):
        mask_action(crops=_with_masks(crops, tmp_path, masks), action="act00",
                    truth=synthetic_subject["truth"], output=tmp_path / "m",
                    params=MaskParams("given", "none", 4, {}, {}))
    assert not (tmp_path / "m").exists()


def test_given_without_layout_masks_names_view_and_setting(synthetic_subject, crops, tmp_path):
    """A layout without masks (data.layout.masks null): the records name none."""
    with pytest.raises(PipelineError, match=r"s000/act00/cam\d: .*data\.layout\.masks"):
        mask_action(crops=crops, action="act00", truth=synthetic_subject["truth"],
                    output=tmp_path / "m", params=MaskParams("given", "none", 4, {}, {}))
    assert not (tmp_path / "m").exists()

"""VarifocalNet (mmdet) person detector: the production load path with random weights.

Needs mmdet 3.3.0 + mmcv 2.1.0 (built with ops, see README "Optional backends"). Without them
the mmdet-dependent tests skip with the reason shown by ``-ra``, except under ``CI=true``
(CI installs mmdet), where they fail.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from pipeline.backends import BackendUnavailable, Detection, make_backend
from pipeline.backends.mmdet_vfnet import (
    VFNetOptions,
    drop_pretrained_init,
    edge_boxes_to_inclusive,
    select_persons,
)
from pipeline.errors import PipelineError


def _require_mmdet() -> None:
    try:
        import mmcv.ops  # noqa: F401
        import mmdet  # noqa: F401
    except (ImportError, AssertionError) as error:
        message = (f"mmdet 3.3.0 / mmcv 2.1.0 with ops not importable ({error}); "
                   'install them as README "Optional backends" says')
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)


@pytest.fixture(scope="module")
def vfnet_state(tmp_path_factory):
    """A VarifocalNet R50 built from mmdet's bundled config with random weights (the person
    class biased up), saved as a plain state dict: ``(path, state_dict)``."""
    _require_mmdet()
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from pipeline.backends.mmdet_vfnet import default_config_path

    cfg = Config.fromfile(str(default_config_path()))
    drop_pretrained_init(cfg.model)
    init_default_scope("mmdet")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    with torch.no_grad():  # random weights, but class 0 (person) wins: persons come out
        model.bbox_head.vfnet_cls.bias.fill_(-4.0)
        model.bbox_head.vfnet_cls.bias[0] = 4.0
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("vfnet") / "vfnet_random.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def detector(vfnet_state):
    path, _ = vfnet_state
    return make_backend("detect", "mmdet", {"checkpoint": str(path), "score_threshold": 0.0})


def _image(height: int = 240, width: int = 320) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- pure parts (no mmdet needed) -------------------------------------------------------------

def test_select_persons_filters_sorts_and_converts_boxes():
    boxes = np.array([[10, 20, 50, 100], [0, 0, 30, 30], [5, 5, 15, 15], [100, 50, 400, 300],
                      [1, 1, 2, 2]], dtype=np.float64)
    scores = np.array([0.5, 0.95, 0.9, 0.8, 0.1])
    labels = np.array([0, 2, 0, 0, 0])
    found = select_persons(boxes, scores, labels, (240, 320, 3), score_threshold=0.3)
    assert all(isinstance(d, Detection) for d in found)
    assert [d.score for d in found] == pytest.approx([0.9, 0.8, 0.5])
    np.testing.assert_allclose(found[0].box_xyxy, [5, 5, 14, 14])
    np.testing.assert_allclose(found[1].box_xyxy, [100, 50, 319, 239])  # clipped to the photo
    np.testing.assert_allclose(found[2].box_xyxy, [10, 20, 49, 99])
    assert select_persons(np.zeros((0, 4)), [], [], (10, 10), 0.3) == []


def test_edge_boxes_never_invert():
    np.testing.assert_allclose(edge_boxes_to_inclusive([[3.2, 4.0, 3.6, 4.5]], (10, 10)),
                               [[3.2, 4.0, 3.2, 4.0]])


def test_drop_pretrained_init_everywhere():
    cfg = {"backbone": {"init_cfg": {"type": "Pretrained", "checkpoint": "torchvision://x"}},
           "neck": {"init_cfg": [{"type": "Xavier"}, {"type": "Pretrained"}]},
           "head": {"init_cfg": {"type": "Normal"}, "pretrained": "open-mmlab://y"}}
    drop_pretrained_init(cfg)
    assert cfg["backbone"]["init_cfg"] is None and cfg["neck"]["init_cfg"] is None
    assert cfg["head"] == {"init_cfg": {"type": "Normal"}, "pretrained": None}


def test_options_and_missing_checkpoint(tmp_path):
    assert VFNetOptions.from_mapping({"config": None}) == VFNetOptions()
    with pytest.raises(PipelineError, match="unknown mmdet option"):
        VFNetOptions.from_mapping({"weights": "x"})
    with pytest.raises(PipelineError, match="score_threshold"):
        VFNetOptions.from_mapping({"score_threshold": -0.1})
    with pytest.raises(BackendUnavailable, match="'checkpoint' is not set"):
        make_backend("detect", "mmdet", {})
    with pytest.raises(BackendUnavailable, match=r"vfnet\.pth does not exist"):
        make_backend("detect", "mmdet", {"checkpoint": str(tmp_path / "vfnet.pth")})


@pytest.mark.skipif(importlib.util.find_spec("mmdet") is not None, reason="mmdet is installed")
def test_missing_mmdet_names_the_recipe(tmp_path):
    weights = tmp_path / "vfnet.pth"
    weights.write_bytes(b"x")
    recipe = r"Optional backends.*MMCV_WITH_OPS=1.*mmcv==2\.1\.0"
    with pytest.raises(BackendUnavailable, match=recipe):
        make_backend("detect", "mmdet", {"checkpoint": str(weights)})


# --- with mmdet: the production path ----------------------------------------------------------

def test_random_weights_detect(detector):
    image = _image()
    _, scores, labels = detector.raw(image)
    found = detector.detect(image)
    assert 0 < len(found) == int(np.sum(labels == 0))
    np.testing.assert_allclose([d.score for d in found], np.sort(scores[labels == 0])[::-1],
                               rtol=1e-6)
    assert all(isinstance(d, Detection) and d.box_xyxy.shape == (4,) for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    for d in found:
        x0, y0, x1, y1 = d.box_xyxy
        assert 0 <= x0 <= x1 <= 319 and 0 <= y0 <= y1 <= 239


def test_raw_output_selection(detector, monkeypatch):
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    seen = {}

    def fake_test_step(batch):
        seen["inputs"] = batch["inputs"][0]
        sample = DetDataSample()
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor([[10.0, 10.0, 60.0, 120.0], [100.0, 20.0, 180.0, 200.0],
                                 [0.0, 0.0, 40.0, 40.0]]),
            scores=torch.tensor([0.55, 0.92, 0.99]), labels=torch.tensor([0, 0, 2]))
        return [sample]

    monkeypatch.setattr(detector._model, "test_step", fake_test_step)
    image = _image()
    image[..., 0] = 255  # pure red photo -> mmdet gets BGR, red last
    image[..., 1:] = 0
    found = detector.detect(image)
    assert [d.score for d in found] == pytest.approx([0.92, 0.55])
    np.testing.assert_allclose(found[0].box_xyxy, [100, 20, 179, 199])
    np.testing.assert_allclose(found[1].box_xyxy, [10, 10, 59, 119])
    inputs = seen["inputs"].numpy()  # (3, h, w) uint8 after the test pipeline, BGR
    assert inputs[2].mean() > 200 and inputs[0].max() == 0


def test_pickled_checkpoint_is_refused(vfnet_state, tmp_path):
    import argparse

    import torch

    _, state = vfnet_state
    path = tmp_path / "pickled.pth"
    meta = argparse.Namespace(classes=("person",))  # a non-tensor object: needs pickle
    torch.save({"state_dict": state, "meta": meta}, path)
    with pytest.raises(BackendUnavailable, match=r"pickled\.pth.*weights_only=True.*pickle"):
        make_backend("detect", "mmdet", {"checkpoint": str(path)})


def test_wrong_classes_and_wrong_weights_are_refused(vfnet_state, tmp_path):
    import torch

    _, state = vfnet_state
    path = tmp_path / "cars.pth"
    torch.save({"state_dict": state, "meta": {"dataset_meta": {"classes": ["car", "person"]}}},
               path)
    with pytest.raises(BackendUnavailable, match="class 0 must be 'person'"):
        make_backend("detect", "mmdet", {"checkpoint": str(path)})
    partial = dict(state)
    partial.pop(next(iter(partial)))
    torch.save(partial, path)
    with pytest.raises(BackendUnavailable, match="do not fit"):
        make_backend("detect", "mmdet", {"checkpoint": str(path)})

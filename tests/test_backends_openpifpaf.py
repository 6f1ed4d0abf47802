"""OpenPifPaf keypoints: mapping its COCO-17 output, checkpoint rules, the missing package.

openpifpaf needs torchvision, which the CPU torch here lacks: the real predictor is tested only
where openpifpaf imports (skipped here, with the reason shown by ``-ra``).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pipeline.backends import BackendUnavailable, PersonKeypoints, make_backend
from pipeline.backends.openpifpaf_backend import (
    PifPafOptions,
    annotation_to_person,
    annotations_to_people,
    resolve_checkpoint,
)
from pipeline.errors import PipelineError
from pipeline.skeleton import BODY25, COCO17

HAVE_OPENPIFPAF = importlib.util.find_spec("openpifpaf") is not None


def _coco(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0, 320, 17), rng.uniform(0, 240, 17),
                            rng.uniform(0.05, 1.0, 17)]).astype(np.float32)


def test_annotation_to_person_maps_coco17_and_body25():
    data = _coco(0)
    data[COCO17.index("left_wrist")] = [12.0, 30.0, 0.0]  # not found: coordinates dropped
    person = annotation_to_person(data, 0.83)
    assert isinstance(person, PersonKeypoints)
    assert person.coco17.shape == (17, 3) and person.body25.shape == (25, 3)
    assert person.score == pytest.approx(0.83)
    np.testing.assert_allclose(np.delete(person.coco17, COCO17.index("left_wrist"), 0),
                               np.delete(data, COCO17.index("left_wrist"), 0), rtol=1e-6)
    assert np.all(person.coco17[COCO17.index("left_wrist")] == 0)
    for name in ("nose", "right_shoulder", "left_ankle", "right_ear"):
        np.testing.assert_allclose(person.body25[BODY25.index(name)],
                                   person.coco17[COCO17.index(name)])
    ls, rs = person.coco17[COCO17.index("left_shoulder")], person.coco17[
        COCO17.index("right_shoulder")]
    np.testing.assert_allclose(person.body25[BODY25.index("neck")][:2], (ls[:2] + rs[:2]) / 2)
    assert np.all(person.body25[19:] == 0)  # no feet from COCO-17
    assert np.all(person.body25[BODY25.index("left_wrist")] == 0)


def test_annotation_confidences_and_score_are_clipped():
    data = _coco(1)
    data[0, 2] = 1.7
    data[1, 2] = -0.2
    data[2, 2] = np.nan
    person = annotation_to_person(data, 1.4)
    assert person.coco17[0, 2] == 1.0
    assert np.all(person.coco17[1] == 0) and np.all(person.coco17[2] == 0)
    assert person.score == 1.0
    with pytest.raises(ValueError, match=r"\(17, 3\)"):
        annotation_to_person(np.zeros((18, 3)), 0.5)


def test_annotations_to_people_sorted_by_score():
    people = annotations_to_people([(_coco(2), 0.4), (_coco(3), 0.9), (_coco(4), 0.4)])
    assert [p.score for p in people] == pytest.approx([0.9, 0.4, 0.4])
    np.testing.assert_allclose(people[1].coco17, _coco(2), rtol=1e-6)  # ties keep the order
    assert annotations_to_people([]) == []


def test_options():
    assert PifPafOptions.from_mapping({"checkpoint": None}) == PifPafOptions()
    with pytest.raises(PipelineError, match="unknown openpifpaf option"):
        PifPafOptions.from_mapping({"long_edge": 641})
    with pytest.raises(PipelineError, match="device"):
        PifPafOptions.from_mapping({"device": "gpu"})


def test_checkpoint_names_are_refused_unless_cached(tmp_path):
    cached_file = tmp_path / "shufflenetv2k16-210820.pkl"
    cached_file.write_bytes(b"x")
    cache = {"shufflenetv2k16": str(cached_file)}
    assert resolve_checkpoint("shufflenetv2k16", cache.get) == cached_file
    with pytest.raises(BackendUnavailable, match="never downloads"):
        resolve_checkpoint("shufflenetv2k30", cache.get)
    with pytest.raises(BackendUnavailable, match=r"missing\.pt does not exist"):
        resolve_checkpoint(str(tmp_path / "missing.pt"), cache.get)
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    assert resolve_checkpoint(str(weights), cache.get) == weights
    with pytest.raises(BackendUnavailable, match="'checkpoint' is not set"):
        resolve_checkpoint(None, cache.get)


def test_unset_checkpoint_is_refused_before_importing():
    with pytest.raises(BackendUnavailable, match="'checkpoint' is not set"):
        make_backend("keypoints", "openpifpaf", {})


@pytest.mark.skipif(HAVE_OPENPIFPAF, reason="openpifpaf is installed")
def test_missing_openpifpaf_says_how_to_install(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    with pytest.raises(BackendUnavailable, match=r"torchvision.*CUDA.*--no-deps openpifpaf"):
        make_backend("keypoints", "openpifpaf", {"checkpoint": str(weights)})


def test_real_predictor_with_random_weights(tmp_path):
    openpifpaf = pytest.importorskip(
        "openpifpaf", reason="openpifpaf needs torchvision (CUDA torch build); not installed")
    import torch

    heads = openpifpaf.plugins.coco.CocoKp().head_metas
    model = openpifpaf.network.Factory(base_name="shufflenetv2k16").from_scratch(heads)
    path = tmp_path / "k16.pt"
    torch.save({"state_dict": model.state_dict(), "basenet": "shufflenetv2k16"}, path)
    detector = make_backend("keypoints", "openpifpaf", {"checkpoint": str(path)})
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    people = detector.keypoints(image)
    assert all(isinstance(p, PersonKeypoints) and p.coco17.shape == (17, 3) for p in people)
    assert [p.score for p in people] == sorted((p.score for p in people), reverse=True)
    pickled = tmp_path / "whole.pkl"
    torch.save({"model": model, "epoch": 0}, pickled)
    with pytest.raises(BackendUnavailable, match="weights_only"):
        make_backend("keypoints", "openpifpaf", {"checkpoint": str(pickled)})

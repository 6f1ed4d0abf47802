"""Torch datasets over the cache: shapes, determinism, view choice, temporal windows, workers."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from models.cache_io import load_index, open_cache
from models.data import Pixel2ISDFDataset, distinct_view_counts, select_views
from models.pifu.data import PifuDataset, balanced_draw, clip_frames, temporal_rows
from pipeline.errors import PipelineError
from tests.cache_fakes import CLOTHED_R, offset
from tests.cache_fakes import build as build_cache

VIEWS = ("cam0", "cam1", "cam2")
# Subject a: a clip of 3 frames × 3 views; frame 1/cam1 has no person; frame 0/cam2 and
# frame 2/cam0 are flagged. Subject b: a clip of 3 frames × 2 views.
SUBJECT_A = {"n_actions": 3, "views": VIEWS, "missing": ((1, "cam1"),),
             "flagged": ((0, "cam2"), (2, "cam0")), "clip": "walk"}
SUBJECT_B = {"n_actions": 3, "views": ("cam0", "cam1"), "seed": 1, "clip": "run"}
F0, F1, F2 = "walk_f00", "walk_f01", "walk_f02"


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("datasets")
    return [build_cache(root / "a", **SUBJECT_A), build_cache(root / "b", **SUBJECT_B)]


def equal(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> bool:
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_pixel2isdf_item(caches: list[Path]) -> None:
    data = Pixel2ISDFDataset(caches, n_views=4, n_points=500, seed=1, samples_per_subject=3)
    assert len(data) == 6
    item = data[0]
    shapes = {k: tuple(v.shape) for k, v in item.items()}
    n_body = shapes["canonical_vertices"][0]
    assert shapes == {"images": (4, 3, 64, 64), "alphas": (4, 1, 64, 64),
                      "camera_K": (4, 3, 3), "camera_R": (4, 3, 3), "camera_t": (4, 3),
                      "posed_vertices": (4, n_body, 3), "canonical_vertices": (n_body, 3),
                      "points": (500, 3), "sdf": (500,), "view_index": (4,),
                      "action_index": (4,), "subject_index": ()}
    assert item["images"].dtype == torch.float32 and item["images"].is_contiguous()
    assert item["images"].min() >= 0 and item["images"].max() <= 1
    rows = item["view_index"].numpy()
    assert len(set(rows.tolist())) == 4  # without replacement
    with open_cache(caches[0]) as h5:
        for k, r in enumerate(rows):
            np.testing.assert_allclose(item["images"][k].permute(1, 2, 0).numpy(),
                                       h5["images"][r] / 255.0, atol=1e-6)
            np.testing.assert_array_equal(item["camera_t"][k].numpy(), h5["camera/t"][r])
            action = h5["action_index"][r]
            assert item["action_index"][k] == action
            np.testing.assert_array_equal(item["posed_vertices"][k].numpy(),
                                          h5["posed_vertices"][action])
    # the drawn points are pool entries with their signed distances (negative inside)
    radius = item["points"].norm(dim=1)
    np.testing.assert_allclose(item["sdf"].numpy(), (radius - CLOTHED_R).numpy(), atol=0.01)
    assert data[3]["subject_index"] == 1


def test_pixel2isdf_views_ok_only_across_actions(caches: list[Path]) -> None:
    data = Pixel2ISDFDataset(caches[:1], n_views=4, n_points=10, samples_per_subject=60)
    index = load_index(caches[0])
    flagged = set(np.flatnonzero(~index.view_ok).tolist())
    assert len(flagged) == 2
    seen_rows, mixed = set(), 0
    for i in range(len(data)):
        item = data[i]
        seen_rows |= set(item["view_index"].tolist())
        mixed += len(set(item["action_index"].tolist())) > 1
    assert not seen_rows & flagged
    assert seen_rows == set(index.ok_views().tolist())
    assert mixed == len(data)  # 4 views never fit in one action of at most 3
    with pytest.raises(PipelineError, match="fewer than n_views=7"):
        Pixel2ISDFDataset(caches[:1], n_views=7)


def test_distinct_view_counts_divide_n_views() -> None:
    np.testing.assert_array_equal(distinct_view_counts(4, 1), [1, 2, 4])
    np.testing.assert_array_equal(distinct_view_counts(6, 2), [2, 3, 6])
    np.testing.assert_array_equal(distinct_view_counts(4, 4), [4])
    with pytest.raises(ValueError, match="min_views"):
        distinct_view_counts(4, 5)


def test_min_views_repeats_fewer_distinct_views(caches: list[Path]) -> None:
    data = Pixel2ISDFDataset(caches[:1], n_views=4, n_points=10, samples_per_subject=40,
                             min_views=1)
    counts = set()
    for i in range(len(data)):
        rows = data[i]["view_index"].tolist()
        k = len(set(rows))
        counts.add(k)
        assert rows == rows[:k] * (4 // k)  # each distinct view repeated equally often
    assert counts == {1, 2, 4}
    # without min_views the items are those of before (no extra draw)
    full = Pixel2ISDFDataset(caches[:1], n_views=4, n_points=10, samples_per_subject=40)
    same = Pixel2ISDFDataset(caches[:1], n_views=4, n_points=10, samples_per_subject=40,
                             min_views=4)
    assert all(equal(full[i], same[i]) for i in (0, 5, 17))


def test_deterministic_given_seed(caches: list[Path]) -> None:
    one = Pixel2ISDFDataset(caches, n_points=50, seed=5, samples_per_subject=4)
    two = Pixel2ISDFDataset(caches, n_points=50, seed=5, samples_per_subject=4)
    assert all(equal(one[i], two[i]) for i in (3, 0, 7))
    other = Pixel2ISDFDataset(caches, n_points=50, seed=6, samples_per_subject=4)
    assert not equal(one[0], other[0])
    pifu = PifuDataset(caches, n_points=20, seed=5, temporal=True)
    assert equal(pifu[2], PifuDataset(caches, n_points=20, seed=5, temporal=True)[2])


def test_pifu_item(caches: list[Path]) -> None:
    data = PifuDataset(caches, n_points=300)
    index = load_index(caches[0])
    assert len(data) == int(index.view_ok.sum()) + 6  # subject b: 3 frames × 2 views, all ok
    item = data[1]
    assert {k: tuple(v.shape) for k, v in item.items()} == {
        "images": (3, 64, 64), "alphas": (1, 64, 64), "camera_K": (3, 3), "camera_R": (3, 3),
        "camera_t": (3,), "points": (300, 3), "inside": (300,), "body_centre": (3,),
        "view_index": (), "action_index": (), "subject_index": ()}
    a = int(item["action_index"])
    assert item["inside"].sum() == 150  # balanced, as PIFu
    np.testing.assert_allclose(item["body_centre"].numpy(), offset(a), atol=1e-6)
    r = (item["points"].numpy() - offset(a)).astype(np.float64)
    radius = np.linalg.norm(r, axis=1)
    clear = np.abs(radius - CLOTHED_R) > 0.01
    np.testing.assert_array_equal(item["inside"].numpy()[clear] == 1, radius[clear] < CLOTHED_R)
    drawn = {int(data[i]["view_index"]) for i in range(len(data)) if data[i]["subject_index"] == 0}
    assert drawn == set(index.ok_views().tolist())


def test_temporal_windows_clamp(caches: list[Path]) -> None:
    index = load_index(caches[0])
    row = {(str(index.actions[a]), str(v)): r
           for r, (a, v) in enumerate(zip(index.action_index, index.view_names, strict=True))}
    # first frame: clamped to itself before; F1/cam1 is missing → replaced by the centre
    assert temporal_rows(index, row[F0, "cam1"], 3) == [row[F0, "cam1"]] * 3
    assert temporal_rows(index, row[F0, "cam0"], 3) == [
        row[F0, "cam0"], row[F0, "cam0"], row[F1, "cam0"]]
    # last frame: F2/cam0 is flagged, so it never is a centre; F2/cam2 clamps after
    assert temporal_rows(index, row[F2, "cam2"], 3) == [
        row[F1, "cam2"], row[F2, "cam2"], row[F2, "cam2"]]
    # a flagged neighbour (F2/cam0) is replaced by the nearest frame towards the centre
    assert temporal_rows(index, row[F1, "cam0"], 3) == [
        row[F0, "cam0"], row[F1, "cam0"], row[F1, "cam0"]]
    assert temporal_rows(index, row[F1, "cam0"], 5) == [
        row[F0, "cam0"], row[F0, "cam0"], row[F1, "cam0"],
        row[F1, "cam0"], row[F1, "cam0"]]
    data = PifuDataset(caches[:1], temporal=True, n_points=10)
    item = data[0]
    assert item["images"].shape == (3, 3, 64, 64) and item["alphas"].shape == (3, 1, 64, 64)
    assert item["camera_K"].shape == (3, 3, 3) and item["view_index"].shape == (3,)
    assert item["body_centre"].shape == (3,)
    assert item["view_index"].tolist() == temporal_rows(index, data.items[0][1], 3)
    with pytest.raises(ValueError, match="odd"):
        PifuDataset(caches, temporal=True, window=2)


def test_clips_are_frames_in_order() -> None:
    actions = ["b_f10", "a_f02", "a_f00", "pose", "a_f01", "b_f09"]
    assert clip_frames(actions, "a_f01") == ["a_f00", "a_f01", "a_f02"]
    assert clip_frames(actions, "b_f10") == ["b_f09", "b_f10"]  # numeric frame order
    assert clip_frames(actions, "pose") == ["pose"]  # not a frame: a clip of one


def test_clip_shorter_than_the_window_is_refused(caches: list[Path], tmp_path: Path) -> None:
    poses = build_cache(tmp_path / "p", n_actions=3, views=("cam0",))  # act00..: not a clip
    with pytest.raises(PipelineError, match=r"clip 'act00' has 1 frame\(s\), fewer than the "
                                            r"temporal window of 3"):
        PifuDataset([poses], temporal=True)
    with pytest.raises(PipelineError, match="clip 'walk' has 3 frame"):
        PifuDataset(caches[:1], temporal=True, window=5)
    PifuDataset([poses])  # single-frame PIFu takes independent poses


def test_balanced_draw() -> None:
    rng = np.random.default_rng(0)
    inside = np.array([True] * 3 + [False] * 97)
    pick = balanced_draw(inside, 10, rng)
    assert len(pick) == 10 and inside[pick].sum() == 5  # 3 inside drawn with replacement
    one_class = balanced_draw(np.ones(4, bool), 6, rng)  # no outside sample at all
    assert len(one_class) == 6 and set(one_class.tolist()) <= {0, 1, 2, 3}


def test_cache_without_pifu_targets_is_refused(tmp_path: Path) -> None:
    none = build_cache(tmp_path / "n", params={"seed": 3, "n_sdf_points": 100,
                                               "n_surface_points": 50, "n_pifu_points": 0})
    with pytest.raises(PipelineError, match="n_pifu_points is 0"):
        PifuDataset([none])


@pytest.mark.parametrize("kind", ["pixel2isdf", "pifu"])
def test_workers_give_the_same_batches(caches: list[Path], kind: str) -> None:
    if kind == "pixel2isdf":
        data = Pixel2ISDFDataset(caches, n_points=64, seed=2, samples_per_subject=5)
    else:
        data = PifuDataset(caches, n_points=64, seed=2, temporal=True)
    data[0]  # handles opened in this process must not leak into the workers
    copy.deepcopy(data)  # what spawned workers receive: no open handles
    serial = list(DataLoader(data, batch_size=3, num_workers=0))
    parallel = list(DataLoader(data, batch_size=3, num_workers=2))
    assert len(serial) == len(parallel) == -(-len(data) // 3)
    assert all(equal(x, y) for x, y in zip(serial, parallel, strict=True))


def test_in_memory_images_give_the_same_items(caches: list[Path]) -> None:
    streamed = Pixel2ISDFDataset(caches, n_points=64, seed=4, samples_per_subject=3)
    kept = Pixel2ISDFDataset(caches, n_points=64, seed=4, samples_per_subject=3, in_memory=True)
    assert all(equal(streamed[i], kept[i]) for i in range(len(streamed)))
    parallel = list(DataLoader(kept, batch_size=2, num_workers=2))
    serial = list(DataLoader(streamed, batch_size=2, num_workers=0))
    assert all(equal(x, y) for x, y in zip(serial, parallel, strict=True))


def test_unmasked_crops_and_no_matte(caches: list[Path]) -> None:
    masked = Pixel2ISDFDataset(caches[:1], n_views=3, n_points=5, seed=2)[0]
    bare = Pixel2ISDFDataset(caches[:1], n_views=3, n_points=5, seed=2, masked=False)[0]
    assert torch.equal(masked["view_index"], bare["view_index"])
    assert torch.all(bare["alphas"] == 1)
    with open_cache(caches[0]) as h5:
        for k, r in enumerate(bare["view_index"].tolist()):
            crop = h5["unmasked/images"][r]
            np.testing.assert_allclose(bare["images"][k].permute(1, 2, 0).numpy(),
                                       crop / 255.0, atol=1e-6)
            alpha = h5["alphas"][r][..., None].astype(np.uint16)
            np.testing.assert_array_equal((crop * alpha + 127) // 255, h5["images"][r])
    in_memory = Pixel2ISDFDataset(caches[:1], n_views=3, n_points=5, seed=2, masked=False,
                                  in_memory=True)[0]
    assert equal(in_memory, bare)


def test_no_unmasked_crops_is_refused(tmp_path: Path) -> None:
    from tests.cache_fakes import SMALL
    path = build_cache(tmp_path, params={**SMALL, "unmasked_crops": False})
    assert "unmasked/images" not in open_cache(path)
    Pixel2ISDFDataset([path], n_views=2, n_points=5)  # the method's input is there
    with pytest.raises(PipelineError, match=r"no unmasked crops.*unmasked_crops: true"):
        Pixel2ISDFDataset([path], n_views=2, n_points=5, masked=False)


def test_select_views(caches: list[Path]) -> None:
    index = load_index(caches[0])  # 3 frames with 2 usable views each
    across = select_views(index, 3, "across", seed=4)
    assert len(set(index.action_index[across].tolist())) == 3
    np.testing.assert_array_equal(across, select_views(index, 3, "across", seed=4))
    assert set(select_views(index, None, "across", 0).tolist()) == set(index.ok_views().tolist())
    one = select_views(index, 2, "one_action", seed=4)
    assert set(index.action_index[one].tolist()) == {0}  # ties: the first action
    np.testing.assert_array_equal(select_views(index, None, "one_action", 0), one)
    with pytest.raises(PipelineError, match=r"3 views asked \(one_action\) but its best action "
                                            "has only 2"):
        select_views(index, 3, "one_action", 0)
    with pytest.raises(PipelineError, match="view selection must be one of"):
        select_views(index, 1, "random", 0)

"""The reconstruct stage (pipeline/reconstruct.py) on a tiny trained model and fake caches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from pipeline.config import validate_config
from pipeline.errors import PipelineError
from pipeline.meshio import read_ply
from pipeline.reconstruct import run
from pipeline.train import run as train
from tests.cache_fakes import BODY_R, build
from tests.test_train import TINY_MODEL, TINY_TRAIN, params


def recon_params(**overrides) -> dict:
    config = validate_config({"seed": 5, "reconstruct": {
        "resolution": 48, "init_resolution": 8, "device": "cpu", "threads": 1, **overrides}})
    return {"seed": config["seed"], **config["reconstruct"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recon")
    caches = [build(root / f"s{i}", output=root / "cache" / f"s{i}.h5", seed=i) for i in range(2)]
    ckpt = root / "train" / "checkpoint.pt"
    train(train_caches=caches[:1], val_caches=caches[1:], output=ckpt,
          summary=ckpt.parent / "train.json",
          params=params("train", {"model": {**TINY_MODEL, "volume_padding": 0.5},
                                  "run": {**TINY_TRAIN["run"], "steps": 3}}))
    return {"checkpoint": ckpt, "cache": caches[1], "root": root}


def _reconstruct(trained, tmp_path: Path, name: str, **overrides) -> tuple[dict, np.ndarray]:
    out = tmp_path / f"{name}.ply"
    summary = run(checkpoint=trained["checkpoint"], cache=trained["cache"], output=out,
                  report=tmp_path / f"{name}.json", params=recon_params(**overrides))
    verts = np.asarray(read_ply(out).vertices) if summary["surface"] else np.zeros((0, 3))
    return summary, verts


def test_coarse_to_fine_equals_dense_on_a_trained_model(trained, tmp_path: Path) -> None:
    fine, a = _reconstruct(trained, tmp_path, "fine", init_resolution=6)
    dense, b = _reconstruct(trained, tmp_path, "dense", init_resolution=48)
    assert fine["surface"] and dense["queries"] == 48 ** 3
    assert fine["queries"] < dense["queries"]
    assert abs(len(a) - len(b)) <= 0.01 * len(b)
    report = json.loads((tmp_path / "fine.json").read_text())
    voxel = 2 * 0.3 * 2.0 / 47  # cube side (body radius 0.3, padding 0.5) over 47 intervals
    hausdorff = max(cKDTree(a).query(b)[0].max(), cKDTree(b).query(a)[0].max())
    assert hausdorff <= voxel * 1.01
    assert report["split"] == "test" and report["n_views"] == 4  # every view_ok view
    assert set(report["seconds"]) == {"encode", "grid", "marching_cubes", "total"}
    assert report["components"]["mode"] == "body"  # the default: the person's pieces kept
    assert report["components"]["kept"] == 1 <= report["components"]["found"]


def test_faces_point_outward(trained, tmp_path: Path) -> None:
    _reconstruct(trained, tmp_path, "m")
    mesh = read_ply(tmp_path / "m.ply")
    assert mesh.volume > 0  # outward-oriented closed surface has positive signed volume


def test_k_views_drawn_with_the_seed(trained, tmp_path: Path) -> None:
    one, _ = _reconstruct(trained, tmp_path, "k1", views=2)
    two, _ = _reconstruct(trained, tmp_path, "k2", views=2)
    assert one["n_views"] == 2 and one["views"] == two["views"]
    with pytest.raises(PipelineError, match="only 4 views"):
        _reconstruct(trained, tmp_path, "k9", views=9)


def test_no_surface_is_reported_not_a_crash(trained, tmp_path: Path) -> None:
    data = torch.load(trained["checkpoint"], weights_only=True)
    last = max(k for k in data["model"] if k.startswith("head.layers.") and k.endswith(".bias"))
    data["model"][last] = data["model"][last] + 100.0  # everywhere far outside
    broken = {**trained, "checkpoint": tmp_path / "outside.pt"}
    torch.save(data, broken["checkpoint"])
    summary, verts = _reconstruct(broken, tmp_path, "none")
    assert summary["surface"] is False and len(verts) == 0
    assert (tmp_path / "none.ply").exists()


def test_checkpoint_of_another_model_is_refused(trained, tmp_path: Path) -> None:
    data = torch.load(trained["checkpoint"], weights_only=True)
    torch.save({**data, "kind": "normal_net"}, tmp_path / "n.pt")
    with pytest.raises(PipelineError, match="expected 'pixel2isdf'"):
        run(checkpoint=tmp_path / "n.pt", cache=trained["cache"], output=tmp_path / "x.ply",
            report=tmp_path / "x.json", params=recon_params())
    assert not (tmp_path / "x.ply").exists()


def test_checkpoint_not_matching_the_config_is_refused(trained, tmp_path: Path) -> None:
    config = json.dumps({**TINY_MODEL, "volume_padding": 0.5, "latent_dim": 8,
                         "prior": "body"})
    with pytest.raises(PipelineError, match=r"does not match the config's train.model "
                                            r"\(latent_dim: checkpoint 4, config 8\)"):
        run(checkpoint=trained["checkpoint"], cache=trained["cache"], train_model=config,
            output=tmp_path / "x.ply", report=tmp_path / "x.json", params=recon_params())
    assert not (tmp_path / "x.ply").exists() and not (tmp_path / "x.json").exists()
    same = json.dumps({**TINY_MODEL, "volume_padding": 0.5, "prior": "body"})
    run(checkpoint=trained["checkpoint"], cache=trained["cache"], train_model=same,
        output=tmp_path / "y.ply", report=tmp_path / "y.json", params=recon_params())


def test_body_band_keeps_the_surface_near_the_fitted_body(trained, tmp_path: Path) -> None:
    band = 0.02
    summary, verts = _reconstruct(trained, tmp_path, "band", body_band=band)
    assert summary["body_band"] == band and summary["surface"]
    voxel = 2 * 0.3 * 1.5 / 47  # the fake's fitted body: a sphere of radius BODY_R at 0
    assert np.linalg.norm(verts, axis=1).max() <= BODY_R + band + voxel


def test_checkpoint_of_the_other_prior_is_refused(trained, tmp_path: Path) -> None:
    config = json.dumps({**TINY_MODEL, "volume_padding": 0.5, "prior": "sphere"})
    with pytest.raises(PipelineError, match=r"checkpoint .*checkpoint\.pt does not match the "
                                            r"config's train.model \(prior: checkpoint 'body', "
                                            r"config 'sphere'\)"):
        run(checkpoint=trained["checkpoint"], cache=trained["cache"], train_model=config,
            output=tmp_path / "x.ply", report=tmp_path / "x.json", params=recon_params())
    assert not (tmp_path / "x.ply").exists()


def test_hull_carve_only_removes(trained, tmp_path: Path) -> None:
    """The carve intersects, so it never adds surface: on the fake, whose cameras do not see
    its body, it removes everything; the summary records the threshold. That the carved
    field is the max of both, positive where the photos show background:
    tests/test_body_prior.py::test_hull_carve_field_is_positive_where_the_photos_show_background."""
    whole, _ = _reconstruct(trained, tmp_path, "whole")
    carved, verts = _reconstruct(trained, tmp_path, "carved", hull_carve=0.5,
                                 hull_keeps_body=False)
    assert carved["hull_carve"] == 0.5 and whole["hull_carve"] is None
    assert not carved["hull_keeps_body"]
    assert whole["surface"] and not carved["surface"] and len(verts) == 0


def test_hull_carve_keeps_the_fitted_body(trained, tmp_path: Path) -> None:
    """With ``hull_keeps_body`` (the default) the same carve, which the fake's photos make
    total, stops at the fitted body: a surface remains, none of it outside the body (the fake's
    sphere of radius BODY_R, up to a voxel and the body volume's error)."""
    carved, verts = _reconstruct(trained, tmp_path, "kept", hull_carve=0.5)
    assert carved["surface"] and carved["hull_keeps_body"]
    voxel = 2 * 0.3 * 2.0 / 47
    assert np.linalg.norm(verts, axis=1).max() <= BODY_R + voxel

"""Checkpoints trained elsewhere (pipeline/training/given.py): checked against the config
before any work, every differing key named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.config import validate_config
from pipeline.errors import PipelineError
from pipeline.train import run as train
from pipeline.train import run_normal
from pipeline.training.given import check_given_checkpoints
from tests.cache_fakes import build
from tests.test_train import TINY_MODEL, TINY_NORMAL, TINY_TRAIN, params


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("given")
    cache = build(root / "s0", output=root / "cache" / "s0.h5")
    out = {"pixel2isdf": root / "p.pt", "normal_net": root / "n.pt"}
    run_steps = {**TINY_TRAIN["run"], "steps": 1}
    train(train_caches=[cache], output=out["pixel2isdf"], summary=root / "p.json",
          params=params("train", {"run": run_steps}))
    run_normal(train_caches=[cache], output=out["normal_net"], summary=root / "n.json",
               params=params("train_normal", {"run": {**TINY_NORMAL["run"], "steps": 1}}))
    return out


def config(train: dict | None = None, normal: dict | None = None) -> dict:
    return validate_config({"train": {"model": TINY_MODEL, **(train or {})},
                            "train_normal": {"model": TINY_NORMAL["model"], **(normal or {})}})


def test_matching_checkpoints_pass(trained) -> None:
    check_given_checkpoints(config({"checkpoint": str(trained["pixel2isdf"])},
                                   {"checkpoint": str(trained["normal_net"])}))
    check_given_checkpoints(config())  # nothing given: nothing to check


def test_every_differing_key_is_named(trained) -> None:
    other = {**TINY_MODEL, "latent_dim": 8, "prior": "sphere"}
    with pytest.raises(PipelineError, match=r"p\.pt was trained with other train\.model "
                                            r"settings \(latent_dim: checkpoint 4, config 8; "
                                            r"prior: checkpoint 'body', config 'sphere'\)"):
        check_given_checkpoints(validate_config(
            {"train": {"model": other, "checkpoint": str(trained["pixel2isdf"])}}))
    with pytest.raises(PipelineError, match=r"n\.pt was trained with other train_normal\.model "
                                            r"settings \(ngf: checkpoint 4, config 8\)"):
        check_given_checkpoints(config(normal={"checkpoint": str(trained["normal_net"]),
                                               "model": {**TINY_NORMAL["model"], "ngf": 8}}))


def test_wrong_kind_missing_and_corrupt_files_are_named(trained, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"n\.pt holds a 'normal_net' model, expected "
                                            r"'pixel2isdf'"):
        check_given_checkpoints(config({"checkpoint": str(trained["normal_net"])}))
    with pytest.raises(PipelineError, match=r"absent\.pt"):
        check_given_checkpoints(config({"checkpoint": str(tmp_path / "absent.pt")}))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PipelineError, match=r"junk\.pt"):
        check_given_checkpoints(config({"checkpoint": str(tmp_path / "junk.pt")}))
    data = torch.load(trained["pixel2isdf"], weights_only=True)
    del data["model_config"]
    torch.save(data, tmp_path / "bare.pt")
    with pytest.raises(PipelineError, match=r"bare\.pt has no readable model_config"):
        check_given_checkpoints(config({"checkpoint": str(tmp_path / "bare.pt")}))

"""Planning imports nothing heavy (issue 29): the Snakefile's parse, paid by every dry run,
every job on a cluster and every ``snakemake`` call of this suite, imports no torch, no
network of models/, no h5py, scipy, trimesh, PIL, ... (benchmarks/parse_time.py ``HEAVY``); a
given checkpoint is checked from its ``<checkpoint>.meta.json`` sidecar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from models.cache_io import SCHEMA_VERSION
from pipeline.config import load_config
from pipeline.training.checkpoint import FORMAT, write_sidecar
from tests.conftest import REPO, load_benchmark


@pytest.fixture(scope="module")
def parse_time() -> ModuleType:
    return load_benchmark("parse_time")


def given_checkpoints(folder: Path) -> Path:
    """A config file giving the three kinds of checkpoint (``train.checkpoint``,
    ``train_normal.checkpoint``, ``pifu.checkpoints.pifu``) trained with the demo's model
    settings, each a file that is no checkpoint but has a matching sidecar: the parse must
    read the sidecars, never the files."""
    demo = load_config(REPO / "config.yaml")
    models = {"pixel2isdf": {"model": demo["train"]["model"]},
              "normal_net": demo["train_normal"]["model"],
              "pifu": {"model": {**demo["pifu"]["train"]["model"], "temporal": False}}}
    paths = {}
    for kind, model in models.items():
        paths[kind] = folder / f"{kind}.pt"
        paths[kind].write_bytes(b"weights trained elsewhere")
        write_sidecar(paths[kind], header={"format": FORMAT, "kind": kind,
                                           "cache_schema": SCHEMA_VERSION,
                                           "model_config": json.dumps(model)})
    config = folder / "given.yaml"
    config.write_text(yaml.safe_dump({
        "train": {"checkpoint": str(paths["pixel2isdf"])},
        "train_normal": {"checkpoint": str(paths["normal_net"])},
        "pifu": {"checkpoints": {"pifu": str(paths["pifu"])}}}))
    return config


def test_common_smk_imports_and_checks_import_nothing_heavy(
        parse_time: ModuleType, tmp_path: Path) -> None:
    """rules/common.smk's imports, then the parse's checks of the demo config with given
    checkpoints, in a fresh interpreter: no heavy package, only the light models/ modules
    (the error type, the config dataclasses, the cache schema version)."""
    assert "from pipeline.training.given import" in parse_time.common_imports()
    child = parse_time.parse_imports([REPO / "config.yaml", given_checkpoints(tmp_path)])
    assert child["heavy"] == []
    assert set(child["models"]) <= set(parse_time.LIGHT_MODELS), child["models"]
    # The check sees a heavy import (it is not vacuous).
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "common.smk").write_text("import h5py\nfrom pipeline.layout import "
                                                   "Layout\nLAYOUT = Layout()\n")
    assert parse_time.parse_imports(tree=tmp_path)["heavy"] == ["h5py"]


def test_a_dry_run_imports_nothing_heavy(parse_time: ModuleType, tmp_path: Path) -> None:
    """``snakemake -n`` of the demo with given checkpoints: none of the workflow's code (the
    Snakefile, rules/, pipeline/, models/) imports a heavy package while it plans."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    run = parse_time.dry_run(tmp_path, ["--configfile", str(tmp_path / "config.yaml"),
                                        str(given_checkpoints(tmp_path))])
    assert run["heavy"] == {}
    assert run["watched"] > 0  # the watcher saw the workflow's own imports (pipeline.*)

"""Shared fixtures: tiny data layouts made by the tests, a Snakemake runner, and a loader for
the benchmark scripts (benchmarks/ is not a package)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

CORE_PACKAGES = ("mediapipe", "anny", "pymatting", "pygltflib")
"""The packages of the default run (pyproject's core dependencies): CI must have them."""


def require(module: str) -> ModuleType:
    """``pytest.importorskip(module)``, except under ``CI=true``, where a module that cannot be
    imported fails the test (or the collection of a module calling this at its top) instead
    of skipping it: CI installs the core packages (:data:`CORE_PACKAGES`), so a test of them
    that skips there has silently stopped testing anything.

    Use it for the core packages and for the pipeline's modules that import them; optional
    backends (smplx, spconv, mmdet, ...) keep ``pytest.importorskip``.
    """
    if os.environ.get("CI") != "true":
        return pytest.importorskip(module)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"{module} cannot be imported ({type(exc).__name__}: {exc}), and CI=true: "
                    f"the core packages {', '.join(CORE_PACKAGES)} must be installed in CI "
                    "(pip install -e .), so this test fails instead of skipping",
                    pytrace=False)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test``: 2 workers) each worker gets its share of the cores
    for torch, not all of them each."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The end-to-end tests (``slow``) first, the longest of them, the workflow chains, at the
    head: with workers they then start first instead of keeping one worker busy at the end.
    The order within each part stays the files' order."""
    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is None:
            return 2
        return 0 if item.path.name == "test_workflow.py" else 1

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """Put torch's intra-op thread count back after every test: stages run in-process
    (fit, train, reconstruct) set it from their config, and a count leaking into the next
    test would make its float32 sums depend on the order the tests ran in. The suite's own
    count comes from the environment (``OMP_NUM_THREADS=1 make test`` checks one thread)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (registered under ``name``: dataclasses look
    their module up in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_photo(path: Path, seed: int, size: tuple[int, int] = (96, 128)) -> Path:
    """A small random-texture JPEG/PNG (by suffix) at ``path``; ``size`` is (height, width)."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((*size, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_layout(root: Path, subjects: dict[str, dict[str, int]], ext: str = "jpg") -> Path:
    """``root/<subject>/<action>/cam<i>.<ext>``: ``subjects`` maps subject → action → n views."""
    seed = 0
    for subject, actions in subjects.items():
        for action, n_views in actions.items():
            for i in range(n_views):
                write_photo(root / subject / action / f"cam{i}.{ext}", seed)
                seed += 1
    return root


@pytest.fixture
def tiny_layout(tmp_path: Path) -> Path:
    """A work folder with data/tiny: 2 subjects × 2 actions × 3 views of small JPEGs."""
    make_layout(tmp_path / "data" / "tiny",
                {s: {"act00": 3, "act01": 3} for s in ("s000", "s001")})
    return tmp_path


def tiny_config(**sections) -> dict:
    """A config for the tiny layout (real data, no synthesis); ``sections`` override sections.

    It stops before training (``stop_after: ingest``), so it needs no validation subject; a
    config that trains lists one in ``data.val_subjects`` or sets ``run.keep: last`` in each
    training section (the Snakefile refuses ``keep: best`` without validation subjects)."""
    config = {
        "seed": 7,
        "stop_after": "ingest",
        "data": {"root": "data", "dataset": "tiny", "subjects": ["s000", "s001"],
                 "val_subjects": [], "test_subjects": []},
        "synthesize": {"enabled": False},
        "ingest": {"min_views": 2},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_env() -> dict[str, str]:
    """The environment for a Snakemake child: this interpreter's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_snakemake(workdir: Path, *args: str, check: bool = True,
                  timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` with ``workdir/config.yaml``."""
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args]
    result = subprocess.run(cmd, cwd=workdir, env=snakemake_env(), capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


@pytest.fixture(scope="session")
def synthetic_subject(tmp_path_factory):
    """A tiny synthetic subject with its ingest manifest: 1 action × 3 views of 240×180.

    Returns a dict with ``photos``, ``truth``, ``manifest`` paths and the ``subject`` name.
    """
    from pipeline.config import stage_params, validate_config
    from pipeline.ingest import IngestParams, ingest_subject
    from pipeline.synthesize.stage import SynthParams, synthesize_subject

    root = tmp_path_factory.mktemp("synthetic")
    config = validate_config({"seed": 3, "synthesize": {
        "n_actions": 1, "n_views": 3, "width": 240, "height": 180, "voxel_size": 0.02,
        "camera": {"distance": 2.6}}})
    photos, truth = root / "data" / "s000", root / "data" / "truth" / "s000"
    synthesize_subject(subject="s000", photos_dir=photos, truth_dir=truth,
                       params=SynthParams.from_params(stage_params(config, "synthesize")))
    manifest = root / "manifest" / "s000.json"
    ingest_subject(data_dir=photos.parent, subject="s000", output=manifest,
                   params=IngestParams(min_views=1))
    return {"subject": "s000", "photos": photos, "truth": truth, "manifest": manifest,
            "root": root}


@pytest.fixture(scope="session")
def oracle_crops(synthetic_subject, tmp_path_factory):
    """The detect stage's folder for the synthetic subject's act00, oracle boxes, 128² crops."""
    from pipeline.detect import DetectParams, detect_action

    out = tmp_path_factory.mktemp("oracle") / "crop"
    detect_action(manifest=synthetic_subject["manifest"], action="act00",
                  truth=synthetic_subject["truth"], output=out,
                  params=DetectParams("oracle", 128, 0.1, "fail", 0.3, {}))
    return out

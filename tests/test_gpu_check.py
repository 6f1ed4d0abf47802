"""benchmarks/gpu_check.py: its CPU smoke run through benchmarks/gpu_check.sh, with h5py, yaml
and scipy unimportable as on a bare GPU machine (~15 s on 2 cores), and its built-in copies of
the presets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml

from tests.conftest import load_benchmark

REPO = Path(__file__).resolve().parents[1]


def gpu_check_setup() -> ModuleType:
    """The script's setup module (sections, presets, synthetic inputs)."""
    return load_benchmark("gpu_check_setup")


def run_wrapper(args: list[str], blocked: Path) -> subprocess.CompletedProcess:
    """``benchmarks/gpu_check.sh args`` with this interpreter; the modules in ``blocked``
    (stubs that raise ImportError) come first on the path."""
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(blocked)}
    return subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    for name in ("h5py", "yaml", "scipy"):
        (tmp_path / f"{name}.py").write_text('raise ImportError("not on the GPU machine")\n')
    return tmp_path


def test_cpu_smoke_run_needs_only_torch_and_numpy(blocked: Path) -> None:
    result = run_wrapper(["--device", "cpu", "--quick"], blocked)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for title, _ in gpu_check_setup().SECTIONS.values():
        assert f"\n## {title.format(device='cpu')}\n" in result.stdout
    assert "built-in copy: no yaml" in result.stdout
    assert "**FAIL" not in result.stdout and "All checks passed." in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the full check would run")
def test_missing_cuda_is_a_clear_exit(blocked: Path) -> None:
    result = run_wrapper(["--sections", "models"], blocked)
    assert result.returncode == 2
    assert "CUDA is not available" in result.stderr and "--device cpu" in result.stderr


@pytest.mark.parametrize("name", ["presets/paper.yaml", "config.yaml"])
def test_fallback_presets_equal_the_files(name: str) -> None:
    module = gpu_check_setup()
    with open(REPO / name) as fh:
        assert module.preset_subset(yaml.safe_load(fh)) == module.FALLBACK[name]

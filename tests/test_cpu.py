"""models/cpu.py: the CPU settings every torch stage starts with (threads, subnormals flushed).

The flush mode belongs to the process, so each check runs in a child interpreter of its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from models.cpu import use_cpu

# 1e-30 × 1e-10 = 1e-40 is subnormal in float32; softplus(β = 100) of -0.9 is ~8e-42,
# the case that slowed the SDF head (docs/results.md "Subnormal floats").
CHILD = """
import warnings
import numpy as np, torch, torch.nn.functional as F
from models.cpu import use_cpu
warnings.simplefilter("error")
if {use}:
    use_cpu(1)
tiny = float((torch.tensor([1e-30]) * torch.tensor([1e-10]))[0])
soft = float(F.softplus(torch.tensor([-0.9]), beta=100)[0])
print(tiny, soft, torch.get_num_threads(), np.finfo(np.float64).smallest_subnormal)
"""


def _child(use: bool) -> list[float]:
    done = subprocess.run([sys.executable, "-c", CHILD.format(use=use)], capture_output=True,
                          text=True, check=True)
    return [float(x) for x in done.stdout.split()]


def test_use_cpu_flushes_subnormals_to_zero_and_sets_threads() -> None:
    tiny, soft, threads, subnormal = _child(use=True)
    assert tiny == 0.0 and soft == 0.0 and threads == 1
    assert subnormal == 5e-324  # numpy's limits stay right (and it warns of nothing)
    tiny, soft, _, _ = _child(use=False)  # the same operations keep their subnormals without it
    assert 0.0 < tiny < 1.2e-38 and 0.0 < soft < 1.2e-38


def test_use_cpu_refuses_no_threads() -> None:
    with pytest.raises(ValueError, match="threads >= 1"):
        use_cpu(0)

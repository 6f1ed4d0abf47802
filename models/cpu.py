"""How every torch stage runs on the CPU: its thread count, and subnormal floats flushed to zero.

The SDF head's softplus (β = 100) underflows for most activations far from the surface, and
x86 cores handle subnormal (denormal) floats in microcode, many times slower than normal ones:
flushed to zero, the demo's Pixel2ISDF training and its reconstructions take about half
the time, with the same weights and meshes, byte for byte (``benchmarks/stage_speed.py
train`` and ``reconstruct``, docs/results.md "Subnormal floats"). A GPU is not affected.
"""

from __future__ import annotations

import numpy as np
import torch


def use_cpu(threads: int) -> None:
    """Run this process's torch CPU work on ``threads`` threads, subnormals flushed to zero.

    Call it before the first parallel torch operation: the flush mode is per thread, and the
    worker threads take it from the thread that starts them.
    """
    if threads < 1:
        raise ValueError(f"need threads >= 1, got {threads}")
    for dtype in (np.float16, np.float32, np.float64):
        np.finfo(dtype)  # numpy measures its float limits once: before the flush, correctly
    torch.set_flush_denormal(True)  # False where the CPU lacks the mode (no SSE3): harmless
    torch.set_num_threads(threads)

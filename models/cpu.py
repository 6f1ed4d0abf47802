"""How every torch stage runs on the CPU: its thread count, and subnormal floats flushed to zero.

The SDF head's softplus (β = 100) underflows for most activations far from the surface, and
x86 cores handle subnormal (denormal) floats in microcode, many times slower than normal ones:
on the demo, a Pixel2ISDF training step took 0.62 s with them and 0.32 s without, and a
reconstruction's grid 19.4 s against 10.3 s. Flushing them to zero changed no output we
compared (a 60-step training's weights, every reconstructed mesh, byte for byte:
``benchmarks/stage_speed.py``, docs/results.md "Subnormal floats"). A GPU is not affected.
"""

from __future__ import annotations

import torch


def use_cpu(threads: int) -> None:
    """Run this process's torch CPU work on ``threads`` threads, subnormals flushed to zero.

    Call it before the first parallel torch operation: the flush mode is per thread, and the
    worker threads take it from the thread that starts them.
    """
    if threads < 1:
        raise ValueError(f"need threads >= 1, got {threads}")
    torch.set_flush_denormal(True)  # False where the CPU lacks the mode (no SSE3): harmless
    torch.set_num_threads(threads)

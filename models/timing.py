"""Wall-clock time per named section of a training step (for the logs and the benchmark).

A network holds a ``SectionTimer`` (``NULL_TIMER`` by default: free) and wraps its parts in
``with self.timer("geometry"):``. On CUDA the timer synchronises around each section so that
asynchronous kernels are charged to the section that launched them.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator

import torch


class SectionTimer:
    """Accumulates seconds per section name; ``pop()`` returns and clears them."""

    def __init__(self, enabled: bool = True, cuda: bool = False) -> None:
        self.enabled, self.cuda = enabled, cuda
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self.seconds[name] += time.perf_counter() - start

    def pop(self) -> dict[str, float]:
        out = dict(self.seconds)
        self.seconds.clear()
        return out


NULL_TIMER = SectionTimer(enabled=False)
"""The do-nothing timer networks start with (it holds no state)."""

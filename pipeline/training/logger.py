"""What a training run records: TensorBoard event files, a plain ``train.json`` and a
progress bar with ETA. Only the main process (rank 0) writes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import write_json
from pipeline.progress import progress


class RunLogger:
    """Scalars and images to TensorBoard (``<out>/tensorboard``), records to a history list.

    Args:
        log_dir: the TensorBoard folder. total: the run's last step. start: first step of
            this process (a resumed run starts later; TensorBoard events after it are purged).
        enabled: False on ranks other than 0 (everything becomes a no-op).
    """

    def __init__(self, log_dir: Path, total: int, start: int, enabled: bool,
                 history: list[dict[str, Any]] | None = None) -> None:
        self.enabled = enabled
        self.history: list[dict[str, Any]] = [r for r in (history or []) if r["step"] <= start]
        self.writer = None
        self.bar = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir), purge_step=start if start > 0 else None)
            self.bar = progress(total, desc=log_dir.parent.name, unit="step")
            self.bar.update(start)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Log ``values`` (names like ``loss/sdf``, ``time/backward``) at ``step``."""
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}
        for name, value in clean.items():
            self.writer.add_scalar(name, value, step)
        self.history.append({"step": step, **{k: round(v, 6) for k, v in clean.items()}})

    def image(self, step: int, name: str, image: np.ndarray | None) -> None:
        """An ``(H, W, 3)`` uint8 image."""
        if self.enabled and image is not None:
            self.writer.add_image(name, image, step, dataformats="HWC")

    def advance(self, n: int = 1, **postfix: float) -> None:
        if self.enabled:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.bar.close()


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """``train.json`` (atomically)."""
    write_json(path, summary)

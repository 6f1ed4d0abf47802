"""Sizes of PIFu and Temporal PIFu (PIFu's released code by default; ANCHORS.md)."""

from __future__ import annotations

from dataclasses import dataclass

LAST_OPS = ("sigmoid", "tanh")


@dataclass(frozen=True)
class PifuConfig:
    """One record for both models: ``temporal`` picks Temporal PIFu.

    Attributes:
        temporal: Temporal PIFu (``window`` frames' features concatenated) instead of PIFu.
        window: frames per neighbourhood (odd; 3 in the report).
        input_size: side the crops are resized to (512 in PIFu).
        n_stacks: hourglass stacks (4). hg_depth: levels per hourglass (2).
        channels: feature channels of every stack's output (256).
        norm: ``group`` (GroupNorm(32)) or ``batch``.
        mlp_dims: hidden widths of the surface classifier (1024, 512, 256, 128).
        last_op: ``sigmoid`` (labels 0/1, PIFu's code; the default) or ``tanh`` (the second
            report's Table 1; labels ±1). Either way ``occupancy`` is in [0, 1].
    """

    temporal: bool = False
    window: int = 3
    input_size: int = 512
    n_stacks: int = 4
    hg_depth: int = 2
    channels: int = 256
    norm: str = "group"
    mlp_dims: tuple[int, ...] = (1024, 512, 256, 128)
    last_op: str = "sigmoid"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mlp_dims", tuple(int(d) for d in self.mlp_dims))
        if self.last_op not in LAST_OPS:
            raise ValueError(f"pifu model.last_op must be one of {LAST_OPS}, "
                             f"got {self.last_op!r}")
        if self.norm not in ("group", "batch"):
            raise ValueError(f"pifu model.norm must be group or batch, got {self.norm!r}")
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"pifu model.window must be odd and >= 1, got {self.window}")
        if self.n_stacks < 1 or self.hg_depth < 1 or self.channels % 4:
            raise ValueError("pifu model: need n_stacks >= 1, hg_depth >= 1 and channels a "
                             "multiple of 4")
        if self.input_size % (4 * 2 ** self.hg_depth):
            raise ValueError(f"pifu model.input_size {self.input_size} must be a multiple of "
                             f"{4 * 2 ** self.hg_depth} (stem /4, then hg_depth halvings)")

    @property
    def frames(self) -> int:
        """Frames the classifier sees: ``window`` for Temporal PIFu, else 1."""
        return self.window if self.temporal else 1

    @property
    def classifier_in(self) -> int:
        """Input width of the classifier: frames × channels + 1 (z)."""
        return self.frames * self.channels + 1

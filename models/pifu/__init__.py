"""PIFu and Temporal PIFu (second report): the network, its blocks and its factory.

``get_model(cfg)`` builds either from a ``PifuConfig`` mapping (``temporal: true`` for the
temporal one). Blocks: ``hgfilter`` (stacked hourglasses), ``classifier`` (the residual
Conv1d MLP), ``model`` (projection into the frames, z feature, losses). docs/pifu.md.
The network (torch) is imported on first use, not with the package (models/lazy.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from models.config import from_mapping
from models.lazy import lazy_exports
from models.pifu.config import PifuConfig

if TYPE_CHECKING:
    from models.pifu.model import PifuNet, occupancy_scores, pifu_loss

__all__ = ["PifuConfig", "PifuNet", "get_model", "occupancy_scores", "pifu_loss"]

__getattr__ = lazy_exports(__name__, dict.fromkeys(("PifuNet", "occupancy_scores", "pifu_loss"),
                                                   "models.pifu.model"))


def get_model(cfg: Mapping[str, Any]) -> PifuNet:
    """PIFu (or Temporal PIFu) from a ``PifuConfig`` mapping."""
    from models.pifu.model import PifuNet

    return PifuNet(from_mapping(PifuConfig, cfg))

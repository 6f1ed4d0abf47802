"""Pixel2ISDF (first report): the network, its blocks and its factory.

``get_model(cfg)`` builds the network from the run config's ``model`` mapping; every block is
importable on its own (``normal_net``, ``fusion``, ``diffusion``, ``sdf_head``,
``losses``). Shapes and the departures from the report: docs/model.md. The networks (torch)
are imported on first use, not with the package (models/lazy.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from models.lazy import lazy_exports
from models.pixel2isdf.config import NormalNetConfig, Pixel2ISDFConfig, from_mapping

if TYPE_CHECKING:
    from models.pixel2isdf.model import LatentVolume, Pixel2ISDF
    from models.pixel2isdf.normal_net import NormalNet

__all__ = ["LatentVolume", "NormalNet", "NormalNetConfig", "Pixel2ISDF", "Pixel2ISDFConfig",
           "get_model", "get_normal_net"]

__getattr__ = lazy_exports(__name__, {"LatentVolume": "models.pixel2isdf.model",
                                      "Pixel2ISDF": "models.pixel2isdf.model",
                                      "NormalNet": "models.pixel2isdf.normal_net"})


def get_normal_net(cfg: Mapping[str, Any]) -> NormalNet:
    """The normal network from a ``NormalNetConfig`` mapping."""
    from models.pixel2isdf.normal_net import NormalNet

    c = from_mapping(NormalNetConfig, cfg)
    return NormalNet(ngf=c.ngf, n_downsample=c.n_downsample, n_blocks=c.n_blocks, norm=c.norm)


def get_model(cfg: Mapping[str, Any], normal_cfg: Mapping[str, Any] | None = None,
              freeze_normal: bool = True) -> Pixel2ISDF:
    """Pixel2ISDF from a ``Pixel2ISDFConfig`` mapping (and the normal net's, when used)."""
    from models.pixel2isdf.model import Pixel2ISDF

    return Pixel2ISDF(from_mapping(Pixel2ISDFConfig, cfg),
                      None if normal_cfg is None else from_mapping(NormalNetConfig, normal_cfg),
                      freeze_normal)

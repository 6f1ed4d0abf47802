"""A U-Net on a ResNet-34 encoder whose parameters are named exactly as torchvision's.

* :class:`ResNet34Encoder`: torchvision's ResNet-34 without ``avgpool``/``fc`` (``conv1`` 7×7
  stride 2, ``bn1``, ReLU, ``maxpool`` 3×3 stride 2, ``layer1``–``layer4`` of 3/4/6/3
  BasicBlocks, first block of ``layer2``–``layer4`` with stride 2 and a ``downsample`` =
  ``Sequential(conv1x1, BatchNorm)``). Widths 64/128/256/512 are multiplied by ``width``
  (rounded, at least 8). With ``width == 1`` its ``state_dict`` keys and shapes are those of
  ``torchvision.models.resnet34()`` less ``fc.*``, so a torchvision file loads into it.
* :class:`ResUNet34`: that encoder plus a U-Net decoder (bilinear ×2 upsampling, concatenation
  with the skip of the same resolution, two 3×3 conv-BN-ReLU) from ``layer4`` (H/32) back up
  through ``layer3`` (H/16), ``layer2`` (H/8), ``layer1`` (H/4), the stem (H/2) and the full
  resolution H, whose skip is a 3×3 conv-BN-ReLU of the input; a final 1×1 conv gives
  ``out_channels``.
* :func:`load_torchvision_resnet34`: loads a torchvision-format ResNet-34 state-dict file into
  the encoder (``fc.*`` ignored, ``conv1`` adapted to other input channel counts).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.errors import PipelineError

_BLOCKS_PER_LAYER = (3, 4, 6, 3)
_ENCODER_WIDTHS = (64, 128, 256, 512)
_DECODER_WIDTHS = (256, 128, 64, 64, 32)  # at H/16, H/8, H/4, H/2, H
_SHOWN_KEYS = 5  # bad keys named in a load error
_REASON_CHARS = 160  # of the reader's message quoted in a load error


def scaled_width(channels: int, width: float) -> int:
    """``round(channels * width)``, at least 8."""
    return max(8, round(channels * width))


def _init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) convolutions and unit/zero BatchNorms, as torchvision."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 convs + identity), named as torchvision's.

    ``forward(x (B, in_channels, H, W)) -> (B, out_channels, H', W')`` with ``H' = ceil(H /
    stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        """(B, Cin, H, W) -> (B, Cout, H / stride, W / stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet34Encoder(nn.Module):
    """torchvision's ResNet-34 trunk (no ``avgpool``/``fc``) returning its five feature maps.

    Attributes:
        in_channels: input channels of ``conv1``.
        width: multiplier of the base widths 64/128/256/512.
        channels: channels of the five outputs (stem, layer1, layer2, layer3, layer4).
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        self.in_channels = in_channels
        self.width = float(width)
        widths = [scaled_width(c, width) for c in _ENCODER_WIDTHS]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers = []
        previous = widths[0]
        for i, (n_blocks, channels) in enumerate(zip(_BLOCKS_PER_LAYER, widths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(previous, channels, stride)]
            blocks += [BasicBlock(channels, channels) for _ in range(n_blocks - 1)]
            layers.append(nn.Sequential(*blocks))
            previous = channels
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.channels: tuple[int, ...] = (widths[0], *widths)
        _init_weights(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, Cin, H, W) -> [stem (B, c0, H/2, W/2), layer1 (B, c1, H/4, W/4), layer2 (H/8),
        layer3 (H/16), layer4 (B, c4, H/32, W/32)] with ``(c0, ..., c4) = self.channels``."""
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [stem, f1, f2, f3, f4]


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """3×3 conv (no bias) + BatchNorm + ReLU: (B, Cin, H, W) -> (B, Cout, H, W)."""
    return [nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class UpBlock(nn.Module):
    """U-Net decoder step: upsample to the skip's size, concatenate it, two conv-BN-ReLU.

    ``forward(x (B, Cx, h, w), skip (B, Cs, H, W)) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(*_conv_bn_relu(in_channels + skip_channels, out_channels),
                                  *_conv_bn_relu(out_channels, out_channels))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """(B, Cx, h, w), (B, Cs, H, W) -> (B, out_channels, H, W)."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class ResUNet34(nn.Module):
    """U-Net with a ResNet-34 encoder: per-pixel features at the input resolution.

    Attributes:
        encoder: :class:`ResNet34Encoder` (torchvision names, loadable with
            :func:`load_torchvision_resnet34`).
        image_skip: 3×3 conv-BN-ReLU of the input, the full-resolution skip.
        decoder: five :class:`UpBlock` s, to H/16, H/8, H/4, H/2 and H.
        head: final 1×1 conv to ``out_channels``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 64, width: float = 1.0) -> None:
        super().__init__()
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        self.encoder = ResNet34Encoder(in_channels, width)
        self.out_channels = out_channels
        skips = list(reversed(self.encoder.channels[:4]))  # layer3, layer2, layer1, stem
        dec = [scaled_width(c, width) for c in _DECODER_WIDTHS]
        skips.append(dec[-1])  # the full-resolution skip: a light conv of the image
        self.image_skip = nn.Sequential(*_conv_bn_relu(in_channels, dec[-1]))
        previous = self.encoder.channels[4]
        blocks = []
        for skip_channels, channels in zip(skips, dec, strict=True):
            blocks.append(UpBlock(previous, skip_channels, channels))
            previous = channels
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(previous, out_channels, 1)
        _init_weights(self.image_skip)
        _init_weights(self.decoder)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, H, W); H and W multiples of 32."""
        if x.ndim != 4 or x.shape[1] != self.encoder.in_channels:
            raise ValueError(f"ResUNet34 expects (B, {self.encoder.in_channels}, H, W), got "
                             f"{tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % 32 or width % 32:
            raise ValueError(f"ResUNet34 needs H and W multiples of 32, got {height}x{width}")
        features = self.encoder(x)
        skips = [*reversed(features[:4]), self.image_skip(x)]
        out = features[4]
        for block, skip in zip(self.decoder, skips, strict=True):
            out = block(out, skip)
        return self.head(out)


def adapt_conv1_weight(weight: Tensor, in_channels: int) -> Tensor:
    """The RGB ``conv1`` weight adapted to ``in_channels`` inputs.

    Rule: with ``m`` the mean of the weight over its 3 RGB input channels, ``in_channels < 3``
    uses ``m`` for every channel, ``in_channels > 3`` keeps the RGB weights on the first three
    channels and ``m`` on the others; both are then scaled by ``3 / in_channels``. A grey
    input (the same value ``g`` on every channel) thus gives exactly the activation the RGB
    network gives to the grey image ``(g, g, g)``, whatever ``in_channels``.

    Args:
        weight: (C0, 3, k, k) RGB weight.
        in_channels: wanted input channels.

    Returns:
        (C0, in_channels, k, k) weight (``weight`` itself when ``in_channels == 3``).
    """
    if in_channels == 3:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    if in_channels < 3:
        adapted = mean.repeat(1, in_channels, 1, 1)
    else:
        adapted = torch.cat([weight, mean.repeat(1, in_channels - 3, 1, 1)], dim=1)
    return adapted * (3.0 / in_channels)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """The ``{name: tensor}`` stored in ``path``; PipelineError naming it when unreadable."""
    if not path.is_file():
        raise PipelineError(f"ResNet-34 weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as exc:
        reason = (str(exc).splitlines() or [""])[0][:_REASON_CHARS]
        if isinstance(exc, pickle.UnpicklingError):  # its message suggests weights_only=False
            reason = "not a pickle, or objects other than tensors (weights-only loading)"
        raise PipelineError(f"cannot read the ResNet-34 weights file {path} (corrupt, or not "
                            f"a torch.save state dict): {type(exc).__name__}: {reason}") from exc
    if not isinstance(state, Mapping):
        raise PipelineError(f"{path} holds a {type(state).__name__}, not a state dict")
    bad = [str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        raise PipelineError(f"{path} is not a state dict of tensors; entries that are not "
                            f"named tensors: {_first(bad)}")
    return dict(state)


def _first(keys: list[str]) -> str:
    """The first few of ``keys``, comma-separated, with the count of the rest."""
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" (and {len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def load_torchvision_resnet34(model: ResUNet34 | ResNet34Encoder, path: str | Path) -> list[str]:
    """Load a torchvision-format ResNet-34 state dict file into the encoder of ``model``.

    ``fc.*`` entries are ignored; ``num_batches_tracked`` entries may be absent (torchvision's
    own ImageNet file predates them) and then keep the model's values. With ``in_channels !=
    3`` the file's RGB ``conv1.weight`` is adapted by :func:`adapt_conv1_weight`.

    Args:
        model: a :class:`ResUNet34` (its ``encoder`` is loaded) or a :class:`ResNet34Encoder`.
        path: file written by ``torch.save(resnet34.state_dict(), path)``.

    Returns:
        The loaded keys, in torchvision naming (``"conv1.weight"``, ``"layer1.0.bn1.bias"``...).

    Raises:
        ValueError: the encoder's width is not 1 (the file's shapes are those of width 1).
        PipelineError: the file is missing, unreadable or not a state dict, lacks keys of the
            encoder, has keys it does not know, or has tensors of other shapes.
    """
    encoder = model.encoder if isinstance(model, ResUNet34) else model
    if encoder.width != 1.0:
        raise ValueError(f"torchvision ResNet-34 weights need width 1, the encoder has width "
                         f"{encoder.width}")
    path = Path(path)
    weights = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}
    own = encoder.state_dict()
    missing = [k for k in own if k not in weights and not k.endswith(".num_batches_tracked")]
    if missing:
        raise PipelineError(f"{path} lacks {len(missing)} ResNet-34 keys: {_first(missing)}")
    unexpected = [k for k in weights if k not in own]
    if unexpected:
        raise PipelineError(f"{path} has {len(unexpected)} keys that are not ResNet-34's: "
                            f"{_first(unexpected)}")
    conv1 = weights["conv1.weight"]
    if encoder.in_channels != 3 and conv1.ndim == 4 and conv1.shape[1] == 3:
        weights["conv1.weight"] = adapt_conv1_weight(conv1, encoder.in_channels)
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})"
             for k, v in weights.items() if v.shape != own[k].shape]
    if wrong:
        raise PipelineError(f"{path} has {len(wrong)} tensors of the wrong shape: {_first(wrong)}")
    encoder.load_state_dict({**own, **weights}, strict=True)
    return [k for k in own if k in weights]

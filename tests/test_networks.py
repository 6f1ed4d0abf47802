"""Image networks: the ResNet-34 U-Net (models.blocks) and Pixel2ISDF's normal net."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from models.blocks import ResNet34Encoder, ResUNet34, load_torchvision_resnet34
from models.blocks.resunet import adapt_conv1_weight
from models.pixel2isdf.normal_net import NormalNet, decode_normals, normal_loss
from pipeline.errors import PipelineError

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# torchvision.models.resnet34(): 21,797,672 parameters, of which fc holds 512 * 1000 + 1000.
_RESNET34_TRUNK_PARAMETERS = 21_797_672 - 513_000


def torchvision_resnet34_shapes() -> dict[str, tuple[int, ...]]:
    """Key → shape of ``torchvision.models.resnet34().state_dict()``, in its order (with fc)."""

    def bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.{p}": (() if p == "num_batches_tracked" else (channels,)) for p in _BN}

    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    previous = 64
    for layer, n_blocks in enumerate((3, 4, 6, 3), start=1):
        channels = 64 * 2 ** (layer - 1)
        for block in range(n_blocks):
            p = f"layer{layer}.{block}"
            inputs = previous if block == 0 else channels
            shapes[f"{p}.conv1.weight"] = (channels, inputs, 3, 3)
            shapes.update(bn(f"{p}.bn1", channels))
            shapes[f"{p}.conv2.weight"] = (channels, channels, 3, 3)
            shapes.update(bn(f"{p}.bn2", channels))
            if block == 0 and layer > 1:
                shapes[f"{p}.downsample.0.weight"] = (channels, previous, 1, 1)
                shapes.update(bn(f"{p}.downsample.1", channels))
        previous = channels
    shapes["fc.weight"] = (1000, 512)
    shapes["fc.bias"] = (1000,)
    return shapes


def cheap_state_dict() -> dict[str, torch.Tensor]:
    """A torchvision-shaped state dict of stride-0 tensors: saved, it takes a few kB."""
    return {k: torch.full((), 0.5 if s else 7).expand(s) if s else torch.tensor(7)
            for k, s in torchvision_resnet34_shapes().items()}


@pytest.fixture(scope="module")
def resnet34_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A torchvision-format file of random ResNet-34 weights, and the dict it holds."""
    gen = torch.Generator().manual_seed(0)
    state = {k: (torch.randint(0, 100, (), generator=gen) if k.endswith("num_batches_tracked")
                 else torch.randn(s, generator=gen))
             for k, s in torchvision_resnet34_shapes().items()}
    path = tmp_path_factory.mktemp("weights") / "resnet34.pth"
    torch.save(state, path)
    return path, state


# --- ResUNet34 -----------------------------------------------------------------------------

def test_resunet_output_shape() -> None:
    model = ResUNet34(in_channels=3, out_channels=16, width=0.25)
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 16, 64, 64)
    assert model(torch.rand(1, 3, 32, 96)).shape == (1, 16, 32, 96)


def test_resunet_rejects_sizes_not_multiple_of_32() -> None:
    model = ResUNet34(out_channels=8, width=0.125)
    with pytest.raises(ValueError, match="48x64"):
        model(torch.rand(1, 3, 48, 64))
    with pytest.raises(ValueError, match="expects"):
        model(torch.rand(1, 1, 64, 64))


def test_encoder_keys_are_torchvision_resnet34() -> None:
    encoder = ResNet34Encoder()
    expected = {k: s for k, s in torchvision_resnet34_shapes().items() if not k.startswith("fc.")}
    state = encoder.state_dict()
    assert list(state) == list(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert sum(p.numel() for p in encoder.parameters()) == _RESNET34_TRUNK_PARAMETERS
    unet_keys = [k.removeprefix("encoder.") for k in ResUNet34().state_dict()
                 if k.startswith("encoder.")]
    assert unet_keys == list(expected)


def test_load_torchvision_resnet34_sets_weights(resnet34_file: tuple[Path, dict]) -> None:
    path, state = resnet34_file
    model = ResUNet34(out_channels=4)
    head_before = model.head.weight.clone()
    loaded = load_torchvision_resnet34(model, path)
    encoder_state = model.encoder.state_dict()
    assert loaded == list(encoder_state)
    for key, value in encoder_state.items():
        assert torch.equal(value, state[key]), key
    assert torch.equal(model.head.weight, head_before)


def test_load_without_num_batches_tracked(tmp_path: Path) -> None:
    state = {k: v for k, v in cheap_state_dict().items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    encoder = ResNet34Encoder()
    loaded = load_torchvision_resnet34(encoder, tmp_path / "old.pth")
    assert len(loaded) == len(state) - 2  # fc.weight, fc.bias ignored
    assert torch.all(encoder.bn1.weight == 0.5)


def test_load_adapts_conv1_to_one_channel(resnet34_file: tuple[Path, dict]) -> None:
    path, state = resnet34_file
    encoder = ResNet34Encoder(in_channels=1)
    load_torchvision_resnet34(encoder, path)
    rgb = state["conv1.weight"]
    torch.testing.assert_close(encoder.conv1.weight, rgb.mean(dim=1, keepdim=True) * 3.0)
    torch.testing.assert_close(encoder.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


@pytest.mark.parametrize("in_channels", [1, 2, 4, 6])
def test_adapted_conv1_keeps_grey_response(in_channels: int) -> None:
    rgb = torch.randn(8, 3, 7, 7, dtype=torch.float64)
    grey = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    adapted = adapt_conv1_weight(rgb, in_channels)
    assert adapted.shape == (8, in_channels, 7, 7)
    expected = torch.nn.functional.conv2d(grey.expand(1, 3, 16, 16), rgb)
    got = torch.nn.functional.conv2d(grey.expand(1, in_channels, 16, 16), adapted)
    torch.testing.assert_close(got, expected)
    if in_channels > 3:
        torch.testing.assert_close(adapted[:, :3], rgb * 3.0 / in_channels)


def test_load_rejects_width_not_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="width"):
        load_torchvision_resnet34(ResUNet34(width=0.5), tmp_path / "any.pth")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"nope\.pth"):
        load_torchvision_resnet34(ResNet34Encoder(), tmp_path / "nope.pth")


@pytest.mark.parametrize("kind", ["garbage", "truncated", "not_a_dict"])
def test_load_corrupt_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.pth"
    if kind == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "truncated":
        torch.save(cheap_state_dict(), path)
        path.write_bytes(path.read_bytes()[:1000])
    else:
        torch.save([torch.zeros(3)], path)
    with pytest.raises(PipelineError, match=rf"{kind}\.pth"):
        load_torchvision_resnet34(ResNet34Encoder(), path)


def test_load_wrong_shape(tmp_path: Path) -> None:
    state = cheap_state_dict()
    state["layer3.2.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(PipelineError, match=r"shape\.pth.*layer3\.2\.conv2\.weight"):
        load_torchvision_resnet34(ResNet34Encoder(), tmp_path / "shape.pth")


def test_load_missing_and_unexpected_keys(tmp_path: Path) -> None:
    state = cheap_state_dict()
    del state["layer2.0.downsample.1.running_var"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(PipelineError, match=r"missing\.pth.*layer2\.0\.downsample\.1\.running_var"):
        load_torchvision_resnet34(ResNet34Encoder(), tmp_path / "missing.pth")
    state = cheap_state_dict()
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(PipelineError, match=r"extra\.pth.*layer5\.0\.conv1\.weight"):
        load_torchvision_resnet34(ResNet34Encoder(), tmp_path / "extra.pth")


def test_resunet_gradcheck() -> None:
    torch.manual_seed(0)
    model = ResUNet34(in_channels=1, out_channels=2, width=0.125).double().eval()
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,), fast_mode=True)
    weight = model.encoder.conv1.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda w: functional_call(model, {"encoder.conv1.weight": w}, (x.detach(),)),
        (weight,), fast_mode=True)


# --- NormalNet -----------------------------------------------------------------------------

def _alpha(height: int, width: int) -> torch.Tensor:
    """(1, 1, H, W) matte: 0.9 on the left half, 0.1 on the right."""
    alpha = torch.full((1, 1, height, width), 0.1)
    alpha[..., : width // 2] = 0.9
    return alpha


@pytest.mark.parametrize("norm", ["instance", "batch", "group"])
def test_normal_net_output(norm: str) -> None:
    torch.manual_seed(0)
    net = NormalNet(ngf=4, n_downsample=2, n_blocks=1, norm=norm)
    alpha = _alpha(16, 16).expand(2, 1, 16, 16)
    out = net(torch.rand(2, 3, 16, 16), alpha)
    assert out.shape == (2, 3, 16, 16)
    length = out.norm(dim=1)
    torch.testing.assert_close(length[:, :, :8], torch.ones(2, 16, 8))
    assert torch.all(out[..., 8:] == 0)


def test_normal_net_rejects_bad_input() -> None:
    net = NormalNet(ngf=4, n_downsample=2, n_blocks=1)
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 3, 18, 16), torch.ones(1, 1, 18, 16))
    with pytest.raises(ValueError, match="alpha"):
        net(torch.rand(1, 3, 16, 16), torch.ones(1, 3, 16, 16))
    with pytest.raises(ValueError, match="norm"):
        NormalNet(norm="layer")  # type: ignore[arg-type]


def test_normal_net_gradcheck() -> None:
    torch.manual_seed(0)
    net = NormalNet(ngf=2, n_downsample=1, n_blocks=1).double()
    image = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    alpha = (_alpha(8, 8).double() + 0.05 * torch.rand(1, 1, 8, 8)).requires_grad_()
    assert torch.autograd.gradcheck(net, (image, alpha))
    name = "model.1.weight"  # the first 7×7 conv
    weight = dict(net.named_parameters())[name].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda w: functional_call(net, {name: w}, (image.detach(), alpha.detach())), (weight,),
        fast_mode=True)


# --- normal_loss and decode_normals ----------------------------------------------------------

def _unit_map(seed: int, shape: tuple[int, ...] = (2, 3, 4, 5)) -> torch.Tensor:
    """(B, 3, H, W) random unit normals facing the camera (n_z < 0)."""
    n = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    n[:, 2] = -n[:, 2].abs() - 0.1
    return torch.nn.functional.normalize(n, dim=1)


def test_normal_loss_identical_is_zero() -> None:
    n = _unit_map(0)
    loss = normal_loss(n, n.clone(), torch.ones(2, 1, 4, 5, dtype=torch.bool))
    for value in loss.values():
        assert abs(value.item()) < 1e-6


def test_normal_loss_opposite_normals() -> None:
    n = torch.tensor([0.6, 0.0, -0.8]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    loss = normal_loss(n, -n, torch.ones(1, 1, 2, 2))
    assert loss["cos"].item() == pytest.approx(2.0)
    assert loss["l1"].item() == pytest.approx(2 * (0.6 + 0.8) / 3)
    assert loss["total"].item() == pytest.approx(2.0 + 2 * 1.4 / 3)


def test_normal_loss_mask_excludes_pixels() -> None:
    target = _unit_map(1)
    pred = target.clone()
    pred[..., 3:] = -target[..., 3:]
    mask = torch.zeros(2, 1, 4, 5)
    mask[..., :3] = 1.0
    for m in (mask, mask.bool()):
        loss = normal_loss(pred, target, m)
        assert loss["total"].item() == pytest.approx(0.0, abs=1e-6)
    assert normal_loss(pred, target, torch.ones_like(mask))["cos"].item() == pytest.approx(0.8)


def test_normal_loss_empty_mask() -> None:
    pred = _unit_map(2).clone()
    pred[0, :, 0, 0] = 0.0  # a zero vector must not bring NaN either
    pred.requires_grad_()
    loss = normal_loss(pred, torch.zeros(2, 3, 4, 5), torch.zeros(2, 1, 4, 5, dtype=torch.bool))
    assert all(v.item() == 0.0 for v in loss.values())
    loss["total"].backward()
    assert pred.grad is not None and torch.all(pred.grad == 0)


def test_decode_normals_round_trip() -> None:
    n = _unit_map(3)
    n[:, :, 0, 0] = 0.0  # background
    encoded = torch.where(n.abs().sum(1, keepdim=True) > 0, (n + 1) / 2 * 255, 0.0)
    encoded = encoded.round().to(torch.uint8)
    decoded = decode_normals(encoded)
    assert decoded.dtype == torch.float32
    assert torch.all(decoded[:, :, 0, 0] == 0)
    cosine = (decoded * n).sum(1)[:, 1:, :]
    assert torch.all(torch.acos(cosine.clamp(max=1.0)) < math.radians(1.0))
    torch.testing.assert_close(decode_normals(encoded.float() / 255.0), decoded)
    channels_last = decode_normals(encoded.permute(0, 2, 3, 1), dim=-1)
    torch.testing.assert_close(channels_last, decoded.permute(0, 2, 3, 1))

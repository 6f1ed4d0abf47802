"""PIFu and Temporal PIFu networks (models/pifu/): shapes, the residual classifier,
intermediate supervision, the temporal feature order and the z feature."""

from __future__ import annotations

import pytest
import torch

from models.pifu import PifuConfig, get_model, pifu_loss
from models.pifu.classifier import SurfaceClassifier
from models.pifu.hgfilter import HGFilter
from models.pifu.model import normalised_depth

TINY = {"input_size": 32, "channels": 16, "n_stacks": 2, "hg_depth": 2, "mlp_dims": [32, 16]}
F_PX, DEPTH, S = 100.0, 2.0, 64


def _batch(frames: int | None, b: int = 2) -> dict[str, torch.Tensor]:
    """Cameras looking down +Z from 2 m; ``frames`` None: PIFu's unframed tensors."""
    lead = (b,) if frames is None else (b, frames)
    K = torch.tensor([[F_PX, 0, (S - 1) / 2], [0, F_PX, (S - 1) / 2], [0, 0, 1]])
    return {"images": torch.rand(*lead, 3, S, S),
            "camera_K": K.expand(*lead, 3, 3).clone(),
            "camera_R": torch.eye(3).expand(*lead, 3, 3).clone(),
            "camera_t": torch.tensor([0.0, 0.0, DEPTH]).expand(*lead, 3).clone(),
            "body_centre": torch.zeros(b, 3)}


def test_paper_classifier_widths() -> None:
    widths = [(layer.in_channels, layer.out_channels) for layer in get_model({}).classifier.layers]
    assert widths == [(257, 1024), (1281, 512), (769, 256), (513, 128), (385, 1)]
    temporal = get_model({"temporal": True}).classifier.layers
    assert temporal[0].in_channels == 769 and temporal[1].in_channels == 1024 + 769


def test_hgfilter_gives_one_quarter_map_per_stack() -> None:
    maps = HGFilter(n_stacks=3, depth=2, channels=16, norm="group")(torch.rand(2, 3, 32, 32))
    assert len(maps) == 3 and all(m.shape == (2, 16, 8, 8) for m in maps)


def test_classifier_layers_read_the_input_again() -> None:
    torch.manual_seed(0)
    clf = SurfaceClassifier(5, [4, 3])
    assert [layer.in_channels for layer in clf.layers] == [5, 4 + 5, 3 + 5]
    with torch.no_grad():  # cut the first layer: the output still depends on the input
        clf.layers[0].weight.zero_()
        clf.layers[0].bias.zero_()
    x = torch.rand(2, 5, 7)
    assert clf(x).shape == (2, 1, 7)
    assert not torch.allclose(clf(x), clf(x + 1.0))


@pytest.mark.parametrize("temporal", [False, True])
def test_logits_per_stack_and_occupancy_shapes(temporal: bool) -> None:
    model = get_model({**TINY, "temporal": temporal})
    batch = _batch(3 if temporal else None)
    points = torch.rand(2, 20, 3) * 0.2 - 0.1
    logits, inside = model.logits(batch, points)
    assert len(logits) == 2 and all(x.shape == (2, 20) for x in logits)
    assert inside.all()
    occ = model(batch, points)
    assert occ.shape == (2, 20) and ((occ >= 0) & (occ <= 1)).all()


def test_wrong_frame_count_is_refused() -> None:
    with pytest.raises(ValueError, match="1 frame\\(s\\) per item, the model expects 3"):
        get_model({**TINY, "temporal": True}).logits(_batch(None), torch.zeros(2, 4, 3))


def test_intermediate_supervision_is_the_mean_over_stacks() -> None:
    model = get_model(TINY)
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    logits = [torch.tensor([[2.0, -1.0, 0.0]]), torch.tensor([[0.0, 0.0, 3.0]])]
    inside = torch.ones(1, 3, dtype=torch.bool)
    expected = torch.stack([((torch.sigmoid(x) - labels) ** 2).mean() for x in logits]).mean()
    torch.testing.assert_close(pifu_loss(logits, inside, labels), expected)
    # every stack's head gets a gradient: the first stack is supervised too
    batch, points = _batch(None, b=1), torch.rand(1, 8, 3) * 0.1
    out, inside = model.logits(batch, points)
    pifu_loss(out, inside, torch.ones(1, 8)).backward()
    assert model.image_filter.outs[0].weight.grad.abs().sum() > 0


def test_tanh_trains_on_plus_minus_one() -> None:
    model = get_model({**TINY, "last_op": "tanh"})
    logits, inside = [torch.tensor([[10.0, -10.0]])], torch.ones(1, 2, dtype=torch.bool)
    assert pifu_loss(logits, inside, torch.tensor([[1.0, 0.0]]), "tanh") < 1e-6
    torch.testing.assert_close(model.occupancy_of(logits[0], inside),
                               torch.tensor([[1.0, 0.0]]))


def test_points_outside_the_crop_get_zero() -> None:
    model = get_model(TINY)
    points = torch.tensor([[[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]])  # the second far to the side
    logits, inside = model.logits(_batch(None, b=1), points)
    assert inside.tolist() == [[True, False]]
    assert model.occupancy_of(logits[-1], inside)[0, 1] == 0


def test_temporal_features_are_frames_in_order_then_z() -> None:
    model = get_model({**TINY, "temporal": True})
    batch = _batch(3, b=1)
    C = TINY["channels"]
    maps = torch.stack([torch.full((C, 4, 4), float(t)) for t in range(3)])  # frame t: value t
    cams = {k[len("camera_"):]: v for k, v in batch.items() if k.startswith("camera_")}
    points = torch.tensor([[[0.0, 0.0, 0.1]]])
    x, _ = model.point_features(maps, points, cams, batch["body_centre"], S)
    assert x.shape == (1, 3 * C + 1, 1)
    assert x[0, :C].eq(0).all() and x[0, C:2 * C].eq(1).all() and x[0, 2 * C:3 * C].eq(2).all()
    expected_z = 0.1 * F_PX / DEPTH / (S / 2)
    torch.testing.assert_close(x[0, -1, 0], torch.tensor(expected_z))


def test_normalised_depth_is_zero_at_the_centre_and_linear() -> None:
    batch = _batch(None, b=1)
    cams = {k[len("camera_"):]: v for k, v in batch.items() if k.startswith("camera_")}
    points = torch.tensor([[[0.0, 0.0, 0.0], [0.3, -0.2, -0.25]]])
    z = normalised_depth(points, torch.zeros(1, 3), cams, S)
    torch.testing.assert_close(z, torch.tensor([[0.0, -0.25 * F_PX / DEPTH / (S / 2)]]))
    weak = {"R": torch.eye(3)[None], "scale": torch.tensor([50.0]), "trans": torch.zeros(1, 2)}
    torch.testing.assert_close(normalised_depth(points, torch.zeros(1, 3), weak, S),
                               torch.tensor([[0.0, -0.25 * 50.0 / (S / 2)]]))


@pytest.mark.parametrize("change, message", [
    ({"last_op": "relu"}, "last_op"), ({"window": 2}, "window"),
    ({"input_size": 100}, "multiple of 16"), ({"norm": "layer"}, "norm")])
def test_bad_config_is_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PifuConfig(**change)

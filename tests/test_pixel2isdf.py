"""Pixel2ISDF blocks (models/pixel2isdf/): projection, fusion, SDF head, losses, the whole
network. Tiny fixtures made here; closeness assertions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.blocks.projection import (
    pixel_to_grid,
    project_calibrated,
    project_weak_perspective,
    sample_vertex_features,
)
from models.pixel2isdf.fusion import ViewFusion, masked_mean_var
from models.pixel2isdf.losses import eikonal, sdf_gradient, sdf_losses, sign_accuracy, truncated_l2
from models.pixel2isdf.sdf_head import SDFHead, positional_encoding
from pipeline.camera import Camera


def test_project_calibrated_matches_camera() -> None:
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0.5, 64.0], [0, 310.0, 60.0], [0, 0, 1]])
    angle = 0.3
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    t = np.array([0.1, -0.2, 3.0])
    points = rng.normal(size=(50, 3)) * 0.4
    cam = Camera(K=K, R=R, t=t, width=128, height=128)
    uv_ref, z_ref = cam.project(points)
    uv, z = project_calibrated(torch.tensor(points)[None], torch.tensor(K)[None],
                               torch.tensor(R)[None], torch.tensor(t)[None])
    torch.testing.assert_close(uv[0], torch.tensor(uv_ref))
    torch.testing.assert_close(z[0], torch.tensor(z_ref))


def test_project_weak_perspective() -> None:
    points = torch.tensor([[[1.0, 2.0, 3.0]]])
    uv, depth = project_weak_perspective(points, torch.eye(3)[None], torch.tensor([2.0]),
                                         torch.tensor([[10.0, 20.0]]))
    torch.testing.assert_close(uv, torch.tensor([[[12.0, 24.0]]]))
    torch.testing.assert_close(depth, torch.tensor([[3.0]]))


def test_pixel_to_grid_maps_the_crop_area() -> None:
    grid = pixel_to_grid(torch.tensor([[-0.5, -0.5], [63.5, 63.5], [31.5, 31.5]]), 64)
    torch.testing.assert_close(grid, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))


def _camera(size: int = 16) -> dict[str, torch.Tensor]:
    K = torch.tensor([[[20.0, 0, (size - 1) / 2], [0, 20.0, (size - 1) / 2], [0, 0, 1]]])
    return {"K": K, "R": torch.eye(3)[None], "t": torch.tensor([[0.0, 0.0, 2.0]])}


def test_sample_vertex_features_reads_the_projected_pixel() -> None:
    size = 16
    features = torch.arange(2 * size * size, dtype=torch.float32).reshape(1, 2, size, size)
    cam = _camera(size)
    # a vertex that projects exactly onto pixel (u, v) = (3, 12): x = (u - c) z / f
    c = (size - 1) / 2
    vertex = torch.tensor([[[(3 - c) * 2.0 / 20.0, (12 - c) * 2.0 / 20.0, 0.0],
                            [0.0, 0.0, -5.0],  # behind the camera
                            [5.0, 0.0, 0.0]]])  # far outside the crop
    out, valid = sample_vertex_features(features, vertex, cam, size)
    torch.testing.assert_close(out[0, 0], features[0, :, 12, 3])
    assert valid.tolist() == [[True, False, False]]
    assert out[0, 1:].abs().sum() == 0


def test_sample_vertex_features_is_resolution_independent() -> None:
    size = 32
    base = torch.linspace(0, 1, size)
    ramp = (base[None, :] + 2 * base[:, None])[None, None]  # linear in u and v
    half = torch.nn.functional.interpolate(ramp, size=(16, 16), mode="bilinear",
                                           align_corners=False)
    vertices = torch.tensor([[[0.05, -0.1, 0.0], [-0.2, 0.15, 0.1]]])
    cam = _camera(size)
    full_f, _ = sample_vertex_features(ramp, vertices, cam, size)
    half_f, _ = sample_vertex_features(half, vertices, cam, size)
    torch.testing.assert_close(full_f, half_f, atol=2e-2, rtol=0)


def test_masked_mean_var() -> None:
    f = torch.tensor([1.0, 3.0, 100.0]).reshape(1, 3, 1, 1)
    valid = torch.tensor([True, True, False]).reshape(1, 3, 1)
    mean, var = masked_mean_var(f, valid)
    assert mean.item() == pytest.approx(2.0) and var.item() == pytest.approx(1.0)


def test_fusion_weights_and_invariance() -> None:
    torch.manual_seed(0)
    fusion = ViewFusion(in_channels=5, hidden=8, latent_dim=6)
    feats = torch.randn(2, 4, 7, 5)
    valid = torch.rand(2, 4, 7) > 0.3
    valid[0, :, 0] = False  # a vertex no view sees
    feats = feats * valid.unsqueeze(-1)
    codes, weights = fusion(feats, valid)
    assert codes.shape == (2, 7, 6) and weights.shape == (2, 4, 7)
    assert (weights[~valid] == 0).all()
    seen = valid.any(dim=1)
    torch.testing.assert_close(weights.sum(dim=1)[seen], torch.ones(int(seen.sum())))
    assert weights[0, :, 0].sum() == 0
    # the order of the inputs does not matter, and neither do invalid inputs' values
    perm = torch.tensor([2, 0, 3, 1])
    codes_perm, _ = fusion(feats[:, perm], valid[:, perm])
    torch.testing.assert_close(codes, codes_perm, atol=1e-6, rtol=1e-5)
    noisy = torch.where(valid.unsqueeze(-1), feats, torch.randn_like(feats))
    torch.testing.assert_close(fusion(noisy, valid)[0], codes)
    # any number of inputs
    assert fusion(torch.randn(1, 11, 7, 5), torch.ones(1, 11, 7, dtype=torch.bool))[0].shape \
        == (1, 7, 6)


def test_fusion_of_repeated_views_equals_theirs_alone() -> None:
    """What ``train.min_views`` relies on: k views each repeated K / k times fuse to the
    code of the k views."""
    torch.manual_seed(0)
    fusion = ViewFusion(in_channels=5, hidden=8, latent_dim=6)
    feats = torch.randn(1, 2, 7, 5)
    valid = torch.rand(1, 2, 7) > 0.3
    feats = feats * valid.unsqueeze(-1)
    alone, _ = fusion(feats, valid)
    repeat = torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(fusion(feats[:, repeat], valid[:, repeat])[0], alone)
    one, _ = fusion(feats[:, :1], valid[:, :1])
    torch.testing.assert_close(fusion(feats[:, [0] * 4], valid[:, [0] * 4])[0], one)


def test_fusion_gradcheck() -> None:
    torch.manual_seed(0)
    fusion = ViewFusion(3, 4, 2).double()
    feats = torch.randn(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    valid = torch.tensor([[[True, True], [True, False], [False, True]]])
    assert torch.autograd.gradcheck(lambda f: fusion(f, valid)[0], (feats,))


def test_positional_encoding() -> None:
    x = torch.tensor([[0.25, -0.5, 1.0]])
    pe = positional_encoding(x, 2)
    assert pe.shape == (1, 3 + 12)
    torch.testing.assert_close(pe[0, :3], x[0])
    # sin block: x-major over frequencies (x·π, x·2π, y·π, ...)
    torch.testing.assert_close(pe[0, 3:5], torch.sin(torch.tensor([0.25 * math.pi,
                                                                   0.5 * math.pi])))


def _zero_crossing_radii(head: SDFHead, latent_dim: int, n_dirs: int = 100) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    d = torch.nn.functional.normalize(torch.randn(n_dirs, 3, generator=gen), dim=-1)
    r = torch.linspace(0, 1.5, 301)
    x = (d[:, None, :] * r[None, :, None]).reshape(1, -1, 3)
    latent = torch.randn(1, x.shape[1], latent_dim, generator=gen)
    f = head(latent, x).reshape(n_dirs, 301).detach()
    assert (f[:, 0] < 0).all() and (f[:, -1] > 0).all()
    return r[(f > 0).float().argmax(dim=1)]


@pytest.mark.parametrize("seed", [0, 1])
def test_geometric_init_is_a_sphere(seed: int) -> None:
    torch.manual_seed(seed)
    head = SDFHead(latent_channels=8, hidden=256, n_layers=4, n_freqs=4, skip=2,
                   init_radius=0.6)
    radii = _zero_crossing_radii(head, 8)
    assert radii.mean().item() == pytest.approx(0.6, rel=0.1)
    assert radii.min() > 0.4 and radii.max() < 0.9
    # the latent and the encoding's frequencies do not move it before training
    x = torch.randn(1, 64, 3)
    torch.testing.assert_close(head(torch.randn(1, 64, 8), x), head(torch.zeros(1, 64, 8), x))


def test_sdf_head_skip_must_be_hidden() -> None:
    with pytest.raises(ValueError, match="skip"):
        SDFHead(4, hidden=8, n_layers=3, skip=3)


def test_truncated_l2_hand_made() -> None:
    pred = torch.tensor([[0.0, 0.3, -0.01]])
    target = torch.tensor([[0.02, 1.0, -0.5]])
    # clamped at δ = 0.1: diffs -0.02, 0 (both clamp to 0.1), 0.09
    assert truncated_l2(pred, target, 0.1).item() == pytest.approx((0.02**2 + 0.09**2) / 3)


def test_truncated_l2_moves_wrong_sided_saturated_points() -> None:
    pred = torch.tensor([[-0.5, 0.5, -0.5]], requires_grad=True)
    target = torch.tensor([[0.3, 0.3, -0.3]])
    loss = truncated_l2(pred, target, 0.1)
    assert loss.item() == pytest.approx((0.2**2) / 3)  # equation (7)'s value
    loss.backward()
    assert pred.grad[0, 0] < 0  # wrong side: pushed up towards the target
    assert pred.grad[0, 1] == 0 and pred.grad[0, 2] == 0  # right side beyond δ: saturated


def test_eikonal_of_exact_distance_is_zero() -> None:
    points = torch.randn(1, 100, 3, requires_grad=True)
    sdf = points.norm(dim=-1) - 0.5
    assert eikonal(sdf_gradient(sdf, points)).item() == pytest.approx(0.0, abs=1e-10)
    double = 2 * (points.norm(dim=-1) - 0.5)  # |∇| = 2 everywhere → (2 − 1)² = 1
    assert eikonal(sdf_gradient(double, points)).item() == pytest.approx(1.0)


def test_sdf_losses_total_and_second_order_gradient() -> None:
    w = torch.tensor(1.5, requires_grad=True)
    points = torch.randn(1, 20, 3, requires_grad=True)
    pred = w * points.norm(dim=-1)
    terms = sdf_losses(pred, torch.zeros(1, 20), points, delta=10.0, eikonal_weight=0.5)
    assert terms["eikonal"].item() == pytest.approx(0.25)
    assert terms["total"].item() == pytest.approx(terms["sdf"].item() + 0.125)
    terms["eikonal"].backward()  # d/dw (w − 1)² = 2 (w − 1) = 1
    assert w.grad.item() == pytest.approx(1.0)


def test_sign_accuracy() -> None:
    pred = torch.tensor([[-0.01, 0.01, 0.5, -0.5]])
    target = torch.tensor([[-0.005, -0.01, 0.5, 0.5]])
    assert sign_accuracy(pred, target, band=0.02).item() == pytest.approx(0.5)
    assert math.isnan(sign_accuracy(pred, target, band=1e-4).item())


# --- the whole network -------------------------------------------------------------------

TINY = {"input": "image", "input_size": 64, "feature_channels": 4, "geometry_width": 0.125,
        "fusion_hidden": 8, "latent_dim": 4, "volume_resolution": 24, "diffusion_width": 0.25,
        "head_hidden": 64, "head_layers": 3, "head_skip": 2, "n_freqs": 2,
        "sparse_backend": "torch", "init_radius": 1.0}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """A batch of 2 tiny fake subjects (sphere bodies, 2 views each) from real cache files."""
    from models.data import Pixel2ISDFDataset
    from tests.cache_fakes import build

    root = tmp_path_factory.mktemp("p2i")
    paths = [build(root / f"s{i}", output=root / f"s{i}.h5", seed=i) for i in range(2)]
    dataset = Pixel2ISDFDataset(paths, n_views=2, n_points=50, uint8_images=True,
                                with_normals=True)
    return torch.utils.data.default_collate([dataset[0], dataset[1]])


def _model(**overrides):
    from models.pixel2isdf import get_model

    torch.manual_seed(0)
    return get_model({**TINY, **overrides})


def test_model_shapes_and_gradients(batch) -> None:
    model = _model()
    inputs = {k: v for k, v in batch.items() if k not in ("points", "sdf")}
    volume = model.encode(inputs)
    assert volume.shape == (24, 24, 24) and len(volume.levels) == 4
    assert [lvl.shape[1] for lvl in volume.levels] == [8, 16, 32, 32]  # 0.25 × NeuralBody's
    points = batch["points"].requires_grad_(True)
    sdf = model.query(volume, points)
    assert sdf.shape == (2, 50)
    grad = sdf_gradient(sdf, points)
    loss = truncated_l2(sdf, batch["sdf"], 0.05) + eikonal(grad)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # geometric init: the head's latent inputs start with zero weights, which get gradients
    assert model.head.layers[0].weight.grad[:, :volume.levels[0].shape[1]].abs().sum() > 0
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    sdf = model(inputs, batch["points"])
    truncated_l2(sdf, batch["sdf"], 0.05).backward()
    for block in ("geometry.", "fusion.", "diffusion."):  # ... and then open the path
        assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters()
                   if n.startswith(block)), f"no gradient reaches {block}"


def test_untrained_model_sphere_encloses_the_body(batch) -> None:
    """The fake body is a sphere of radius 0.3 m; the cube's half side 0.3 · (1 + 2 · 0.5)."""
    model = _model(volume_padding=0.5).eval()
    inputs = {k: v for k, v in batch.items() if k not in ("points", "sdf")}
    with torch.no_grad():
        volume = model.encode(inputs)
        inside = model.query(volume, batch["canonical_vertices"])
        corners = volume.centre[:, None] + volume.half[:, None, None] * torch.tensor(
            [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
            dtype=torch.float32)
        outside = model.query(volume, corners)
    assert (inside < 0).all() and (outside > 0).all()


def test_model_takes_any_number_of_views(batch) -> None:
    model = _model().eval()
    one = {k: (v[:, :1] if v.ndim >= 2 and v.shape[1] == 2 and k != "canonical_vertices"
               and k not in ("points", "sdf") else v) for k, v in batch.items()}
    inputs = {k: v for k, v in one.items() if k not in ("points", "sdf")}
    with torch.no_grad():
        assert model(inputs, batch["points"]).shape == (2, 50)


def test_oracle_normal_input_reads_the_truth_maps(batch) -> None:
    model = _model(input="oracle_normal")
    maps = model.input_maps(batch["images"][0], batch["alphas"][0], batch["normals"][0])
    assert maps.shape == (2, 3, 64, 64)
    norms = maps.norm(dim=1)
    assert torch.allclose(norms[norms > 0], torch.ones(1), atol=1e-2)
    with pytest.raises(ValueError, match="truth normals"):
        model.input_maps(batch["images"][0], batch["alphas"][0])


def test_normal_input_needs_the_normal_config() -> None:
    from models.pixel2isdf import get_model

    with pytest.raises(ValueError, match="normal network"):
        get_model({**TINY, "input": "normal"})
    with pytest.raises(ValueError, match="unknown keys"):
        get_model({**TINY, "volume_res": 3})

"""Sparse voxel tensors, sparse convolutions (torch and spconv backends), level sampling and
NeuralBody's SparseConvNet, against dense PyTorch references on tiny grids."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from models.pixel2isdf.diffusion import SparseConvNet, diffuse_and_sample
from models.sparse import SparseTensor, densify, make_layers, sample_levels, voxelize
from models.sparse import torch_backend as tb
from models.sparse.sampling import sample_dense, sample_sparse
from models.sparse.tensor import linear_keys
from pipeline.errors import PipelineError

PATHS = ["gather", "scatter", "dense"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and OpenMP's spin-waits make them
    erratic on a busy 2-core machine; tests that need threads set them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_sparse(shape=(12, 12, 12), p=0.2, channels=3, batch=2, seed=0,
                  dtype=torch.float64) -> SparseTensor:
    """Random active sites (a column-major ``nonzero`` result, as spconv must cope with)."""
    g = torch.Generator().manual_seed(seed)
    coords = (torch.rand(batch, *shape, generator=g) < p).nonzero().int()
    feats = torch.randn(coords.shape[0], channels, generator=g, dtype=dtype)
    return SparseTensor(feats, coords, shape, batch)


def rows_at(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``(B, C, D, H, W)`` read at ``(M, 4)`` coords → ``(M, C)``."""
    c = coords.long()
    return dense.permute(0, 2, 3, 4, 1)[c[:, 0], c[:, 1], c[:, 2], c[:, 3]]


def dense_weight(layer: torch.nn.Module) -> torch.Tensor:
    """The layer's canonical ``(kD, kH, kW, C_in, C_out)`` weight as F.conv3d's."""
    return layer.weight.permute(4, 3, 0, 1, 2)


def assert_close_scaled(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-5) -> None:
    """|got - want| ≤ tol · max(1, max|want|): float32 sums over thousands of sites."""
    scale = max(1.0, float(want.detach().abs().max()))
    torch.testing.assert_close(got, want, rtol=0, atol=tol * scale)


def grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 1) -> list[torch.Tensor]:
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return list(torch.autograd.grad(out, inputs, g))


# --- tensor ---------------------------------------------------------------------------------

def test_voxelize_averages_and_orders_axes():
    points = torch.tensor([[[3.0, 1.0, 2.0], [3.2, 0.9, 2.1], [0.0, 0.0, 0.0], [9.0, 0.0, 0.0],
                            [-0.6, 0.0, 0.0]]])
    feats = torch.tensor([[[1.0], [3.0], [5.0], [7.0], [9.0]]], requires_grad=True)
    t = voxelize(points, feats, torch.zeros(1, 3), torch.ones(1), (4, 3, 5))
    # x → W (5), y → H (3), z → D (4); (9, 0, 0) and (-0.6, 0, 0) fall outside and are dropped.
    assert t.coords.tolist() == [[0, 0, 0, 0], [0, 2, 1, 3]]
    assert t.features[:, 0].tolist() == [5.0, 2.0]
    assert t.spatial_shape == (4, 3, 5) and t.coords.dtype == torch.int32
    (g,) = torch.autograd.grad(t.features.sum(), feats)
    assert g[0, :, 0].tolist() == [0.5, 0.5, 1.0, 0.0, 0.0]


def test_voxelize_origin_voxel_size_and_batches():
    origin = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    size = torch.tensor([0.5, 2.0])
    points = torch.tensor([[[2.0, 2.5, 3.0]], [[2.0, 4.0, 6.0]]])  # both → x 2, y 1|2, z 0|3
    t = voxelize(points, torch.ones(2, 1, 1), origin, size, (4, 4, 4))
    assert t.coords.tolist() == [[0, 0, 1, 2], [1, 3, 2, 1]]


def test_densify_places_features():
    t = random_sparse(channels=2)
    t.features.requires_grad_()
    dense = densify(t)
    assert dense.shape == (2, 2, 12, 12, 12)
    assert torch.equal(rows_at(dense, t.coords), t.features)
    assert int((dense.abs().sum(1) > 0).sum()) == t.features.shape[0]
    (g,) = torch.autograd.grad(dense.sum(), t.features)
    assert torch.equal(g, torch.ones_like(g))


# --- torch backend against F.conv3d --------------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
def test_subm_conv_matches_dense_conv(path):
    t = random_sparse(channels=3)
    t.features.requires_grad_()
    layer = tb.SubMConv3d(3, 4, indice_key="a", path=path).double()
    out = layer(t)
    assert torch.equal(out.coords, t.coords)
    ref = rows_at(F.conv3d(densify(t), dense_weight(layer), padding=1), t.coords)
    torch.testing.assert_close(out.features, ref, rtol=0, atol=1e-12)
    got = grads(out.features, [t.features, layer.weight])
    want = grads(ref, [t.features, layer.weight])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


@pytest.mark.parametrize("path", PATHS)
def test_strided_conv_matches_dense_conv(path):
    t = random_sparse(shape=(13, 12, 11), p=0.05, channels=3)
    t.features.requires_grad_()
    layer = tb.SparseConv3d(3, 5, path=path).double()
    out = layer(t)
    # Output sites: those whose 3³ receptive field (stride 2, padding 1) holds an active input.
    occupancy = torch.zeros(2, 1, 13, 12, 11, dtype=torch.float64)
    c = t.coords.long()
    occupancy[c[:, 0], 0, c[:, 1], c[:, 2], c[:, 3]] = 1
    reach = F.conv3d(occupancy, torch.ones(1, 1, 3, 3, 3, dtype=torch.float64), stride=2,
                     padding=1)
    assert out.spatial_shape == (7, 6, 6) == tuple(reach.shape[2:])
    assert out.coords.tolist() == (reach[:, 0] > 0).nonzero().tolist()  # sorted (b, z, y, x)
    ref = rows_at(F.conv3d(densify(t), dense_weight(layer), stride=2, padding=1), out.coords)
    torch.testing.assert_close(out.features, ref, rtol=0, atol=1e-12)
    got = grads(out.features, [t.features, layer.weight])
    want = grads(ref, [t.features, layer.weight])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


@pytest.mark.parametrize("path", PATHS)
def test_bf16_autocast_forward_and_backward(path):
    """Training under bf16 autocast (the trainer's CUDA default; CPU autocast here): fp32
    features and weights in, bf16 out, gradients in the inputs' dtypes and close to fp32's.
    The backward runs outside autocast, as the trainer's does."""
    t = random_sparse(channels=8, dtype=torch.float32)
    t.features.requires_grad_()
    layer = tb.SubMConv3d(8, 8, indice_key="a", path=path)
    want = layer(t).features
    want_grads = grads(want, [t.features, layer.weight])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(t).features
    assert out.dtype == torch.bfloat16
    got = grads(out.float(), [t.features, layer.weight])
    assert [g.dtype for g in got] == [torch.float32, torch.float32]
    assert_close_scaled(out.float(), want, tol=2e-2)
    for a, b in zip(got, want_grads, strict=True):
        assert_close_scaled(a, b, tol=3e-2)


def test_neighbour_map_is_cached_per_indice_key():
    t = random_sparse()
    a = tb.SubMConv3d(3, 3, indice_key="k").double()
    b = tb.SubMConv3d(3, 3, indice_key="k").double()
    out = b(a(t))
    maps = [v for k, v in t.cache.items() if k[0] == "torch"]
    assert len(maps) == 1 and out.cache is t.cache


@pytest.mark.parametrize("path", PATHS)
def test_torch_backend_is_deterministic(path):
    def run():
        torch.manual_seed(0)
        net = SparseConvNet(3, width=0.25, backend="torch")
        for module in net.modules():
            if hasattr(module, "path"):
                module.path = path
        t = random_sparse(shape=(16, 16, 16), p=0.1, dtype=torch.float32)
        t.features.requires_grad_()
        levels = net(t)
        loss = sum((level.features ** 2).mean() for level in levels)
        loss.backward()
        return [lv.features for lv in levels] + [t.features.grad] + [
            p.grad for p in net.parameters()]

    for a, b in zip(run(), run(), strict=True):
        assert torch.equal(a, b)


# --- spconv backend ------------------------------------------------------------------------

def compare_layers(kind: str, t: SparseTensor, c_out: int, threads: int = 2,
                   tol: float = 1e-5):
    """One torch-backend layer against the same spconv layer, run with ``threads`` torch
    threads (restored afterwards: the thread count is process-wide state)."""
    spconv_backend = pytest.importorskip("models.sparse.spconv_backend")
    pytest.importorskip("spconv")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        ref = getattr(tb, kind)(t.features.shape[1], c_out, indice_key="a").to(t.features.dtype)
        sp = getattr(spconv_backend, kind)(t.features.shape[1], c_out,
                                           indice_key="a").to(t.features.dtype)
        sp.load_state_dict(ref.state_dict())
        outs = []
        for layer in (ref, sp):
            x = SparseTensor(t.features.clone().requires_grad_(), t.coords, t.spatial_shape,
                             t.batch_size)
            out = layer(x)
            outs.append((out, *grads(out.features, [x.features, layer.weight])))
        threads_inside = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    (o1, *g1), (o2, *g2) = outs
    assert threads_inside == threads  # the backend restores the count after its own calls
    assert torch.equal(o1.coords, o2.coords) and o1.spatial_shape == o2.spatial_shape
    assert_close_scaled(o2.features, o1.features, tol)
    for a, b in zip(g2, g1, strict=True):
        assert_close_scaled(a, b, tol)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["SubMConv3d", "SparseConv3d"])
def test_spconv_matches_torch_backend(kind, threads):
    # float64: the backends sum in different orders, which float32 rounds differently (up to
    # ~2e-6 on one layer); in float64 they agree to ~1e-15, so 1e-12 is not a machine's luck.
    compare_layers(kind, random_sparse(p=0.2, channels=4, dtype=torch.float64), 5, threads,
                   tol=1e-12)


def test_spconv_cpu_multithreaded_scatter_is_guarded():
    # ~5k sites × 16 channels in float32, as training runs: large enough for spconv 2.3.8's
    # racy CPU scatter-add to go wrong with two threads (errors of 0.2–0.5 of the output)
    # unless the backend pins it to one thread. This layer's float32 rounding differences stay
    # at 2.5e-7 of the output's scale (measured, 1 and 2 threads): a 40x margin under the
    # 1e-5 tolerance, while the race lands 10^4x above it.
    t = random_sparse(shape=(32, 32, 32), p=0.15, channels=16, batch=1, dtype=torch.float32)
    compare_layers("SubMConv3d", t, 16, threads=2)


def test_spconv_eval_mode_keeps_gradients():
    spconv_backend = pytest.importorskip("models.sparse.spconv_backend")
    pytest.importorskip("spconv")
    layer = spconv_backend.SubMConv3d(3, 2, indice_key="a").eval()  # spconv#668
    t = random_sparse(dtype=torch.float32)
    t.features.requires_grad_()
    layer(t).features.sum().backward()
    assert t.features.grad is not None and layer.weight.grad.abs().sum() > 0


def test_spconv_cpu_stream_patch_is_idempotent():
    spconv_backend = pytest.importorskip("models.sparse.spconv_backend")
    pytest.importorskip("spconv")
    if torch.cuda.is_available():
        pytest.skip("the patch only applies without CUDA")
    spconv_backend.import_spconv()
    from spconv.pytorch import cppcore, ops

    assert spconv_backend.patch_cpu_streams() is False  # already applied
    assert cppcore.get_current_stream() == 0 and ops.get_current_stream() == 0


def test_sparse_conv_net_backends_agree():
    """The whole network (17 convs, each with BatchNorm) agrees across backends in float64.

    In float32 the two backends sum each output site's neighbours in different orders (and
    spconv's CPU scatter-add order follows its own index tables), and the batch norms divide
    by batch standard deviations as small as ~0.05, so the rounding differences grow level by
    level: up to 1.9e-5 absolute on outputs of magnitude ~1 were measured on a busy 2-core
    machine (the 1e-5 tolerance this test had), 2e-6 to 8e-6 on an idle one, with one or two
    threads alike. Neither order is wrong, so no float32 tolerance is a property of the code.
    In float64 both backends agree to ~1e-13 (measured, 1 and 2 threads): 1e-9 leaves a
    margin of four orders of magnitude while a wrong neighbour or weight (an error of the
    order of the features) still fails.
    """
    pytest.importorskip("spconv")
    t = random_sparse(shape=(16, 16, 16), p=0.15, channels=4, dtype=torch.float64)
    torch.manual_seed(0)
    ref = SparseConvNet(4, width=0.25, backend="torch").double()
    sp = SparseConvNet(4, width=0.25, backend="spconv").double()
    sp.load_state_dict(ref.state_dict())
    results = []
    for net in (ref, sp):
        x = SparseTensor(t.features.clone().requires_grad_(), t.coords, t.spatial_shape, 2)
        levels = net(x)
        loss = sum((lv.features * torch.linspace(-1, 1, lv.features.shape[1],
                                                 dtype=torch.float64)).sum()
                   for lv in levels)
        loss.backward()
        results.append((levels, x.features.grad, [p.grad for p in net.parameters()]))
    (l1, gx1, gp1), (l2, gx2, gp2) = results
    for a, b in zip(l1, l2, strict=True):
        assert torch.equal(a.coords, b.coords)
        assert_close_scaled(b.features, a.features, tol=1e-9)
    assert_close_scaled(gx2, gx1, tol=1e-9)
    for a, b in zip(gp1, gp2, strict=True):
        assert_close_scaled(b, a, tol=1e-9)


def test_missing_spconv_raises_pipeline_error(monkeypatch):
    for name in list(sys.modules):
        if name == "spconv" or name.startswith("spconv."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "spconv", None)  # makes `import spconv…` fail
    with pytest.raises(PipelineError, match=r'pip install -e "\.\[spconv\]"'):
        make_layers("spconv")
    with pytest.raises(PipelineError, match=r"spconv==2\.3\.8"):
        SparseConvNet(4, backend="spconv")


def test_make_layers_choices():
    assert make_layers("torch").name == "torch"
    assert make_layers("auto", "cpu").name == "torch"
    with pytest.raises(ValueError, match="sparse backend"):
        make_layers("minkowski")


# --- sampling --------------------------------------------------------------------------------

def level_fixture(stride: int, shape=(5, 4, 6), channels=3):
    t = random_sparse(shape=shape, p=0.5, channels=channels, batch=2, seed=stride)
    origin = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.5, -1.0]], dtype=torch.float64)
    voxel = torch.tensor([0.5, 0.25], dtype=torch.float64)
    return t, origin, voxel


def test_sample_levels_exact_at_voxel_centres():
    t4, origin, voxel = level_fixture(4)
    t2, _, _ = level_fixture(2)
    c4, c2 = t4.coords[t4.coords[:, 0] == 1][:7], t2.coords[t2.coords[:, 0] == 1][:7]
    for level, stride, c in ((t4, 4, c4), (t2, 2, c2)):
        xyz = c[:, 1:].flip(-1).double()  # (x, y, z) index
        points = origin[1] + xyz * stride * voxel[1]
        points = torch.stack([points, points])  # batch 0 reads other sites; only check batch 1
        for lv in (level, densify(level)):
            out = sample_levels([lv], points, origin, voxel, [stride])
            want = level.features[(level.coords[:, 0] == 1).nonzero()[:7, 0]]
            torch.testing.assert_close(out[1], want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 4, 6), (1, 4, 3)])
def test_sparse_sampling_equals_grid_sample(shape):
    t, _, _ = level_fixture(2, shape=shape)
    g = torch.Generator().manual_seed(3)
    index = torch.rand(2, 50, 3, generator=g, dtype=torch.float64) * 9 - 2  # some outside
    torch.testing.assert_close(sample_sparse(t, index), sample_dense(densify(t), index),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("sparse", [True, False])
def test_sample_levels_twice_differentiable(sparse):
    levels, strides = [], []
    for stride in (1, 2):
        t, origin, voxel = level_fixture(stride, shape=(3, 3, 3), channels=2)
        t.features.requires_grad_()
        levels.append(t if sparse else densify(t).detach().requires_grad_())
        strides.append(stride)
    g = torch.Generator().manual_seed(5)
    points = (origin[:, None] + torch.rand(2, 3, 3, generator=g, dtype=torch.float64) * 1.2
              ).requires_grad_()
    feats = [lv.features if sparse else lv for lv in levels]

    def f(p, *features):
        lv = [SparseTensor(x, t.coords, t.spatial_shape, 2) for x, t in
              zip(features, levels, strict=True)] if sparse else list(features)
        return sample_levels(lv, p, origin, voxel, strides)

    assert torch.autograd.gradcheck(f, (points, *feats))
    assert torch.autograd.gradgradcheck(f, (points, *feats))
    # Eikonal-style: |d out / d p| backpropagates to the features.
    (dp,) = torch.autograd.grad(f(points, *feats).sum(), points, create_graph=True)
    dp.norm(dim=-1).sum().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in feats)


# --- SparseConvNet ---------------------------------------------------------------------------

def test_sparse_conv_net_shapes_and_strides():
    net = SparseConvNet(5, width=0.5, backend="torch")
    assert net.strides == (2, 4, 8, 16)
    assert net.level_channels == (16, 32, 64, 64) and net.out_channels == 176
    assert SparseConvNet(5).out_channels == 352
    assert SparseConvNet(5, width=0.1).level_channels == (4, 6, 13, 13)
    t = random_sparse(shape=(16, 16, 16), p=0.1, channels=5, dtype=torch.float32)
    levels = net(t)
    assert [lv.spatial_shape for lv in levels] == [(8,) * 3, (4,) * 3, (2,) * 3, (1,) * 3]
    for lv, c in zip(levels, net.level_channels, strict=True):
        assert lv.features.shape == (lv.coords.shape[0], c)
        assert (lv.coords[:, 1:] < torch.tensor(lv.spatial_shape)).all()
        keys = linear_keys(lv.coords, lv.spatial_shape)
        assert (keys[1:] > keys[:-1]).all()


def test_diffuse_and_sample():
    net = SparseConvNet(4, width=0.25, backend="torch")
    g = torch.Generator().manual_seed(0)
    vertices = torch.rand(2, 300, 3, generator=g)
    codes = torch.randn(2, 300, 4, generator=g, requires_grad=True)
    points = torch.rand(2, 20, 3, generator=g, requires_grad=True)
    origin, voxel = torch.zeros(2, 3), torch.full((2,), 1 / 15)
    out = diffuse_and_sample(net, codes, vertices, points, origin, voxel, (16, 16, 16))
    assert out.shape == (2, 20, net.out_channels)
    (dp,) = torch.autograd.grad(out.sum(), points, create_graph=True)
    dp.square().sum().backward()
    assert codes.grad is not None and codes.grad.abs().sum() > 0

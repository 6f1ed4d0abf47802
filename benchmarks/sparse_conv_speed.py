"""Seconds for SparseConvNet forward and forward+backward, per sparse-conv backend (best of 5).

    python benchmarks/sparse_conv_speed.py [--size demo|paper|both] [--threads 2]

Input: a body-like surface point cloud (13,718 points on capsules: torso, head, arms, legs;
1.7 m tall) voxelised into a cube around it. Sizes:

* demo: 64³ grid, 16 input channels, width 0.5;
* paper: 224³ grid, 64 input channels, width 1.0 (NeuralBody / Pixel2ISDF scale).

Rows: the torch backend's paths (auto = the default per-layer choice, the baseline; gather =
one GEMM over gathered neighbours; scatter = per-offset gather–matmul–scatter; dense = masked
F.conv3d, demo size only) and spconv 2.3.8 (when installed; on CPU its convs run
single-threaded, see models/sparse/spconv_backend.py). All rows share the same weights.
CPU timings use ``torch.set_num_threads(2)`` (``--threads``); CUDA is timed too when available.
The neighbour maps are rebuilt in every repetition (a new subject is a new voxel set), as in
training. Each figure is the best of 5 runs after a warm-up: on a shared machine the minimum is
the least disturbed by other processes (OpenMP's 2-thread regions suffer most from them).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import time

import torch

from models.pixel2isdf.diffusion import SparseConvNet
from models.sparse import SparseTensor, voxelize

N_POINTS = 13_718
REPEATS = 5
SIZES = {"demo": (64, 16, 0.5), "paper": (224, 64, 1.0)}  # grid, in_channels, width

# (start, end, radius) in metres, y up: a crude standing body.
CAPSULES = [
    ((0.0, 1.00, 0.0), (0.0, 1.40, 0.0), 0.15),  # torso
    ((0.0, 1.55, 0.0), (0.0, 1.65, 0.0), 0.10),  # head
    ((-0.20, 1.40, 0.0), (-0.75, 1.35, 0.0), 0.05),  # arms
    ((0.20, 1.40, 0.0), (0.75, 1.35, 0.0), 0.05),
    ((-0.10, 0.95, 0.0), (-0.12, 0.08, 0.0), 0.07),  # legs
    ((0.10, 0.95, 0.0), (0.12, 0.08, 0.0), 0.07),
]


def body_points(n: int, seed: int = 0) -> torch.Tensor:
    """``(n, 3)`` points on the capsules' surfaces, spread by surface area."""
    g = torch.Generator().manual_seed(seed)
    areas = [2 * math.pi * r * math.dist(a, b) + 4 * math.pi * r * r for a, b, r in CAPSULES]
    counts = [round(n * a / sum(areas)) for a in areas]
    counts[0] += n - sum(counts)
    out = []
    for (a, b, r), m in zip(CAPSULES, counts, strict=True):
        a_t, b_t = torch.tensor(a), torch.tensor(b)
        t = torch.rand(m, 1, generator=g)
        direction = torch.nn.functional.normalize(torch.randn(m, 3, generator=g), dim=1)
        out.append(a_t + t * (b_t - a_t) + r * direction)  # a capsule-ish sausage surface
    return torch.cat(out)


def make_input(res: int, channels: int, device: torch.device) -> SparseTensor:
    """The body voxelised into a ``res³`` cube (5 % padding), random codes ``(M, channels)``."""
    pts = body_points(N_POINTS)
    lo, hi = pts.min(0).values, pts.max(0).values
    extent = float((hi - lo).max()) * 1.05
    voxel = torch.tensor([extent / (res - 1)])
    origin = ((lo + hi) / 2 - extent / 2)[None]
    codes = torch.randn(1, N_POINTS, channels, generator=torch.Generator().manual_seed(1))
    return voxelize(pts[None].to(device), codes.to(device), origin.to(device),
                    voxel.to(device), (res, res, res))


def fresh(t: SparseTensor) -> SparseTensor:
    """``t`` with an empty cache (maps rebuilt) and features that require a gradient."""
    return SparseTensor(t.features.detach().requires_grad_(), t.coords, t.spatial_shape,
                        t.batch_size)


def time_net(net: SparseConvNet, t: SparseTensor, backward: bool, repeats: int) -> float:
    def sync() -> None:
        if t.features.is_cuda:
            torch.cuda.synchronize()

    times = []
    for _ in range(repeats + 1):  # the first run warms up
        x = fresh(t)
        sync()
        start = time.perf_counter()
        levels = net(x)
        if backward:
            sum(level.features.square().mean() for level in levels).backward()
        sync()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def variants(in_channels: int, width: float, res: int) -> dict[str, SparseConvNet]:
    """Nets with identical weights, one per backend/path (dense only up to 64³)."""
    torch.manual_seed(0)
    base = SparseConvNet(in_channels, width, "torch")
    paths = ("auto", "gather", "scatter") + (("dense",) if res <= 64 else ())
    nets = {f"torch/{path}": with_path(base, path) for path in paths}
    if importlib.util.find_spec("spconv") is not None:
        net = SparseConvNet(in_channels, width, "spconv")
        net.load_state_dict(base.state_dict())
        nets["spconv"] = net
    return nets


def with_path(base: SparseConvNet, path: str) -> SparseConvNet:
    """A copy of the torch-backend ``base`` whose convs all take ``path``."""
    net = copy.deepcopy(base)
    for module in net.modules():
        if hasattr(module, "path"):
            module.path = path
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=[*SIZES, "both"], default="both")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available()
                                        else [])
    sizes = list(SIZES) if args.size == "both" else [args.size]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{N_POINTS} body points, best of {REPEATS}")
    print(f"{'size':6} {'device':6} {'variant':14} {'active':>7} {'fwd s':>8} {'fwd+bwd s':>10} "
          f"{'vs torch/auto':>15}")
    for size in sizes:
        res, channels, width = SIZES[size]
        for device in devices:
            t = make_input(res, channels, device)
            baseline = None
            for name, net in variants(channels, width, res).items():
                net = net.to(device).train()
                fwd = time_net(net, t, False, REPEATS)
                both = time_net(net, t, True, REPEATS)
                baseline = baseline or both
                print(f"{size:6} {device.type:6} {name:14} {t.features.shape[0]:7d} "
                      f"{fwd:8.3f} {both:10.3f} {both / baseline:14.2f}x")


if __name__ == "__main__":
    main()

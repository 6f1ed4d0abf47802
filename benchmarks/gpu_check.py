"""GPU check: the networks on CUDA against CPU, the sparse convs, paper-size training speed and
memory, and 256³ reconstruction time, as one Markdown report on stdout (≤ 8 min on one GPU).

    benchmarks/gpu_check.sh                                      # every section on cuda
    benchmarks/gpu_check.sh --sections models,sparse             # a subset
    PYTHON=.venv/bin/python benchmarks/gpu_check.sh --device cpu --quick   # smoke run (tests)

Needs only torch and numpy: no install, no data (every input is made here as tensors), no
h5py and no ``pipeline`` (the presets are read with yaml when it is importable, else from
the copies in :data:`FALLBACK`). Each figure stands beside a baseline from the same run: CPU
for the closeness checks and the sparse convs, the demo config's sizes for training, the
dense grid for reconstruction. Closeness runs with TF32 off. Training steps are the
trainer's: forward and loss under bf16 autocast on CUDA, backward outside it (fp32 when bf16
fails, which is then a failed check). Exit status: 0 all checks passed, 1 a check failed,
2 ``--device cuda`` without CUDA.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# The sibling module (this script's folder is first on sys.path when it runs as a script).
from gpu_check_setup import (
    BODY_VERTICES,
    SECTIONS,
    TINY,
    TINY_PIFU,
    body_vertices,
    load_preset,
    pifu_batch,
    pixel2isdf_batch,
    to,
)
from torch import Tensor, nn

from models.grid_eval import evaluate_grid
from models.pifu import get_model as get_pifu
from models.pifu import pifu_loss
from models.pixel2isdf import get_model, get_normal_net
from models.pixel2isdf.diffusion import SparseConvNet
from models.pixel2isdf.losses import sdf_losses
from models.pixel2isdf.normal_net import normal_loss
from models.sparse import SparseTensor, voxelize
from models.sparse.torch_backend import SparseConv3d, SubMConv3d

RTOL, ATOL, GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-4, 1e-3, 1e-6


@dataclass
class Run:
    """What every section needs: the device, ``--quick`` and the section's deadline."""

    device: torch.device
    quick: bool
    deadline: float = math.inf

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


def table(header: list[str], rows: list[list[Any]]) -> None:
    """Print a Markdown table."""
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def with_path(net: nn.Module, path: str) -> nn.Module:
    """``net`` with every torch-backend sparse conv on ``path`` (gather, scatter, auto)."""
    for module in net.modules():
        if hasattr(module, "path"):
            module.path = path
    return net


# ---- 1. model checks -----------------------------------------------------------------------

def pixel2isdf_step(model: nn.Module, batch: dict[str, Tensor], bf16: bool = False
                    ) -> dict[str, Tensor]:
    """The trainer's step: forward and loss (under bf16 autocast if ``bf16``), then backward
    outside autocast (pipeline/training/trainer.py); returns the outputs to compare."""
    inputs = dict(batch)
    points, target = inputs.pop("points").clone().requires_grad_(True), inputs.pop("sdf")
    with torch.autocast(points.device.type, dtype=torch.bfloat16, enabled=bf16):
        pred = model(inputs, points)
        loss = sdf_losses(pred.float(), target, points, delta=0.05, eikonal_weight=0.1)["total"]
    loss.backward()
    return {"sdf": pred.detach(), "loss": loss.detach(), "dloss/dpoints": points.grad}


def normal_step(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    images, alphas = batch["images"].flatten(0, 1), batch["alphas"].flatten(0, 1)
    pred = model(images, alphas)
    loss = normal_loss(pred, F.normalize(images - 0.5, dim=1), alphas)["total"]
    loss.backward()
    return {"normals": pred.detach(), "loss": loss.detach()}


def pifu_step(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    inputs = dict(batch)
    points, labels = inputs.pop("points"), inputs.pop("labels")
    logits, inside = model.logits(inputs, points)
    loss = pifu_loss(logits, inside, labels)
    loss.backward()
    return {"logits (all stacks)": torch.stack(logits).detach(), "loss": loss.detach()}


def grad_errors(pairs: list[tuple[str, Tensor | None, Tensor | None]]
                ) -> tuple[float, str, float, bool]:
    """Reference and device gradients by name → worst relative L2 error and its name, the
    max abs difference, and whether every one is within GRAD_RTOL · ‖ref‖ + GRAD_ATOL."""
    worst, worst_name, max_abs, ok = 0.0, "-", 0.0, True
    for name, a, b in pairs:
        if a is None or b is None:
            ok &= a is None and b is None
            continue
        diff = b.detach().cpu().float() - a.float()
        rel = float(diff.norm() / a.norm().clamp_min(1e-12))
        max_abs = max(max_abs, float(diff.abs().max()))
        ok &= bool(diff.norm() <= GRAD_RTOL * a.norm() + GRAD_ATOL)
        worst, worst_name = max((worst, worst_name), (rel, name))
    return worst, worst_name, max_abs, ok


def compare(name: str, build: Callable[[], nn.Module], step: Callable[..., dict[str, Tensor]],
            batch: dict[str, Tensor], run: Run, rows: list[list[Any]]) -> list[str]:
    """Same weights and batch on CPU and ``run.device``: outputs and gradients agree?"""
    torch.manual_seed(0)
    ref = build().train()
    dev = copy.deepcopy(ref).to(run.device)
    want, got = step(ref, batch), step(dev, to(batch, run.device))
    failed = []
    for key, a in want.items():
        b = got[key].detach().cpu().float()
        ok = bool(torch.allclose(b, a.float(), rtol=RTOL, atol=ATOL))
        rows.append([name, key, f"{(b - a.float()).abs().max():.2e}",
                     f"rtol {RTOL:g}, atol {ATOL:g}", "ok" if ok else "**FAIL**"])
        failed += [] if ok else [f"{name} {key}"]
    worst, worst_name, max_abs, ok = grad_errors([
        (n, p.grad, q.grad) for (n, p), q in zip(ref.named_parameters(), dev.parameters(),
                                                 strict=True)])
    rows.append([name, f"parameter gradients (worst rel. L2 {worst:.1e}: {worst_name})",
                 f"{max_abs:.2e}", f"rel. L2 {GRAD_RTOL:g} + {GRAD_ATOL:g}",
                 "ok" if ok else "**FAIL**"])
    return failed + ([] if ok else [f"{name} gradients"])


def section_models(run: Run) -> list[str]:
    rows: list[list[Any]] = []
    m, nm = TINY["model"], TINY["normal_model"]
    batch = pixel2isdf_batch(2, 2, 300, 128, m["input_size"])
    failed = compare("Pixel2ISDF (tiny)", lambda: get_model(m, nm), pixel2isdf_step, batch, run,
                     rows)
    failed += compare("normal net (tiny)", lambda: get_normal_net(nm), normal_step, batch, run,
                      rows)
    for temporal in (False, True):
        failed += compare("Temporal PIFu (tiny)" if temporal else "PIFu (tiny)",
                          lambda t=temporal: get_pifu({**TINY_PIFU, "temporal": t}),
                          pifu_step, pifu_batch(2, 3 if temporal else None, 96, 64), run, rows)
    for path in ("gather", "scatter") if run.cuda else ():  # CPU trains in fp32
        torch.manual_seed(0)
        model = with_path(get_model(m, nm), path).to(run.device).train()
        try:
            loss = pixel2isdf_step(model, to(batch, run.device), bf16=True)["loss"]
            note, ok = f"loss {float(loss):.4f}", bool(torch.isfinite(loss))
        except RuntimeError as err:
            note, ok = f"{type(err).__name__}: {str(err).splitlines()[0][:90]}", False
        rows.append(["Pixel2ISDF (tiny)", f"bf16 autocast step, sparse path {path}", note,
                     "runs, finite loss", "ok" if ok else "**FAIL**"])
        failed += [] if ok else [f"bf16 step ({path})"]
    table(["network", "quantity", "max abs diff", "tolerance", "check"], rows)
    return failed


# ---- 2. sparse convs ------------------------------------------------------------------------

def fwd_bwd(net: nn.Module, t: SparseTensor, run: Run, device: torch.device
            ) -> tuple[float, list[Tensor], Tensor]:
    """Best-of-3 seconds of forward+backward (maps rebuilt each time) after a warm-up; the
    outputs' features and the input's gradient of the last run."""
    times, outs, x = [], [], t
    for _ in range(4):
        net.zero_grad()
        x = SparseTensor(t.features.detach().to(device).requires_grad_(), t.coords.to(device),
                         t.spatial_shape, t.batch_size)
        run.sync()
        start = time.perf_counter()
        out = net(x)
        outs = [o.features for o in (out if isinstance(out, list) else [out])]
        sum(f.square().mean() for f in outs).backward()
        run.sync()
        times.append(time.perf_counter() - start)
    return min(times[1:]), [o.detach().cpu() for o in outs], x.features.grad


def section_sparse(run: Run) -> list[str]:
    res, channels, n, width = (32, 8, 2000, 0.25) if run.quick else (224, 64, BODY_VERTICES, 1.0)
    w1, w2 = (8, 16) if run.quick else (32, 64)
    gen = torch.Generator().manual_seed(1)
    pts = body_vertices(n, gen)  # voxelised into a res³ cube around them, random codes
    lo, hi = pts.min(0).values, pts.max(0).values
    extent = float((hi - lo).max()) * 1.05
    t = voxelize(pts[None], torch.randn(1, n, channels, generator=gen),
                 ((lo + hi) / 2 - extent / 2)[None], torch.tensor([extent / (res - 1)]), (res,) * 3)
    torch.manual_seed(0)
    stack = nn.Sequential(SubMConv3d(channels, w1, 3, "s0"), SparseConv3d(w1, w2, 3, 2, 1, "d0"),
                          SubMConv3d(w2, w2, 3, "s1"), SparseConv3d(w2, w2, 3, 2, 1, "d1"))
    nets = {f"4 convs (SubM, strided ×2), {path}": with_path(copy.deepcopy(stack), path)
            for path in ("gather", "scatter")}
    nets[f"SparseConvNet width {width} (auto, train mode)"] = SparseConvNet(channels, width,
                                                                           "torch")
    print(f"Input: {n:,} body vertices voxelised into {res}³, {t.features.shape[0]:,} active "
          f"sites, {channels} channels; forward+backward, best of 3, {torch.get_num_threads()} "
          "CPU threads.\n")
    rows, failed = [], []
    for name, net in nets.items():
        dev_net = copy.deepcopy(net).to(run.device)
        cpu_s, want, want_g = fwd_bwd(net, t, run, torch.device("cpu"))
        dev_s, got, got_g = fwd_bwd(dev_net, t, run, run.device)
        out_diff = max(float((a - b).abs().max()) for a, b in zip(want, got, strict=True))
        ok = all(torch.allclose(b, a, rtol=RTOL, atol=ATOL) for a, b in zip(want, got,
                                                                         strict=True))
        worst, _, _, grads_ok = grad_errors([("input", want_g, got_g)] + [
            (n, p.grad, q.grad) for (n, p), q in zip(net.named_parameters(),
                                                     dev_net.parameters(), strict=True)])
        ok &= grads_ok
        rows.append([name, f"{out_diff:.2e}", f"{worst:.1e}", f"{cpu_s:.4f}", f"{dev_s:.4f}",
                     f"{cpu_s / dev_s:.1f}×", "ok" if ok else "**FAIL**"])
        failed += [] if ok else [f"sparse {name}"]
    table(["layers", "max abs diff (outputs)", "worst grad rel. L2", "CPU s (baseline)",
           f"{run.device.type} s", "speed-up", "check"], rows)
    return failed


# ---- 3. training speed ----------------------------------------------------------------------

def train_speed(preset: dict[str, Any], run: Run, crop: int, n_vertices: int, steps: int,
                bf16: bool, deadline: float) -> dict[str, Any]:
    """3 warm-up steps, then up to ``steps`` timed Adam steps (fewer past ``deadline``)."""
    if run.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(run.device)
    torch.manual_seed(0)
    model = get_model(preset["model"], preset["normal_model"]).to(run.device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=preset["lr"])
    batch = to(pixel2isdf_batch(preset["batch_size"], preset["n_views"], n_vertices,
                                preset["n_points"], crop, uint8=True), run.device)
    times, loss = [], torch.tensor(0.0)
    for i in range(3 + steps):
        if i > 3 and time.perf_counter() > deadline:
            break
        start = time.perf_counter()
        loss = pixel2isdf_step(model, batch, bf16)["loss"]
        optimizer.step()
        optimizer.zero_grad()
        run.sync()
        times += [time.perf_counter() - start] if i >= 3 else []
    return {"params": sum(p.numel() for p in model.parameters()) / 1e6, "steps": len(times),
            "step": sum(times) / len(times), "loss": float(loss),
            "peak": torch.cuda.max_memory_allocated(run.device) / 2**30 if run.cuda else None}


def section_train(run: Run) -> list[str]:
    crop, n_vertices, steps = (32, 500, 3) if run.quick else (512, BODY_VERTICES, 20)
    rows, failed, bf16 = [], [], run.cuda
    for i, (label, name) in enumerate([("paper", "presets/paper.yaml"),
                                       ("demo (baseline)", "config.yaml")]):
        preset, source = load_preset(name)
        if run.quick:
            preset, source = copy.deepcopy(TINY), f"tiny sizes (--quick) in place of {source}"
        m = preset["model"]
        print(f"- {label}: {source}: batch {preset['batch_size']}, K={preset['n_views']}, "
              f"N={preset['n_points']}, input {m['input_size']}², volume "
              f"{m['volume_resolution']}³, lr {preset['lr']}")
        left = run.deadline - time.perf_counter()
        deadline = run.deadline - (left / 5 if i == 0 else 0)  # a fifth for the baseline
        r = None
        if bf16:
            try:
                r = train_speed(preset, run, crop, n_vertices, steps, True, deadline)
            except RuntimeError as err:
                rows.append([label, "bf16", "-", "-", "-", "-", "-", "**FAIL**: "
                             f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"])
                failed.append(f"train {label} bf16")
                bf16 = False  # fp32 from here on, so that the rows stay comparable
        if r is None:  # out of the except block: the failed step's tensors are freed
            r = train_speed(preset, run, crop, n_vertices, steps, False, deadline)
        ok = math.isfinite(r["loss"])
        failed += [] if ok else [f"train {label} loss"]
        rows.append([label, "bf16" if bf16 else "fp32", f"{r['params']:.2f}", r["steps"],
                     f"{r['step']:.3f}", f"{1 / r['step']:.2f}",
                     "-" if r["peak"] is None else f"{r['peak']:.2f}",
                     f"{r['loss']:.4f}" + ("" if ok else " **FAIL: not finite**")])
    print(f"\nSynthetic body of {n_vertices:,} vertices, {crop}² crops, Adam, 3 warm-up steps.\n")
    table(["sizes", "precision", "parameters (M)", "timed steps", "s / step", "steps/s",
           "peak allocated (GiB)", "last loss"], rows)
    return failed


# ---- 4. reconstruction -----------------------------------------------------------------------

def section_recon(run: Run) -> list[str]:
    preset, source = load_preset("presets/paper.yaml")
    crop, n_vertices, res, init = 512, BODY_VERTICES, 256, 32
    if run.quick:
        preset, source = copy.deepcopy(TINY), "tiny sizes (--quick)"
        crop, n_vertices, res, init = 32, 500, 64, 16
    torch.manual_seed(0)
    model = get_model(preset["model"], preset["normal_model"]).to(run.device).eval()
    batch = to(pixel2isdf_batch(1, preset["n_views"], n_vertices, 1, crop), run.device)
    with torch.no_grad():
        run.sync()
        start = time.perf_counter()
        volume = model.encode(batch)
        run.sync()
    encode_s = time.perf_counter() - start
    centre, half = volume.centre[0].cpu().numpy(), float(volume.half[0])

    def sdf(points: np.ndarray) -> np.ndarray:  # pipeline/reconstruct.py's query
        with torch.no_grad():
            p = torch.as_tensor(points, dtype=torch.float32, device=run.device)[None]
            return model.query(volume, p)[0].double().cpu().numpy()

    print(f"{source}, untrained (the SDF head's initial sphere); one subject, K="
          f"{preset['n_views']}; encode {encode_s:.2f} s; Lipschitz 2, 65,536 points per call "
          "(pipeline/reconstruct.py's defaults).\n")
    rows, grids, seconds = [], [], 0.0
    for name, start_res in ((f"coarse to fine {init}³ → {res}³", init),
                            ("dense (baseline)", res)):
        if grids and seconds * res ** 3 / grids[0].queries > run.deadline - time.perf_counter():
            rows.append([name, f"{res ** 3:,}", "skipped: over the section's budget", "-", "-"])
            continue
        start = time.perf_counter()
        grid = evaluate_grid(sdf, centre - half, centre + half, resolution=res,
                             init_resolution=start_res, lipschitz=2.0, batch=65536)
        seconds = time.perf_counter() - start
        grids.append(grid)
        rows.append([name, f"{grid.queries:,}", f"{seconds:.2f}",
                     f"{grid.queries / seconds:,.0f}", f"{res ** 3 / grid.queries:.1f}"])
    table([f"grid at {res}³", "queries", "seconds", "queries/s", "× fewer than dense"], rows)
    if len(grids) == 2:
        same = np.mean(np.sign(grids[0].values) == np.sign(grids[1].values))
        print(f"\nSign agreement of the two grids (marching cubes' input): {100 * same:.4f} %")
    return []


# ---- main -------------------------------------------------------------------------------------

def header(run: Run) -> None:
    print("# GPU check (benchmarks/gpu_check.py)\n")
    rows = [["python, numpy", f"{platform.python_version()}, {np.__version__}"],
            ["torch (CUDA build)", f"{torch.__version__} ({torch.version.cuda or 'none'})"],
            ["device, CPU threads", f"{run.device}, {torch.get_num_threads()}"],
            ["mode", "quick (tiny sizes)" if run.quick else "full"]]
    if run.cuda:
        p = torch.cuda.get_device_properties(run.device)
        rows += [["GPU", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, sm {p.major}.{p.minor}"],
                 ["cuDNN", torch.backends.cudnn.version()],
                 ["TF32 default (matmul, cudnn)", f"{torch.backends.cuda.matmul.allow_tf32}, "
                  f"{torch.backends.cudnn.allow_tf32}"]]
    table(["", ""], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 64³ grid, few steps")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    if unknown := set(chosen) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"CUDA is not available (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda}); use --device cpu for a smoke run", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    run = Run(device, args.quick)
    header(run)
    functions = {"models": section_models, "sparse": section_sparse, "train": section_train,
                 "recon": section_recon}
    failed, summary, total = [], [], time.perf_counter()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    for key in chosen:
        title, budget = SECTIONS[key]
        print(f"\n## {title.format(device=device.type)}\n", flush=True)
        start = time.perf_counter()
        run.deadline = start + budget
        closeness = key in ("models", "sparse")  # TF32 off there, the defaults elsewhere
        torch.backends.cuda.matmul.allow_tf32 = tf32[0] and not closeness
        torch.backends.cudnn.allow_tf32 = tf32[1] and not closeness
        try:
            failed += functions[key](run)
        except Exception as err:  # report it and go on with the other sections
            traceback.print_exc()
            print(f"\n**Section failed: {type(err).__name__}: {err}**")
            failed.append(f"section {key}")
        seconds = time.perf_counter() - start
        summary.append([title.split(":")[0], f"{seconds:.1f}", budget,
                        "over budget" if seconds > budget else "ok"])
        sys.stdout.flush()
    print("\n## Sections\n")
    table(["section", "seconds", "budget (s)", "time"], summary)
    print(f"\nTotal {time.perf_counter() - total:.1f} s. " + (
        f"**FAILED: {', '.join(failed)}**" if failed else "All checks passed."))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

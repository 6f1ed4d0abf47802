"""What benchmarks/gpu_check.py runs on: its sections, the presets' model sizes (read with
yaml when importable, else the built-in copies in :data:`FALLBACK`) and tiny synthetic inputs
made as tensors: an ellipsoid body 1.7 m tall (y up) and cameras 3 m around it. Imports only
torch (and yaml when present), so it runs on a bare GPU node."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"models": ("1. Model checks: CPU against {device}", 90),  # title, budget (s)
            "sparse": ("2. Pure-torch sparse convs: CPU against {device}", 60),
            "train": ("3. Training speed and peak memory: paper preset against demo", 180),
            "recon": ("4. Reconstruction: coarse-to-fine grid against dense", 120)}
TINY = {"model": {"input": "normal", "input_size": 32, "feature_channels": 4,
                  "geometry_width": 0.125, "fusion_hidden": 8, "latent_dim": 4,
                  "volume_resolution": 32, "diffusion_width": 0.25, "head_hidden": 16,
                  "head_layers": 2, "head_skip": None, "n_freqs": 2, "sparse_backend": "torch"},
        "normal_model": {"ngf": 4, "n_downsample": 2, "n_blocks": 1, "input_size": 32},
        "n_views": 2, "n_points": 256, "batch_size": 1, "lr": 1e-3}
TINY_PIFU = {"input_size": 32, "channels": 16, "n_stacks": 2, "hg_depth": 2, "mlp_dims": [32, 16]}
# preset_subset() of the two files, for machines without yaml (tests/test_gpu_check.py).
FALLBACK: dict[str, dict[str, Any]] = {
    "presets/paper.yaml": {
        "model": {"input": "normal", "input_size": 512, "feature_channels": 64, "latent_dim": 64,
                  "geometry_width": 1.0, "fusion_hidden": 128, "volume_resolution": 224,
                  "diffusion_width": 1.0, "head_hidden": 256, "head_layers": 8, "head_skip": 4,
                  "n_freqs": 6, "prior": "body"},
        "normal_model": {"ngf": 64, "n_downsample": 4, "n_blocks": 9, "input_size": 512},
        "n_views": 4, "n_points": 10000, "batch_size": 2, "lr": 0.0005},
    "config.yaml": {
        "model": {"input": "normal", "input_size": 128, "feature_channels": 16,
                  "geometry_width": 0.25, "fusion_hidden": 32, "latent_dim": 16,
                  "volume_resolution": 64, "diffusion_width": 0.5, "head_hidden": 128,
                  "head_layers": 4, "head_skip": 2, "n_freqs": 6, "bn_momentum": 0.1,
                  "prior": "body"},
        "normal_model": {"ngf": 16, "n_downsample": 3, "n_blocks": 3, "input_size": 128},
        "n_views": 4, "n_points": 4096, "batch_size": 1, "lr": 0.001}}
BODY_CENTRE, BODY_AXES = torch.tensor([0.0, 0.85, 0.0]), torch.tensor([0.25, 0.85, 0.15])
BODY_VERTICES = 13_718  # the fitted body's vertex count


def preset_subset(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run config this script uses (the training model sizes and run); the
    prior defaults to the pipeline's (``body``, the config schema's default)."""
    train = config["train"]
    return {"model": {"prior": "body", **train["model"]},
            "normal_model": dict(config["train_normal"]["model"]),
            "n_views": train["n_views"], "n_points": train["n_points"],
            "batch_size": train["run"]["batch_size"], "lr": train["run"]["lr"]}


def load_preset(name: str) -> tuple[dict[str, Any], str]:
    """:func:`preset_subset` of ``ROOT / name`` via yaml, else the :data:`FALLBACK` copy."""
    try:
        import yaml
    except ImportError:
        return copy.deepcopy(FALLBACK[name]), f"{name} (built-in copy: no yaml)"
    with open(ROOT / name) as fh:
        return preset_subset(yaml.safe_load(fh)), name


# ---- synthetic inputs: an ellipsoid body 1.7 m tall (y up), cameras 3 m around it ----------

def body_vertices(n: int, gen: torch.Generator) -> Tensor:
    """``(n, 3)`` random points on the body ellipsoid."""
    return BODY_CENTRE + F.normalize(torch.randn(n, 3, generator=gen), dim=1) * BODY_AXES


def approx_sdf(points: Tensor) -> Tensor:
    """A signed distance-like field of the ellipsoid (metres, negative inside)."""
    return (((points - BODY_CENTRE) / BODY_AXES).norm(dim=-1) - 1) * float(BODY_AXES.min())


def cameras(k: int, size: int) -> dict[str, Tensor]:
    """``camera_K/R/t`` ``(k, …)``: evenly around the body, OpenCV axes, 2.2 m fill the crop."""
    angle = torch.arange(k) * (2 * math.pi / k)
    s, c, zero = torch.sin(angle), torch.cos(angle), torch.zeros(k)
    R = torch.stack([torch.stack([c, zero, -s], 1), torch.tensor([0.0, -1, 0]).expand(k, 3),
                     torch.stack([-s, zero, -c], 1)], 1)  # rows: right, down, forward
    t = -(R @ (BODY_CENTRE + 3.0 * torch.stack([s, zero, c], 1))[:, :, None])[:, :, 0]
    f, p = size * 3.0 / 2.2, (size - 1) / 2
    K = torch.tensor([[f, 0, p], [0, f, p], [0, 0, 1.0]]).expand(k, 3, 3)
    return {"camera_K": K.clone(), "camera_R": R, "camera_t": t}


def views(lead: tuple[int, ...], size: int, gen: torch.Generator, uint8: bool
          ) -> tuple[Tensor, Tensor]:
    """Random masked images ``(*lead, 3, S, S)`` and an ellipse matte ``(*lead, 1, S, S)``."""
    u = (torch.arange(size) - (size - 1) / 2) / size
    alpha = ((u[None, :] / 0.114) ** 2 + (u[:, None] / 0.386) ** 2 <= 1).float()
    alpha = alpha.expand(*lead, 1, size, size).clone()
    images = torch.rand(*lead, 3, size, size, generator=gen) * alpha
    if uint8:
        return (images * 255).to(torch.uint8), (alpha * 255).to(torch.uint8)
    return images, alpha


def query_points(b: int, p: int, vertices: Tensor, gen: torch.Generator) -> Tensor:
    """``(b, p, 3)``: half near the surface, half uniform in the body's box."""
    near = vertices[:, torch.randint(vertices.shape[1], (p // 2,), generator=gen)]
    near = near + 0.03 * torch.randn(near.shape, generator=gen)
    box = (torch.rand(b, p - p // 2, 3, generator=gen) * 2 - 1) * (BODY_AXES + 0.1)
    return torch.cat([near, BODY_CENTRE + box], dim=1)


def body_sdf_volume(canonical: Tensor, resolution: int = 64, padding: float = 0.15
                    ) -> dict[str, Tensor]:
    """The body prior's ``body_sdf`` ``(b, R, R, R)`` ``[z, y, x]`` and ``body_sdf_lo/hi``
    ``(b, 3)``, as the cache stores them (``pipeline.sdf.sdf_volume``'s cube), of the
    ellipsoid's ``approx_sdf``."""
    lo_v, hi_v = canonical.amin(dim=1), canonical.amax(dim=1)
    centre = (lo_v + hi_v) / 2
    half = (hi_v - lo_v).amax(dim=1) / 2 * (1 + 2 * padding)
    lo, hi = centre - half[:, None], centre + half[:, None]
    axis = torch.linspace(0, 1, resolution)
    zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
    unit = torch.stack([xx, yy, zz], dim=-1)  # (R, R, R, 3) x, y, z
    grid = lo[:, None, None, None] + unit[None] * (hi - lo)[:, None, None, None]
    return {"body_sdf": approx_sdf(grid), "body_sdf_lo": lo, "body_sdf_hi": hi}


def pixel2isdf_batch(b: int, k: int, n: int, p: int, size: int, uint8: bool = False
                     ) -> dict[str, Tensor]:
    """A Pixel2ISDF batch as the cache's data set serves it (with the body prior's volume),
    plus ``points`` and ``sdf``."""
    gen = torch.Generator().manual_seed(0)
    canonical = torch.stack([body_vertices(n, gen) for _ in range(b)])
    images, alphas = views((b, k), size, gen, uint8)
    shift = torch.zeros(k, 1, 3)
    shift[:, 0, 0] = 0.02 * torch.arange(k)  # each view's action: the body moved a little
    points = query_points(b, p, canonical, gen)
    return {"images": images, "alphas": alphas, "canonical_vertices": canonical,
            "posed_vertices": canonical[:, None] + shift, "points": points,
            "sdf": approx_sdf(points), **body_sdf_volume(canonical),
            **{key: v.expand(b, *v.shape).clone() for key, v in cameras(k, size).items()}}


def pifu_batch(b: int, frames: int | None, p: int, size: int) -> dict[str, Tensor]:
    """A (Temporal) PIFu batch: one camera for every frame, ``points`` and 0/1 ``labels``."""
    gen = torch.Generator().manual_seed(0)
    lead = (b,) if frames is None else (b, frames)
    images, _ = views(lead, size, gen, uint8=False)
    cams = {key: v[0].expand(*lead, *v.shape[1:]).clone() for key, v in cameras(1, size).items()}
    points = query_points(b, p, torch.stack([body_vertices(64, gen) for _ in range(b)]), gen)
    return {"images": images, "body_centre": BODY_CENTRE.expand(b, 3).clone(), **cams,
            "points": points, "labels": (approx_sdf(points) < 0).float()}


def to(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {key: v.to(device) for key, v in batch.items()}

"""The methods :func:`pipeline.training.trainer.train` knows: the normal network,
Pixel2ISDF, and PIFu / Temporal PIFu. Each builds its network from its config section,
its datasets from the caches, and says how a batch becomes a loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.blocks.images import as_float_image, resize
from models.data import Pixel2ISDFDataset, ViewDataset
from models.pifu import PifuConfig, occupancy_scores, pifu_loss
from models.pifu import get_model as get_pifu
from models.pifu.data import PifuDataset
from models.pixel2isdf import get_model, get_normal_net
from models.pixel2isdf.config import NormalNetConfig, Pixel2ISDFConfig, from_mapping
from models.pixel2isdf.losses import near_l1, sdf_gradient, sdf_losses, sign_accuracy
from models.pixel2isdf.normal_net import decode_normals, normal_loss
from models.timing import SectionTimer
from pipeline.errors import PipelineError
from pipeline.training.checkpoint import load_checkpoint, load_state, model_config


def _config(cls: type, values: Mapping[str, Any], section: str) -> Any:
    try:
        return from_mapping(cls, values)
    except (TypeError, ValueError) as exc:
        raise PipelineError(f"invalid {section}: {exc}") from exc


def colour_map(values: np.ndarray, scale: float) -> np.ndarray:
    """Signed values ``(H, W)`` → ``(H, W, 3)`` uint8: blue inside (< 0), red outside, a
    black band at the zero level."""
    x = np.clip(values / scale, -1.0, 1.0)
    rgb = np.stack([np.where(x > 0, 1.0, 1.0 + x), 1.0 - np.abs(x), np.where(x < 0, 1.0, 1.0 - x)],
                   axis=-1)
    rgb[np.abs(values) < scale * 0.03] = 0.0
    return (rgb * 255).round().astype(np.uint8)


SAMPLES_PER_SUBJECT = 1 << 24
"""Pixel2ISDF items per training subject (global sample g of a subject is item g mod this)."""


class NormalTask:
    """The normal network, trained on the cache's truth normal maps (L1 + (1 − cos))."""

    kind = "normal_net"
    selection = ("angle_deg", "min")

    def __init__(self, params: Mapping[str, Any], train_paths: Sequence[Path],
                 test_paths: Sequence[Path]) -> None:
        self.cfg: NormalNetConfig = _config(NormalNetConfig, params["model"],
                                            "train_normal.model")
        self.seed = int(params["seed"])
        masked = self.cfg.masked_input
        self.train_set = ViewDataset(train_paths, uint8_images=True, masked=masked)
        self.val_set = (ViewDataset(test_paths, uint8_images=True, masked=masked)
                        if test_paths else None)

    def build(self) -> nn.Module:
        return get_normal_net(self.model_config())

    def model_config(self) -> dict[str, Any]:
        return dict(self.cfg.__dict__)

    def draw(self, step: int, batch_size: int) -> list[int]:
        """A fresh permutation of the views every epoch (seeded by the epoch)."""
        n, out = len(self.train_set), []
        for g in range(step * batch_size, (step + 1) * batch_size):
            order = np.random.default_rng((self.seed, g // n)).permutation(n)
            out.append(int(order[g % n]))
        return out

    def _predict(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[
            torch.Tensor, torch.Tensor, torch.Tensor]:
        size = self.cfg.input_size
        image = resize(as_float_image(batch["images"]), size)
        alpha = resize(as_float_image(batch["alphas"]), size)
        # Nearest sampling picks whole pixels, so picking the encoded ones first and decoding
        # those gives the same targets as decoding all of them first, 16x fewer at 512 -> 128.
        target = decode_normals(F.interpolate(batch["normals"], size=(size, size),
                                              mode="nearest"))
        mask = (alpha > 0.5) & (target.abs().sum(dim=1, keepdim=True) > 0)
        return model(image, alpha), target, mask

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor],
             timer: SectionTimer) -> dict[str, torch.Tensor]:
        with timer("normal_net"):
            pred, target, mask = self._predict(model, batch)
        with timer("loss"):
            return normal_loss(pred.float(), target, mask)

    @torch.no_grad()
    def metrics(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        pred, target, mask = self._predict(model, batch)
        terms = normal_loss(pred.float(), target, mask)
        cos = (pred.float() * target).sum(dim=1, keepdim=True).clamp(-1, 1)
        angle = torch.rad2deg(torch.acos(cos[mask])).mean() if mask.any() else torch.nan
        return {**{k: float(v) for k, v in terms.items()}, "angle_deg": float(angle)}

    @torch.no_grad()
    def picture(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """Input image | predicted normals | truth normals, side by side."""
        model.eval()
        try:
            pred, target, _ = self._predict(model, batch)
        finally:
            model.train()
        image = resize(as_float_image(batch["images"]), self.cfg.input_size)[0]
        tiles = [image, (pred[0].float() + 1) / 2 * (pred[0].abs().sum(0) > 0),
                 (target[0] + 1) / 2 * (target[0].abs().sum(0) > 0)]
        row = torch.cat([t.clamp(0, 1).permute(1, 2, 0) for t in tiles], dim=1)
        return (row.cpu().numpy() * 255).round().astype(np.uint8)


class Pixel2ISDFTask:
    """Pixel2ISDF: K views across all actions of a subject, N SDF samples per draw,
    truncated L2 + λ Eikonal."""

    kind = "pixel2isdf"
    # The mean |SDF error| over the validation points within sign_band of the truth surface:
    # near the surface the SDF error is the distance by which the zero level set is off,
    # which is what Chamfer averages (docs/training.md, "Which checkpoint is kept").
    selection = ("sdf_l1_near_cm", "min")

    def __init__(self, params: Mapping[str, Any], train_paths: Sequence[Path],
                 test_paths: Sequence[Path], normal_checkpoint: Path | None) -> None:
        self.cfg: Pixel2ISDFConfig = _config(Pixel2ISDFConfig, params["model"], "train.model")
        self.seed, self.params = int(params["seed"]), params
        self.freeze_normal = not params["finetune_normal"]
        self.normal_state: dict[str, torch.Tensor] | None = None
        self.normal_cfg: dict[str, Any] | None = None
        self.normal_checkpoint = normal_checkpoint
        if self.cfg.uses_normal_net:
            if normal_checkpoint is None:
                raise PipelineError(f"train.model.input {self.cfg.input!r} needs the normal "
                                    "network's checkpoint (the train_normal rule's output)")
            data = load_checkpoint(normal_checkpoint, kind="normal_net")
            self.normal_cfg = model_config(data, normal_checkpoint)
            self.normal_state = data["model"]
            normal_masked = bool(self.normal_cfg.get("masked_input", True))
            if normal_masked != self.cfg.masked_input:
                raise PipelineError(
                    f"normal network {normal_checkpoint} was trained with masked_input "
                    f"{normal_masked}, train.model.masked_input is {self.cfg.masked_input}; "
                    "train the normal network with the same train_normal.model.masked_input")
        run = params["run"]
        oracle = self.cfg.input == "oracle_normal"
        self.n_subjects = len(train_paths)
        # Items per subject: a constant, not steps × batch, so that a subject's draws do not
        # depend on the run's length (a k-step run is the first k steps of a longer one).
        self.samples = SAMPLES_PER_SUBJECT
        common = {"n_views": params["n_views"], "n_points": params["n_points"],
                  "uint8_images": True, "with_normals": oracle,
                  "masked": self.cfg.masked_input,
                  "with_body_sdf": self.cfg.prior == "body",
                  "with_hull": self.cfg.hull_feature}
        min_views = params.get("min_views")
        if min_views is not None and min_views > params["n_views"]:
            raise PipelineError(f"train.min_views ({min_views}) is larger than train.n_views "
                                f"({params['n_views']}): a sample cannot hold more distinct "
                                "views than it has inputs")
        self.train_set = Pixel2ISDFDataset(train_paths, seed=self.seed,
                                           samples_per_subject=self.samples,
                                           min_views=params.get("min_views"), **common)
        self.val_set = None
        if test_paths:
            per = max(1, -(-run["val_batches"] * run["batch_size"] // len(test_paths)))
            self.val_set = Pixel2ISDFDataset(test_paths, seed=self.seed + 1,
                                             samples_per_subject=per, **common)
        loss = params["loss"]
        self.delta, self.eikonal_weight = float(loss["delta"]), float(loss["eikonal_weight"])
        self.band = float(loss["sign_band"])
        self.sdf_units = str(loss.get("sdf_units", "metres"))

    def build(self) -> nn.Module:
        model = get_model(self.cfg.__dict__, self.normal_cfg, self.freeze_normal)
        if model.normal_net is not None:
            assert self.normal_state is not None and self.normal_checkpoint is not None
            load_state(model.normal_net, self.normal_state, self.normal_checkpoint,
                       "normal network")
        return model

    def model_config(self) -> dict[str, Any]:
        return {"model": dict(self.cfg.__dict__), "normal": self.normal_cfg,
                "freeze_normal": self.freeze_normal}

    def draw(self, step: int, batch_size: int) -> list[int]:
        """Subjects in turn; item ``subject · samples + g`` for global sample g."""
        out = []
        for g in range(step * batch_size, (step + 1) * batch_size):
            out.append((g % self.n_subjects) * self.samples + g % self.samples)
        return out

    def _inputs(self, batch: dict[str, torch.Tensor]) -> tuple[dict, torch.Tensor, torch.Tensor]:
        inputs = {k: v for k, v in batch.items() if k not in ("points", "sdf")}
        return inputs, batch["points"].float().requires_grad_(True), batch["sdf"].float()

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor],
             timer: SectionTimer) -> dict[str, torch.Tensor]:
        inputs, points, target = self._inputs(batch)
        pred = model(inputs, points)
        with timer("sdf_head_loss"):
            terms = sdf_losses(pred.float(), target, points, delta=self.delta,
                               eikonal_weight=self.eikonal_weight, sdf_units=self.sdf_units)
        return terms

    def metrics(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        inputs, points, target = self._inputs(batch)
        with torch.enable_grad():
            pred = model(inputs, points).float()
            grad = sdf_gradient(pred, points)
        terms = sdf_losses(pred, target, points, delta=self.delta,
                           eikonal_weight=self.eikonal_weight, sdf_units=self.sdf_units)
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["sign_acc_near"] = float(sign_accuracy(pred.detach(), target, self.band))
        out["sdf_l1_near_cm"] = float(near_l1(pred.detach(), target, self.band)) * 100.0
        out["grad_norm_mean"] = float(grad.detach().norm(dim=-1).mean())
        return out

    @torch.no_grad()
    def picture(self, model: nn.Module, batch: dict[str, torch.Tensor],
                size: int = 128) -> np.ndarray:
        """The predicted SDF on the vertical plane through the cube centre (x right, z up)."""
        model.eval()
        try:
            inputs, _, _ = self._inputs({k: v[:1] for k, v in batch.items()})
            volume = model.encode(inputs)
            c, h = volume.centre[0], volume.half[0]
            lin = torch.linspace(-1, 1, size, device=c.device)
            zz, xx = torch.meshgrid(-lin, lin, indexing="ij")
            plane = torch.stack([c[0] + h * xx, c[1].expand_as(xx), c[2] + h * zz], dim=-1)
            sdf = model.query(volume, plane.reshape(1, -1, 3)).reshape(size, size)
        finally:
            model.train()
        return colour_map(sdf.float().cpu().numpy(), 2 * self.delta)


class PifuTask:
    """PIFu or Temporal PIFu (``model.temporal``): one view (or a clip window) per item, N
    balanced inside/outside samples of its frame, the mean over stacks of the MSE."""

    def __init__(self, params: Mapping[str, Any], train_paths: Sequence[Path],
                 test_paths: Sequence[Path]) -> None:
        self.cfg: PifuConfig = _config(PifuConfig, params["model"], "pifu.model")
        self.kind = "temporal_pifu" if self.cfg.temporal else "pifu"
        self.selection = ("iou", "max")
        self.seed = int(params["seed"])
        common = {"temporal": self.cfg.temporal, "window": self.cfg.window,
                  "n_points": params["n_points"], "uint8_images": True}
        self.train_set = PifuDataset(train_paths, seed=self.seed, **common)
        self.val_set = PifuDataset(test_paths, seed=self.seed + 1, **common) if test_paths \
            else None

    def build(self) -> nn.Module:
        return get_pifu(self.cfg.__dict__)

    def model_config(self) -> dict[str, Any]:
        return {"model": dict(self.cfg.__dict__)}

    def draw(self, step: int, batch_size: int) -> list[int]:
        """A fresh permutation of the items every epoch (seeded by the epoch)."""
        n, out = len(self.train_set), []
        for g in range(step * batch_size, (step + 1) * batch_size):
            out.append(int(np.random.default_rng((self.seed, g // n)).permutation(n)[g % n]))
        return out

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor],
             timer: SectionTimer) -> dict[str, torch.Tensor]:
        with timer("forward"):
            logits, inside = model(batch, batch["points"].float(), stacks=True)
        with timer("loss"):
            total = pifu_loss([x.float() for x in logits], inside, batch["inside"].float(),
                              self.cfg.last_op)
        return {"total": total, "mse_stacks": total.detach()}

    def metrics(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        occ = model(batch, batch["points"].float()).float()
        scores = occupancy_scores(occ.detach(), batch["inside"].float())
        return {k: float(v) for k, v in scores.items()}

    @torch.no_grad()
    def picture(self, model: nn.Module, batch: dict[str, torch.Tensor],
                size: int = 96) -> np.ndarray:
        """Occupancy − 0.5 on the plane through the body centre facing the (centre frame's)
        camera, ±1 m: red outside, blue inside."""
        model.eval()
        try:
            one = {k: v[:1] for k, v in batch.items()}
            R = one["camera_R"].reshape(-1, 3, 3)[self.cfg.frames // 2]  # (3, 3)
            lin = torch.linspace(-1, 1, size, device=R.device)
            yy, xx = torch.meshgrid(lin, lin, indexing="ij")
            plane = (one["body_centre"][0] + xx[..., None] * R[0] + yy[..., None] * R[1])
            occ = model(one, plane.reshape(1, -1, 3)).reshape(size, size)
        finally:
            model.train()
        return colour_map(0.5 - occ.float().cpu().numpy(), 0.5)

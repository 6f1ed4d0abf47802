"""The Pixel2ISDF network: images → pixel-aligned vertex features → fused codes on the
canonical body → sparse-convolution latent volume → SDF (report §3, docs/model.md).

Two calls, so that reconstruction computes the latent volume once and queries it many times:

* :meth:`Pixel2ISDF.encode` (the K input views of a subject) → :class:`LatentVolume`;
* :meth:`Pixel2ISDF.query` (points in the canonical frame) → signed distances in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks.images import as_float_image, resize
from models.blocks.projection import sample_vertex_features
from models.blocks.resunet import ResUNet34, load_torchvision_resnet34
from models.pixel2isdf.body_prior import BodySDF, check_covers
from models.pixel2isdf.config import NormalNetConfig, Pixel2ISDFConfig
from models.pixel2isdf.diffusion import SparseConvNet
from models.pixel2isdf.fusion import ViewFusion
from models.pixel2isdf.hull import HullViews, hull_features
from models.pixel2isdf.normal_net import NormalNet, decode_normals
from models.pixel2isdf.sdf_head import SDFHead
from models.sparse import densify, sample_levels, voxelize
from models.timing import NULL_TIMER, SectionTimer


@dataclass
class LatentVolume:
    """The diffused latent volume of B subjects.

    Attributes:
        levels: dense feature grids ``(B, C_l, D_l, H_l, W_l)``, one per level.
        strides: each level's stride relative to the voxel grid.
        origin: ``(B, 3)`` position (x, y, z) of voxel (0, 0, 0). voxel_size: ``(B,)`` metres.
        centre: ``(B, 3)`` cube centre. half: ``(B,)`` cube half side (metres).
        shape: grid points per side (D, H, W).
        body: the fitted bodies' signed-distance volumes (``prior: body``), else None.
        hull: the views the silhouette feature reads (``hull_feature``), else None.
    """

    levels: list[torch.Tensor]
    strides: list[int]
    origin: torch.Tensor
    voxel_size: torch.Tensor
    centre: torch.Tensor
    half: torch.Tensor
    shape: tuple[int, int, int]
    body: BodySDF | None = None
    hull: HullViews | None = None


def body_cube(vertices: torch.Tensor, padding: float, resolution: int) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cube around each canonical body that holds the latent volume.

    Args:
        vertices: ``(B, N, 3)`` canonical body vertices.
        padding: margin on each side as a fraction of the body's largest extent.
        resolution: R grid points per side (R − 1 intervals).

    Returns:
        origin ``(B, 3)``, voxel_size ``(B,)``, centre ``(B, 3)``, half side ``(B,)``.
    """
    lo, hi = vertices.amin(dim=1), vertices.amax(dim=1)
    centre = (lo + hi) / 2
    half = (hi - lo).amax(dim=1) / 2 * (1 + 2 * padding)
    voxel = 2 * half / (resolution - 1)
    return centre - half[:, None], voxel, centre, half


class Pixel2ISDF(nn.Module):
    """The whole network.

    Args:
        cfg: sizes (:class:`Pixel2ISDFConfig`).
        normal_cfg: the normal network's sizes, when ``cfg.input`` uses predicted normals.
        freeze_normal: keep the normal network fixed (eval mode, no gradients; the default)
            instead of fine-tuning it.
    """

    def __init__(self, cfg: Pixel2ISDFConfig, normal_cfg: NormalNetConfig | None = None,
                 freeze_normal: bool = True) -> None:
        super().__init__()
        self.cfg, self.normal_cfg, self.freeze_normal = cfg, normal_cfg, freeze_normal
        self.timer: SectionTimer = NULL_TIMER
        self.normal_net: NormalNet | None = None
        if cfg.uses_normal_net:
            if normal_cfg is None:
                raise ValueError(f"model.input {cfg.input!r} needs the normal network's config")
            self.normal_net = NormalNet(ngf=normal_cfg.ngf, n_downsample=normal_cfg.n_downsample,
                                        n_blocks=normal_cfg.n_blocks, norm=normal_cfg.norm)
            if freeze_normal:
                self.normal_net.requires_grad_(False)
        self.geometry = ResUNet34(cfg.geometry_in_channels, cfg.feature_channels,
                                  cfg.geometry_width)
        if cfg.pretrained_resnet:
            load_torchvision_resnet34(self.geometry, cfg.pretrained_resnet)
        self.fusion = ViewFusion(cfg.feature_channels, cfg.fusion_hidden, cfg.latent_dim)
        self.diffusion = SparseConvNet(cfg.latent_dim, cfg.diffusion_width, cfg.sparse_backend,
                                       cfg.bn_momentum, fine_level=cfg.fine_level)
        body = cfg.prior == "body"
        self.head = SDFHead(self.diffusion.out_channels, cfg.head_hidden, cfg.head_layers,
                            cfg.n_freqs, cfg.head_skip, cfg.init_radius,
                            init="zero" if body else "sphere",
                            extra_inputs=int(body) + 2 * int(cfg.hull_feature))

    def train(self, mode: bool = True) -> Pixel2ISDF:
        super().train(mode)
        if self.normal_net is not None and self.freeze_normal:
            self.normal_net.eval()
        return self

    def predict_normals(self, images: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """``(V, 3, s, s)`` images and ``(V, 1, s, s)`` alphas in [0, 1] → unit normals."""
        if self.normal_net is None:
            raise RuntimeError("this model has no normal network (model.input "
                               f"{self.cfg.input!r})")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_normal):
            return self.normal_net(images, alphas)

    def input_maps(self, images: torch.Tensor, alphas: torch.Tensor,
                   normals: torch.Tensor | None = None) -> torch.Tensor:
        """The geometry network's input for V views.

        Args:
            images: ``(V, 3, S, S)`` masked crops (uint8 or float [0, 1]).
            alphas: ``(V, 1, S, S)``.
            normals: ``(V, 3, S, S)`` cache-encoded truth normals, for ``oracle_normal`` only.

        Returns:
            ``(V, Cin, s, s)`` at ``s = cfg.input_size``.
        """
        size = self.cfg.input_size
        images, alphas = as_float_image(images), as_float_image(alphas)
        image, alpha = resize(images, size), resize(alphas, size)
        kind = self.cfg.input
        if kind == "oracle_normal":
            if normals is None:
                raise ValueError("model.input 'oracle_normal' needs the batch's truth normals")
            decoded = decode_normals(normals)
            return F.interpolate(decoded, size=(size, size), mode="nearest")
        rgb = (image * 2 - 1) * (alpha > 0.5).to(image.dtype)
        if kind == "image":
            return rgb
        assert self.normal_cfg is not None
        n_size = self.normal_cfg.input_size
        with self.timer("normal_net"):
            normal_map = self.predict_normals(resize(images, n_size), resize(alphas, n_size))
        if n_size != size:  # the normal net's own resolution differs: resample, renormalise
            normal_map = F.normalize(resize(normal_map, size), dim=1) * (alpha > 0.5)
        return normal_map if kind == "normal" else torch.cat([rgb, normal_map], dim=1)

    def encode(self, batch: dict[str, torch.Tensor]) -> LatentVolume:
        """The latent volume of each subject from its K views.

        Args:
            batch: ``images`` ``(B, K, 3, S, S)``, ``alphas`` ``(B, K, 1, S, S)``,
                ``camera_*`` ``(B, K, …)``, ``posed_vertices`` ``(B, K, N, 3)``,
                ``canonical_vertices`` ``(B, N, 3)`` (and ``normals`` for the oracle input;
                ``body_sdf`` ``(B, R, R, R)``, ``body_sdf_lo``/``_hi`` ``(B, 3)`` for the body
                prior).

        Returns:
            the :class:`LatentVolume`.
        """
        images = batch["images"]
        b, k, _, s, _ = images.shape
        flat = {key: v.flatten(0, 1) for key, v in batch.items()
                if key in ("images", "alphas", "normals") or key.startswith("camera_")}
        inputs = self.input_maps(flat["images"], flat["alphas"], flat.get("normals"))
        with self.timer("geometry_net"):
            maps = self.geometry(inputs)
        cameras = {key[len("camera_"):]: v.float() for key, v in flat.items()
                   if key.startswith("camera_")}
        posed = batch["posed_vertices"].float()
        with self.timer("projection_fusion"):
            feats, valid = sample_vertex_features(maps, posed.flatten(0, 1), cameras, s)
            n = posed.shape[2]
            codes, _ = self.fusion(feats.view(b, k, n, -1), valid.view(b, k, n))
        canonical = batch["canonical_vertices"].float()
        res = self.cfg.volume_resolution
        origin, voxel, centre, half = body_cube(canonical, self.cfg.volume_padding, res)
        shape = (res, res, res)
        body = None
        if self.cfg.prior == "body":
            body = BodySDF.from_batch(batch)
            check_covers(body, centre - half[:, None], centre + half[:, None],
                         f"the latent volume's cube (train.model.volume_padding "
                         f"{self.cfg.volume_padding})")
        with self.timer("diffusion"):
            sparse = voxelize(canonical, codes, origin, voxel, shape)
            levels = [densify(level) for level in self.diffusion(sparse)]
        hull = HullViews.from_batch(batch) if self.cfg.hull_feature else None
        return LatentVolume(levels, list(self.diffusion.strides), origin, voxel, centre, half,
                            shape, body, hull)

    def query(self, volume: LatentVolume, points: torch.Tensor) -> torch.Tensor:
        """Signed distance (metres, negative inside) at canonical-frame ``points`` ``(B, P, 3)``
        → ``(B, P)``; with the body prior, ``d_body`` plus the head's residual."""
        with self.timer("sdf_head_loss"):
            latent = sample_levels(volume.levels, points, volume.origin, volume.voxel_size,
                                   volume.strides)
            half = volume.half[:, None]
            x_n = (points - volume.centre[:, None]) / half[..., None]
            if volume.body is None:
                if self.cfg.prior == "body":
                    raise ValueError("a body-prior network needs a LatentVolume with body")
                return self.head(latent, x_n) * half
            d_body = volume.body(points)
            extra = [(d_body / half)[..., None]]
            if volume.hull is not None:
                extra.append(hull_features(volume.hull, points).to(d_body.dtype))
            return d_body + self.head(latent, x_n, torch.cat(extra, dim=-1)) * half

    def forward(self, batch: dict[str, torch.Tensor], points: torch.Tensor) -> torch.Tensor:
        """``encode`` then ``query``: ``(B, P, 3)`` → ``(B, P)``."""
        return self.query(self.encode(batch), points)

"""Plain configuration records of the Pixel2ISDF networks (built from the run config's
``model`` sections; stored inside every checkpoint so that a checkpoint rebuilds its own
network)."""

from __future__ import annotations

from dataclasses import dataclass

from models.config import from_mapping

__all__ = ["INPUTS", "PRIORS", "NormalNetConfig", "Pixel2ISDFConfig", "from_mapping"]

INPUTS = ("normal", "image", "image_normal", "oracle_normal")
"""What the geometry network sees: the predicted normal map (the method), the masked image
(the "w/o normal map" ablation), both, or the truth normal map (an oracle ablation)."""

PRIORS = ("body", "sphere")
"""What the SDF starts from (``Pixel2ISDFConfig.prior``). The dataclass default is the
report's ``sphere`` (so a checkpoint written before the option existed reads as what it was);
the pipeline's config schema defaults to ``body``."""


@dataclass(frozen=True)
class NormalNetConfig:
    """The normal network (pix2pixHD global generator, PIFuHD's sizes by default).

    ``input_size``: side the crops are resized to before the network (512 = the crop).
    ``masked_input``: it sees the crops times the matte (false: the unmasked crops and no
    matte, the w/o-mask ablation; a data choice, kept here so the checkpoint records it).
    """

    ngf: int = 64
    n_downsample: int = 4
    n_blocks: int = 9
    norm: str = "instance"
    input_size: int = 512
    masked_input: bool = True


@dataclass(frozen=True)
class Pixel2ISDFConfig:
    """Every size of the Pixel2ISDF network (paper values by default, report §4.4).

    Attributes:
        input: see ``INPUTS``. input_size: side the crops are resized to.
        masked_input: the crops times the matte (false: unmasked crops and no matte, the
            w/o-mask ablation; the datasets serve it, the checkpoint records it).
        feature_channels: C of the geometry network's feature map.
        geometry_width: ResNet-34 width factor (1 = 64/128/256/512).
        pretrained_resnet: optional torchvision ResNet-34 state dict file for the encoder.
        fusion_hidden: width of the fusion MLPs. latent_dim: d of the vertex codes.
        volume_resolution: grid points per side of the latent volume (224 in the paper).
        volume_padding: the cube's margin around the canonical body, as a fraction of the
            body's largest extent on each side.
        diffusion_width: factor on NeuralBody's SparseConvNet widths (16…128).
        sparse_backend: ``auto``, ``torch`` or ``spconv``.
        bn_momentum: running-statistics momentum of the diffusion's batch norms.
        head_hidden, head_layers, head_skip, n_freqs: the SDF MLP.
        init_radius: radius of the initial SDF sphere, fraction of the cube's half side
            (``prior: sphere`` only).
        prior: what the SDF starts from. ``sphere``: the report's geometric initialisation
            (the head learns the whole shape). ``body``: the fitted canonical body's signed
            distance, ``SDF = d_body + residual`` with the residual starting at zero (our
            departure from the report; :mod:`models.pixel2isdf.body_prior`).
        fine_level: also sample the diffusion's full-resolution level (conv0, stride 1),
            besides the report's four (strides 2–16).
        hull_feature: feed the head the mean and minimum over the input views of the matte
            at each point's projection (:mod:`models.pixel2isdf.hull`; needs ``prior: body``,
            whose volume holds the nearest-vertex grid).
    """

    input: str = "normal"
    input_size: int = 512
    masked_input: bool = True
    feature_channels: int = 64
    geometry_width: float = 1.0
    pretrained_resnet: str | None = None
    fusion_hidden: int = 128
    latent_dim: int = 64
    volume_resolution: int = 224
    volume_padding: float = 0.05
    diffusion_width: float = 1.0
    sparse_backend: str = "auto"
    bn_momentum: float = 0.01
    head_hidden: int = 256
    head_layers: int = 8
    head_skip: int | None = 4
    n_freqs: int = 6
    init_radius: float = 1.0
    prior: str = "sphere"
    fine_level: bool = False
    hull_feature: bool = False

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ValueError(f"model.input must be one of {INPUTS}, got {self.input!r}")
        if self.prior not in PRIORS:
            raise ValueError(f"model.prior must be one of {PRIORS}, got {self.prior!r}")
        if self.hull_feature and self.prior != "body":
            raise ValueError("model.hull_feature needs model.prior 'body' (the body volume "
                             f"holds the nearest-vertex grid it reads), got {self.prior!r}")

    @property
    def geometry_in_channels(self) -> int:
        return 6 if self.input == "image_normal" else 3

    @property
    def uses_normal_net(self) -> bool:
        return self.input in ("normal", "image_normal")

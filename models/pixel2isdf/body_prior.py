"""The body prior: the signed distance to the subject's fitted canonical body, d_body(x).

With ``model.prior: body`` the network predicts ``SDF(x) = d_body(x) + r(x)``: the residual
``r`` (the clothing, and the fit's errors) is all it has to learn, and an untrained network,
whose residual head starts at zero, already reconstructs the fitted body. This is our
departure from the report, whose SDF head starts from a sphere (``prior: sphere``); ICON
(signed distance to the fitted SMPL-X body as an input), PaMIR (a voxelised body) and the
WCPA winner (offsets from the fitted body) condition on the body in the same spirit.

d_body is read from a signed-distance volume computed once per subject (exact distances on a
regular grid over a cube around the body, built by the cache stage: ``body_sdf/`` in
``docs/cache.md``) by trilinear interpolation: plain torch, any device, twice differentiable
(the Eikonal term back-propagates through it). Outside the volume's cube the border value plus
the distance to the cube is used, a bound that is exact along the axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.errors import PipelineError


@dataclass
class BodySDF:
    """Signed-distance volumes of B fitted canonical bodies.

    Attributes:
        values: ``(B, 1, R, R, R)`` metres, negative inside, indexed ``[z, y, x]``
            (grid_sample's D, H, W); R points per side, the first and last on the cube's faces.
        lo, hi: ``(B, 3)`` the cube's corners (x, y, z), metres.
    """

    values: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor

    @classmethod
    def from_batch(cls, batch: dict[str, torch.Tensor]) -> BodySDF:
        """From a dataset batch's ``body_sdf`` ``(B, R, R, R)``, ``body_sdf_lo`` and
        ``body_sdf_hi`` ``(B, 3)``."""
        missing = [k for k in ("body_sdf", "body_sdf_lo", "body_sdf_hi") if k not in batch]
        if missing:
            raise PipelineError(f"model.prior 'body' needs the fitted body's signed-distance "
                                f"volume, but the batch lacks {missing} (a dataset built "
                                "with with_body_sdf=True serves it)")
        return cls(batch["body_sdf"].float()[:, None], batch["body_sdf_lo"].float(),
                   batch["body_sdf_hi"].float())

    @property
    def resolution(self) -> int:
        return int(self.values.shape[-1])

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """d_body at ``points`` ``(B, P, 3)`` → ``(B, P)`` metres."""
        return sample_body_sdf(self, points)


def sample_body_sdf(body: BodySDF, points: torch.Tensor) -> torch.Tensor:
    """Trilinear d_body at ``points`` ``(B, P, 3)`` → ``(B, P)``; outside the cube, the value
    on its boundary plus the distance to it (a continuous, 1-Lipschitz extension)."""
    lo, hi = body.lo[:, None, :], body.hi[:, None, :]
    grid = 2.0 * (points - lo) / (hi - lo) - 1.0  # (B, P, 3), x, y, z in [-1, 1]
    out = F.grid_sample(body.values.to(points.dtype), grid[:, None, None], mode="bilinear",
                        padding_mode="border", align_corners=True)  # (B, 1, 1, 1, P)
    inside_value = out[:, 0, 0, 0]
    outside = torch.clamp(lo - points, min=0) + torch.clamp(points - hi, min=0)
    beyond = outside.square().sum(dim=-1)
    # sqrt has no gradient at 0: add the distance only where the point is outside.
    far = beyond > 0
    safe = torch.where(far, beyond, torch.ones_like(beyond))
    return inside_value + torch.where(far, safe.sqrt(), torch.zeros_like(beyond))


def check_covers(body: BodySDF, lo: torch.Tensor, hi: torch.Tensor, what: str) -> None:
    """PipelineError unless each body volume's cube contains the box ``[lo, hi]`` ``(B, 3)``
    (``what`` names that box in the message)."""
    tol = 1e-5 * (body.hi - body.lo).abs().amax(dim=1, keepdim=True)
    ok = (body.lo <= lo + tol).all(dim=1) & (body.hi >= hi - tol).all(dim=1)
    if not bool(ok.all()):
        b = int((~ok).nonzero()[0, 0])
        fmt = lambda t: "[" + ", ".join(f"{v:.3f}" for v in t.tolist()) + "]"  # noqa: E731
        raise PipelineError(
            f"the body signed-distance volume ({body.resolution}^3 over {fmt(body.lo[b])} – "
            f"{fmt(body.hi[b])}) does not cover {what} ({fmt(lo[b])} – {fmt(hi[b])}); "
            "rebuild the cache with cache.body_sdf_padding at least train.model."
            "volume_padding (`snakemake --forcerun cache`)")

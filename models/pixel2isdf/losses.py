"""Pixel2ISDF losses, report equations (7)–(8).

* Truncated L2 on the SDF: ``mean_i (clamp(f(x_i), −δ, δ) − clamp(s_i, −δ, δ))²``; far from
  the surface only the sign and "at least δ away" matter, so the network's capacity goes to
  the band around the zero level set.
* Eikonal: ``mean_i (‖∇ₓ f(x_i)‖ − 1)²`` at the same sampled points, the gradient taken by
  autograd with ``create_graph=True`` so that the term itself trains the network.
"""

from __future__ import annotations

import torch


def truncated_l2(pred: torch.Tensor, target: torch.Tensor, delta: float,
                 unit: float = 1.0) -> torch.Tensor:
    """``(B, P)``, ``(B, P)`` → scalar mean of the squared difference of the clamped SDFs,
    both divided by ``unit`` first (1: metres², equation (7); δ: a term of order 1).

    The value is equation (7)'s. Its gradient is not quite: a clamped prediction has no
    gradient beyond ``±δ``, so a point predicted deep on the **wrong** side (as every point
    between the body and the initial sphere is) would never move. There the clamp passes the
    gradient straight through; where the signs agree, saturation is right (both are at least
    δ away on the same side) and is kept.
    """
    clamped = pred.clamp(-delta, delta)
    wrong_side = (pred < 0) != (target < 0)
    clamped = torch.where(wrong_side, pred + (clamped - pred).detach(), clamped)
    return (((clamped - target.clamp(-delta, delta)) / unit) ** 2).mean()


def sdf_gradient(sdf: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``∇ₓ sdf`` ``(B, P, 3)`` of ``sdf`` ``(B, P)`` w.r.t. ``points`` ``(B, P, 3)``
    (which must require grad), kept in the graph (``create_graph=True``)."""
    (grad,) = torch.autograd.grad(sdf, points, grad_outputs=torch.ones_like(sdf),
                                  create_graph=True)
    return grad


def eikonal(grad: torch.Tensor) -> torch.Tensor:
    """``(B, P, 3)`` gradients → scalar ``mean (‖g‖ − 1)²``."""
    return ((grad.norm(dim=-1) - 1.0) ** 2).mean()


def sdf_losses(pred: torch.Tensor, target: torch.Tensor, points: torch.Tensor, *,
               delta: float, eikonal_weight: float,
               sdf_units: str = "metres") -> dict[str, torch.Tensor]:
    """The training objective.

    Args:
        pred: ``(B, P)`` predicted SDF (metres), computed from ``points`` with grad.
        target: ``(B, P)`` truth SDF (metres, negative inside).
        points: ``(B, P, 3)`` the query points (``requires_grad``).
        delta: truncation δ (metres). eikonal_weight: λ.
        sdf_units: ``metres`` (equation (7) as written) or ``delta`` (SDFs divided by δ).

    Returns:
        ``{"sdf": L_sdf, "eikonal": L_eik, "total": L_sdf + λ L_eik}``.
    """
    if sdf_units not in ("metres", "delta"):
        raise ValueError(f"sdf_units must be 'metres' or 'delta', got {sdf_units!r}")
    l_sdf = truncated_l2(pred, target, delta, delta if sdf_units == "delta" else 1.0)
    l_eik = eikonal(sdf_gradient(pred, points))
    return {"sdf": l_sdf, "eikonal": l_eik, "total": l_sdf + eikonal_weight * l_eik}


def near_l1(pred: torch.Tensor, target: torch.Tensor, band: float) -> torch.Tensor:
    """Mean ``|pred − target|`` over the points with ``|target| < band`` (nan if none):
    ``(B, P)``, ``(B, P)`` → scalar, in the SDF's units."""
    near = target.abs() < band
    if not bool(near.any()):
        return torch.tensor(float("nan"))
    return (pred[near] - target[near]).abs().mean()


def sign_accuracy(pred: torch.Tensor, target: torch.Tensor, band: float) -> torch.Tensor:
    """Fraction of points with ``|target| < band`` whose predicted sign is right (nan if
    none): ``(B, P)``, ``(B, P)`` → scalar."""
    near = target.abs() < band
    if not bool(near.any()):
        return torch.tensor(float("nan"))
    return ((pred[near] < 0) == (target[near] < 0)).float().mean()

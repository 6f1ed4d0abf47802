"""The SDF head (report §3.3): an MLP on [sampled latent, positional encoding of x].

Positions enter normalised to the latent volume's box, ``x_n = (x − centre) / half_side``;
the network's output is scaled back by ``half_side`` so that the SDF is in metres and its
gradient with respect to ``x`` in metres is that with respect to ``x_n`` (the Eikonal term
needs no rescaling).

Geometric initialisation (SAL, Atzmon & Lipman 2020; IGR, Gropp et al. 2020): hidden weights
``N(0, 2 / out)``, biases 0, the last layer ``N(√π / √in, 1e-4)`` with bias ``−r``, and the
first layer's weights on every input but the raw coordinates set to 0 (as IDR does with
positional encodings); the weights of the skip connection's input start at 0 too. An
untrained head therefore computes ≈ ``|x_n| − r`` (after the calibration of
``_calibrate``): its zero level set
is a sphere of radius ``r · half_side`` around the box centre, enclosing the body, and it starts
as a valid signed distance function (unit gradient). Softplus activations (β = 100) keep it
twice differentiable.

With the body prior (``init="zero"``, :mod:`models.pixel2isdf.body_prior`) the head is a
residual on the fitted body's signed distance instead: it also takes ``d_body(x)`` (in units
of the half side) as an input, its hidden layers keep the initialisation above without the
sphere, and its last layer starts at exactly zero, so the untrained network's SDF is
``d_body`` itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def positional_encoding(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """``[x, sin(2^k π x), cos(2^k π x)]`` for k < ``n_freqs``: ``(..., 3)`` → ``(..., 3 + 6L)``."""
    if n_freqs == 0:
        return x
    freqs = (2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)) * math.pi
    angles = (x.unsqueeze(-1) * freqs).flatten(-2)  # (..., 3L), x-major
    return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


class SDFHead(nn.Module):
    """MLP ``[latent (Cv), PE(x_n)] → sdf`` with a skip connection of the input.

    Args:
        latent_channels: Cv, the width of the sampled latent volume features.
        hidden: width of the hidden layers. n_layers: number of hidden layers.
        n_freqs: positional-encoding frequencies L.
        skip: hidden layer index that receives the input again (IGR's skip; None for none).
        init_radius: r, the initial sphere's radius as a fraction of the half side.
        beta: softplus sharpness.
        init: ``"sphere"`` (geometric initialisation, the report's) or ``"zero"`` (a residual
            head: the last layer starts at zero).
        extra_inputs: scalars per point appended after the positional encoding (the body
            prior's ``d_body``), ``extra`` in :meth:`forward`.
    """

    def __init__(self, latent_channels: int, hidden: int = 256, n_layers: int = 8,
                 n_freqs: int = 6, skip: int | None = 4, init_radius: float = 0.9,
                 beta: float = 100.0, init: str = "sphere", extra_inputs: int = 0) -> None:
        super().__init__()
        if skip is not None and not 0 < skip < n_layers:
            raise ValueError(f"skip must be a hidden layer index in 1..{n_layers - 1}, got {skip}")
        if init not in ("sphere", "zero"):
            raise ValueError(f"init must be 'sphere' or 'zero', got {init!r}")
        self.n_freqs, self.beta, self.skip = n_freqs, beta, skip
        self.extra_inputs = extra_inputs
        self.in_dim = latent_channels + 3 + 6 * n_freqs + extra_inputs
        self.layers = nn.ModuleList()
        for i in range(n_layers + 1):
            d_in = self.in_dim if i == 0 else hidden
            if skip is not None and i == skip and i > 0:
                d_in = hidden + self.in_dim
            d_out = 1 if i == n_layers else hidden
            self.layers.append(nn.Linear(d_in, d_out))
        if init == "sphere":
            self._geometric_init(init_radius, latent_channels)
            self._calibrate(init_radius)
        else:
            self._residual_init()

    def _geometric_init(self, radius: float, latent_channels: int) -> None:
        xyz = slice(latent_channels, latent_channels + 3)  # raw coordinates in the input
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                d_out, d_in = layer.weight.shape
                if i == len(self.layers) - 1:
                    nn.init.normal_(layer.weight, mean=np.sqrt(np.pi) / np.sqrt(d_in), std=1e-4)
                    nn.init.constant_(layer.bias, -radius)
                    continue
                nn.init.normal_(layer.weight, 0.0, np.sqrt(2.0) / np.sqrt(d_out))
                nn.init.zeros_(layer.bias)
                if i == 0:
                    keep = layer.weight[:, xyz].clone()
                    layer.weight.zero_()
                    layer.weight[:, xyz] = keep
                elif self.skip is not None and i == self.skip:
                    layer.weight[:, -self.in_dim:].zero_()  # the skip starts closed

    @torch.no_grad()
    def _residual_init(self) -> None:
        """Hidden layers ``N(0, 2 / out)`` on every input (no sphere to keep), biases 0, the
        last layer exactly 0: the head outputs 0 until it learns otherwise."""
        for i, layer in enumerate(self.layers):
            if i == len(self.layers) - 1:
                nn.init.zeros_(layer.weight)
            else:
                nn.init.normal_(layer.weight, 0.0, np.sqrt(2.0) / np.sqrt(layer.weight.shape[0]))
            nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def _calibrate(self, radius: float, n: int = 4096) -> None:
        """Rescale the last layer so the untrained head is ``|x_n| − r`` on average.

        The random hidden layers scale ``|x|`` by a seed-dependent factor (±40 % at width
        256, depth 8): a least-squares fit ``f ≈ a |x_n| + b`` on fixed points, then
        ``w ← w / a`` and ``bias ← (bias − b) / a − r``, puts the zero level set at ``r``.
        """
        gen = torch.Generator().manual_seed(0)
        directions = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
        radii = 0.2 + 1.3 * torch.rand(n, 1, generator=gen)
        x = (directions * radii)[None]
        last = self.layers[-1]
        last.bias.zero_()
        f = self.forward(torch.zeros(1, n, self.in_dim - 3 - 6 * self.n_freqs), x)[0]
        design = torch.cat([radii, torch.ones_like(radii)], dim=1)
        (a, b) = torch.linalg.lstsq(design, f[:, None]).solution[:, 0].tolist()
        if a <= 1e-6:
            raise RuntimeError(f"geometric initialisation failed: slope {a:.3g} (re-seed)")
        last.weight.div_(a)
        last.bias.fill_(-b / a - radius)

    def forward(self, latent: torch.Tensor, x_n: torch.Tensor,
                extra: torch.Tensor | None = None) -> torch.Tensor:
        """SDF (or, with ``init="zero"``, its residual) in units of the half side.

        Args:
            latent: ``(B, P, Cv)`` latent features sampled at the points.
            x_n: ``(B, P, 3)`` normalised positions.
            extra: ``(B, P, extra_inputs)`` (required when ``extra_inputs`` > 0).

        Returns:
            ``(B, P)``.
        """
        parts = [latent, positional_encoding(x_n, self.n_freqs)]
        if self.extra_inputs:
            if extra is None or extra.shape[-1] != self.extra_inputs:
                raise ValueError(f"this head takes {self.extra_inputs} extra inputs per point")
            parts.append(extra)
        inputs = torch.cat(parts, dim=-1)
        h = inputs
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if self.skip is not None and i == self.skip and i > 0:
                h = torch.cat([h, inputs], dim=-1)
            h = layer(h)
            if i < last:
                h = F.softplus(h, beta=self.beta)
        return h[..., 0]

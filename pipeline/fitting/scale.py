"""A fitted body's size: its standing height, and where its scale comes from.

Calibrated cameras measure a person's size; weak-perspective photos cannot tell size from
distance (a scale per view absorbs it), so without cameras the body's height is whatever
the shape prior prefers, unless the person's height is given (``fit.height_m``).

``standing height``: the vertical extent of the body in the model's rest pose (every joint
angle zero: standing straight), the number a tape measure gives. The canonical (star) pose
is about 1 % lower (legs apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a height is computed: the checks read the constants
    import torch

    from pipeline.bodymodel import BodyModel

SOURCES = ("calibrated", "given", "prior")
"""Where a fit's scale comes from: calibrated cameras (two views or more of a pose), the
person's given height (``fit.height_m``), or the shape prior (weak-perspective photos, or a
single calibrated photo per pose, and no height)."""

EXPECTED_HEIGHT_ERROR = {"calibrated": 0.008, "given": 0.001, "prior": 0.106}
"""Mean absolute relative error of the fitted standing height per source, measured on four
of the learning curve's test subjects (s003, s006, x000, x003) by ``benchmarks/height.py``
(docs/results.md, "height"). The prior's is the test people's spread around the
population's mean height: it fixes the bias (−12.8 % before issue 27, +2.5 % after), not
the spread."""

HEIGHT_TOLERANCE = 0.005
"""Relative height error (0.5 %) that costs one unit of ``fit.weights.height``."""


def standing_height(model: BodyModel, shape: torch.Tensor) -> torch.Tensor:
    """The rest-pose vertical extent (metres, Z up) of the body of ``shape (S,)``:
    differentiable in ``shape``."""
    import torch

    zeros = torch.zeros(1, len(model.joint_names), 3)
    vertices = model.forward(shape, zeros, torch.zeros(1, 3), torch.zeros(1, 3)).vertices[0]
    return vertices[:, 2].max() - vertices[:, 2].min()


def height_loss(model: BodyModel, shape: torch.Tensor, height_m: float,
                tolerance: float = HEIGHT_TOLERANCE) -> torch.Tensor:
    """Squared relative height error in units of ``tolerance`` (default
    :data:`HEIGHT_TOLERANCE`)."""
    error = (standing_height(model, shape) - height_m) / (height_m * tolerance)
    return error ** 2


def cameras_measure_size(camera: str, views_per_action: Sequence[int] | None = None) -> bool:
    """Whether the cameras fix the person's size: calibrated, with two views or more of one
    pose. One calibrated photo of a pose cannot tell a small person near from a tall one
    far (the fit moves the body freely along the ray), no more than a weak-perspective one.
    ``views_per_action``: the fitted views of each action (None: assume several)."""
    return camera == "calibrated" and (views_per_action is None
                                       or max(views_per_action, default=0) >= 2)


def scale_source(camera: str, height_m: float | None,
                 views_per_action: Sequence[int] | None = None) -> str:
    """The :data:`SOURCES` entry of a fit with this camera model, given height and fitted
    views per action (see :func:`cameras_measure_size`)."""
    if cameras_measure_size(camera, views_per_action):
        return "calibrated"
    return "prior" if height_m is None else "given"

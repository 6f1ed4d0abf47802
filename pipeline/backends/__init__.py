"""Model backends of the preprocessing stages, behind small interfaces, chosen by name in config.

Every backend takes RGB ``uint8`` images ``(H, W, 3)`` and works in that image's pixel frame
(pixel centres at integer coordinates, see docs/conventions.md). The registry maps a name to
``"module:factory"``; factories are imported only when chosen, so the card's heavy packages
(mmdet, detectron2, openpifpaf) are never imported by the default run. A factory takes the
backend's own config mapping (``detect.mmdet``, ``mask.densepose``, ...) and raises
:class:`BackendUnavailable` naming what to install or which file is missing.

``oracle`` backends read the synthetic truth: for ablations and debugging only, never a
default, and every output they touch says ``"oracle": true``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pipeline.errors import PipelineError


class BackendUnavailable(PipelineError):
    """A backend's package or checkpoint is missing; the message says how to get it."""


@dataclass(frozen=True)
class Detection:
    """One detected person: ``box_xyxy`` (4,) pixel box [x0, y0, x1, y1], ``score`` in [0, 1]."""

    box_xyxy: np.ndarray
    score: float


@dataclass(frozen=True)
class PersonKeypoints:
    """One person's 2D keypoints, each ``(J, 3)`` = x, y (pixels), confidence (0 = missing).

    ``coco17`` in :data:`pipeline.skeleton.COCO17` order; ``body25`` in BODY_25 order; ``extra``
    holds format-specific groups (MediaPipe's 33 landmarks, OpenPose hands / face, ...).
    """

    coco17: np.ndarray
    body25: np.ndarray
    score: float
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)


class PersonDetector(Protocol):
    def detect(self, image: np.ndarray) -> list[Detection]:
        """All persons found in ``image`` (H, W, 3) uint8 RGB, best first."""


class Segmenter(Protocol):
    def segment(self, image: np.ndarray) -> np.ndarray:
        """Foreground probability ``(H, W)`` float32 in [0, 1] of the person in ``image``."""


class Matter(Protocol):
    def matte(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        """Alpha ``(H, W)`` float32 in [0, 1] from ``image`` and a trimap ``(H, W)`` uint8
        (0 background, 128 unknown, 255 foreground)."""


class KeypointDetector(Protocol):
    def keypoints(self, image: np.ndarray) -> list[PersonKeypoints]:
        """The persons' keypoints in ``image`` (H, W, 3) uint8 RGB, best first."""


REGISTRY: dict[str, dict[str, str]] = {
    "detect": {
        "mediapipe": "pipeline.backends.mediapipe_pose:make_detector",
        "mmdet": "pipeline.backends.mmdet_vfnet:make_detector",
    },
    "mask": {
        "mediapipe": "pipeline.backends.mediapipe_pose:make_segmenter",
        "densepose": "pipeline.backends.densepose:make_segmenter",
    },
    "matte": {
        "pymatting": "pipeline.backends.matting:make_pymatting",
        "matteformer": "pipeline.backends.matting:make_matteformer",
    },
    "keypoints": {
        "mediapipe": "pipeline.backends.mediapipe_pose:make_keypoint_detector",
        "openpifpaf": "pipeline.backends.openpifpaf_backend:make_keypoint_detector",
    },
}


def make_backend(kind: str, name: str, options: Mapping[str, Any] | None = None) -> Any:
    """Build the backend ``name`` of ``kind`` (``detect``, ``mask``, ``matte``, ``keypoints``)."""
    try:
        target = REGISTRY[kind][name]
    except KeyError:
        known = sorted(REGISTRY.get(kind, {}))
        raise PipelineError(f"unknown {kind} backend {name!r}; known: {known}") from None
    module, _, factory = target.partition(":")
    return getattr(importlib.import_module(module), factory)(dict(options or {}))

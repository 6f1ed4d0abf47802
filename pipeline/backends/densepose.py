"""Person segmenter: DensePose R-CNN (detectron2), the segmenter of the paper's preprocessing.

DensePose predicts, per detected person box, a part-index map ``I`` over the box (0 background,
1..24 body parts) together with U, V chart coordinates. The person's mask is ``I > 0`` pasted
into the photo at its box (:func:`iuv_to_mask`); among several persons the best-scoring one is
kept (:func:`merge_instances`).

The model is built from a DensePose config (detectron2 yaml, e.g. DensePose's
``configs/densepose_rcnn_R_50_FPN_s1x.yaml``) and its weights loaded with
``torch.load(weights_only=True)`` from a plain state dict (bare, or under ``"model"`` /
``"state_dict"``); detectron2's own ``.pkl`` checkpoints need pickle and are refused (convert
them once, where you trust them, to ``torch.save({k: torch.as_tensor(v) for k, v in
ckpt["model"].items()}, "densepose.pth")``). Only chart-based (IUV) configs are supported, not
the continuous surface embedding (CSE) ones.

Options (the ``mask.densepose`` mapping of the config):

- ``config`` (path, required): the DensePose yaml config (its ``_BASE_`` files next to it).
- ``checkpoint`` (path, required): the weights.
- ``device`` (``cpu`` or ``cuda[:N]``, default ``cpu``).
- ``score_threshold`` (float in [0, 1], default 0.5): person instances scoring below are
  ignored (detectron2's ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``).

Installing: detectron2 and DensePose are not on PyPI; ``envs/densepose.yaml`` (with its
``densepose.post-deploy.sh``) installs them from their git repository.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.backends import BackendUnavailable
from pipeline.backends._checkpoint import load_into, load_state_dict_file, require_file
from pipeline.errors import PipelineError

BACKEND = "densepose"
INSTALL_HINT = (
    "detectron2 and DensePose are not on PyPI: create the environment envs/densepose.yaml "
    "(snakemake --sdm conda runs envs/densepose.post-deploy.sh after it), or, in an environment "
    "with CUDA torch 2.13.0 and torchvision 0.28.0: pip install --no-build-isolation "
    "'git+https://github.com/facebookresearch/detectron2.git' and pip install "
    "--no-build-isolation --no-deps 'git+https://github.com/facebookresearch/detectron2.git"
    "#subdirectory=projects/DensePose'")
FILES_HINT = ("Give DensePose's yaml config (from detectron2's projects/DensePose/configs) and "
              "its weights as a plain state dict; they cannot be downloaded here.")
OPTION_NAMES = ("config", "checkpoint", "device", "score_threshold")
RULES = ("score", "area")


def _box_pixels(lo: float, hi: float, cells: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image pixels (along one axis of length ``size``) whose centres lie in the box's edge
    extent ``[lo - 0.5, hi + 0.5)``, and the map cell (of ``cells`` spread evenly over that
    extent) containing each: nearest-neighbour resampling."""
    start = lo - 0.5
    extent = hi - lo + 1.0
    first = max(math.ceil(start), 0)
    stop = min(math.ceil(hi + 0.5), size)
    pixels = np.arange(first, max(stop, first))
    index = np.floor((pixels - start) * cells / extent).astype(np.int64)
    return pixels, np.clip(index, 0, cells - 1)


def iuv_to_mask(part_index: np.ndarray, box_xyxy: Sequence[float],
                image_shape: Sequence[int]) -> np.ndarray:
    """Paste a DensePose part-index map into the photo as a person mask.

    Args:
        part_index: ``(h, w)`` integer part indices over the box (0 background, 1..24 body
            parts); ``h, w`` need not match the box size, it is resampled to it.
        box_xyxy: ``(4,)`` the box as inclusive pixel extents ``[x0, y0, x1, y1]`` (pixel
            centres at integers): the map spans the edges ``[x0 - 0.5, x1 + 0.5]`` (same for y).
            detectron2's edge box ``[a, b, c, d]`` is ``[a, b, c - 1, d - 1]`` here.
        image_shape: ``(H, W, ...)`` of the photo.

    Returns:
        ``(H, W)`` float32: 1 where the pasted map is a body part, 0 elsewhere (also outside
        the box; parts of the box outside the photo are cut).
    """
    part_index = np.asarray(part_index)
    if part_index.ndim != 2 or part_index.size == 0:
        raise ValueError(f"part index map must be a non-empty (h, w) array, got "
                         f"{part_index.shape}")
    box = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"invalid box {box_xyxy!r}: need finite [x0, y0, x1, y1], x1 >= x0, "
                         "y1 >= y0")
    height, width = int(image_shape[0]), int(image_shape[1])
    mask = np.zeros((height, width), dtype=np.float32)
    cols, j = _box_pixels(box[0], box[2], part_index.shape[1], width)
    rows, i = _box_pixels(box[1], box[3], part_index.shape[0], height)
    if cols.size and rows.size:
        mask[np.ix_(rows, cols)] = (part_index[np.ix_(i, j)] > 0).astype(np.float32)
    return mask


def merge_instances(masks: Sequence[np.ndarray], scores: Sequence[float],
                    image_shape: Sequence[int], rule: str = "score") -> np.ndarray:
    """The mask of the one person kept among DensePose's instances.

    Args:
        masks: per instance an ``(H, W)`` mask in [0, 1] (from :func:`iuv_to_mask`).
        scores: per instance its detection score.
        image_shape: ``(H, W, ...)`` of the photo (the result's shape when there is none).
        rule: ``"score"``: the best-scoring instance (ties: the larger); ``"area"``: the
            largest foreground (ties: the better-scoring).

    Returns:
        ``(H, W)`` float32 mask of the chosen instance; zeros when there is none.
    """
    if rule not in RULES:
        raise ValueError(f"unknown instance rule {rule!r}; known: {list(RULES)}")
    if len(masks) != len(scores):
        raise ValueError(f"{len(masks)} masks but {len(scores)} scores")
    shape = (int(image_shape[0]), int(image_shape[1]))
    if not masks:
        return np.zeros(shape, dtype=np.float32)
    stack = [np.asarray(m, dtype=np.float32) for m in masks]
    for m in stack:
        if m.shape != shape:
            raise ValueError(f"instance mask {m.shape} does not match the image {shape}")
    areas = [float(m.sum()) for m in stack]
    keys = [(float(s), a) if rule == "score" else (a, float(s))
            for s, a in zip(scores, areas, strict=True)]
    best = max(range(len(stack)), key=lambda k: keys[k])  # first of equals wins
    return np.clip(stack[best], 0.0, 1.0)


@dataclass(frozen=True)
class DensePoseOptions:
    """The backend options (see the module docstring)."""

    config: str | None = None
    checkpoint: str | None = None
    device: str = "cpu"
    score_threshold: float = 0.5

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> DensePoseOptions:
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise PipelineError(f"unknown densepose option(s) {unknown}; known: "
                                f"{list(OPTION_NAMES)}")
        out = cls(**{k: v for k, v in options.items() if v is not None})
        if not isinstance(out.score_threshold, int | float) or not (
                0.0 <= out.score_threshold <= 1.0):
            raise PipelineError(f"densepose score_threshold must be in [0, 1], got "
                                f"{out.score_threshold!r}")
        if not (out.device == "cpu" or str(out.device).startswith("cuda")):
            raise PipelineError(f"densepose device must be cpu or cuda[:N], got {out.device!r}")
        return out


def _import_detectron2() -> dict[str, Any]:
    """detectron2 and DensePose's pieces, or :class:`BackendUnavailable` saying how to get them."""
    try:
        import detectron2.data.transforms as transforms
        from densepose import add_densepose_config
        from densepose.converters import ToChartResultConverter
        from detectron2.config import get_cfg
        from detectron2.modeling import build_model
    except ImportError as error:
        raise BackendUnavailable(f"the densepose backend needs detectron2 and DensePose "
                                 f"({error}); {INSTALL_HINT}") from error
    return {"T": transforms, "add_densepose_config": add_densepose_config, "get_cfg": get_cfg,
            "build_model": build_model, "Converter": ToChartResultConverter}


class DensePoseSegmenter:
    """:class:`~pipeline.backends.Segmenter`: the DensePose mask of the best-scoring person."""

    def __init__(self, options: DensePoseOptions) -> None:
        config = require_file(options.config, "config", BACKEND, FILES_HINT)
        checkpoint = require_file(options.checkpoint, "checkpoint", BACKEND, FILES_HINT)
        d2 = _import_detectron2()
        import torch

        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"{BACKEND}: device {options.device} asked for but CUDA is "
                                     f"not available (torch {torch.__version__}); use cpu")
        cfg = d2["get_cfg"]()
        d2["add_densepose_config"](cfg)
        cfg.merge_from_file(str(config))
        cfg.MODEL.DEVICE = options.device
        cfg.MODEL.WEIGHTS = ""  # weights come from the safe load below, never downloaded
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(options.score_threshold)
        cfg.freeze()
        model = d2["build_model"](cfg)
        load_into(model, load_state_dict_file(checkpoint, "cpu", BACKEND), checkpoint, BACKEND)
        self._model = model.to(options.device).eval()
        self._torch = torch
        self._resize = d2["T"].ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2,
                                                  cfg.INPUT.MAX_SIZE_TEST)
        self._format = cfg.INPUT.FORMAT
        self._converter = d2["Converter"]
        self.options = options

    def instances(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """DensePose's persons in ``image`` (H, W, 3) uint8 RGB: per instance its part-index map
        ``(h, w)``, its box ``(4,)`` as inclusive pixel extents, and its score."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} "
                             f"{image.dtype}")
        torch = self._torch
        original = image[..., ::-1] if self._format == "BGR" else image
        height, width = image.shape[:2]
        resized = self._resize.get_transform(original).apply_image(np.ascontiguousarray(original))
        tensor = torch.as_tensor(resized.astype(np.float32).transpose(2, 0, 1))
        with torch.no_grad():
            out = self._model([{"image": tensor.to(self.options.device), "height": height,
                                "width": width}])[0]["instances"].to("cpu")
        if len(out) == 0:
            return []
        if "Chart" not in type(out.pred_densepose).__name__:
            raise PipelineError(f"densepose: the config gives {type(out.pred_densepose).__name__}"
                                "; only chart-based (IUV) DensePose models are supported")
        found = []
        for i in range(len(out)):
            # labels: (int(h), int(w)) part indices over detectron2's edge box [x0, y0, x1, y1]
            result = self._converter.convert(out.pred_densepose[i], out.pred_boxes[[i]])
            x0, y0, x1, y1 = (float(v) for v in out.pred_boxes.tensor[i])
            box = np.array([x0, y0, max(x1 - 1.0, x0), max(y1 - 1.0, y0)])  # inclusive extents
            found.append((result.labels.cpu().numpy(), box, float(out.scores[i])))
        return found

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Foreground ``(H, W)`` float32 (0 or 1) of the best-scoring person in ``image``."""
        found = self.instances(image)
        masks = [iuv_to_mask(labels, box, image.shape) for labels, box, _ in found]
        return merge_instances(masks, [s for *_, s in found], image.shape, rule="score")


def make_segmenter(options: Mapping[str, Any]) -> DensePoseSegmenter:
    """The ``densepose`` segmenter (registry factory); see the module docstring."""
    return DensePoseSegmenter(DensePoseOptions.from_mapping(options))

"""Person detector: VarifocalNet (mmdet 3.x), the detector of the paper's preprocessing.

The model is built from an mmdet config (default: mmdet's bundled
``configs/vfnet/vfnet_r50_fpn_1x_coco.py``) with every ``Pretrained`` ``init_cfg`` removed, so
nothing is downloaded, then its weights are loaded from ``checkpoint`` with
``torch.load(weights_only=True)`` (a plain state dict, bare or under ``"state_dict"`` as mmengine
saves it; a checkpoint needing pickle is refused, see :mod:`pipeline.backends._checkpoint`).
Inference runs the config's test pipeline on the photo (converted to BGR, mmdet's convention)
and keeps the COCO class 0 (person).

Options (the ``detect.mmdet`` mapping of the config):

- ``checkpoint`` (path, required): VarifocalNet weights.
- ``config`` (path or null): mmdet config file; null = the bundled VFNet R50 1x COCO config.
- ``device`` (``cpu`` or ``cuda[:N]``, default ``cpu``).
- ``score_threshold`` (float in [0, 1], default 0.3): boxes scoring below are dropped.

Boxes: mmdet's are edge coordinates (pixel ``i`` spans ``[i, i + 1)``); they are returned as
inclusive pixel extents (pixel centres at integers), ``[x0, y0, x1 - 1, y1 - 1]``, clipped to
the photo, as :func:`pipeline.crop.square_box` expects.

Installing (README "Optional backends"): mmcv 2.1.0 has no wheel and is built with its ops:
``pip install "setuptools>=77,<81" wheel ninja``, then
``MMCV_WITH_OPS=1 MAX_JOBS=2 pip install --no-build-isolation mmcv==2.1.0``, then
``pip install -e ".[mmdet]"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.backends import BackendUnavailable, Detection
from pipeline.backends._checkpoint import (
    extract_state_dict,
    load_checkpoint_file,
    load_into,
    require_file,
)
from pipeline.errors import PipelineError

INSTALL_HINT = (
    'see README "Optional backends": pip install "setuptools>=77,<81" wheel ninja; '
    "MMCV_WITH_OPS=1 MAX_JOBS=2 pip install --no-build-isolation mmcv==2.1.0; "
    'pip install -e ".[mmdet]" (mmdet==3.3.0, mmengine, opencv-python==4.11.0.86)')
CHECKPOINT_HINT = ("Give the path of VarifocalNet weights saved as a plain state dict "
                   "(torch.save(model.state_dict(), path)); they cannot be downloaded here.")
DEFAULT_CONFIG = Path("configs") / "vfnet" / "vfnet_r50_fpn_1x_coco.py"
PERSON_CLASS = 0  # COCO's first class
BACKEND = "mmdet (VarifocalNet)"
OPTION_NAMES = ("config", "checkpoint", "device", "score_threshold")


@dataclass(frozen=True)
class VFNetOptions:
    """The backend options (see the module docstring)."""

    checkpoint: str | None = None
    config: str | None = None
    device: str = "cpu"
    score_threshold: float = 0.3

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> VFNetOptions:
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise PipelineError(f"unknown mmdet option(s) {unknown}; known: {list(OPTION_NAMES)}")
        values = {k: v for k, v in options.items() if v is not None}
        out = cls(**values)
        if not isinstance(out.score_threshold, int | float) or not (
                0.0 <= out.score_threshold <= 1.0):
            raise PipelineError(f"mmdet score_threshold must be in [0, 1], got "
                                f"{out.score_threshold!r}")
        if not (out.device == "cpu" or str(out.device).startswith("cuda")):
            raise PipelineError(f"mmdet device must be cpu or cuda[:N], got {out.device!r}")
        return out


def edge_boxes_to_inclusive(boxes: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Edge-coordinate boxes ``(N, 4)`` (pixel ``i`` spans ``[i, i + 1)``) → inclusive pixel
    extents ``(N, 4)`` ``[x0, y0, x1 - 1, y1 - 1]``, clipped to the image ``(H, W, ...)`` and
    never inverted (a box thinner than a pixel covers the pixel at its start)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = int(image_shape[0]), int(image_shape[1])
    x0 = np.clip(boxes[:, 0], 0, width - 1)
    y0 = np.clip(boxes[:, 1], 0, height - 1)
    x1 = np.clip(boxes[:, 2] - 1.0, x0, width - 1)
    y1 = np.clip(boxes[:, 3] - 1.0, y0, height - 1)
    return np.stack([x0, y0, x1, y1], axis=1)


def select_persons(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                   image_shape: Sequence[int], score_threshold: float,
                   person_class: int = PERSON_CLASS) -> list[Detection]:
    """The person detections among a detector's raw output, best first.

    Args:
        boxes: ``(N, 4)`` edge-coordinate boxes ``[x0, y0, x1, y1]`` (mmdet's convention).
        scores: ``(N,)`` scores in [0, 1].
        labels: ``(N,)`` class indices; ``person_class`` is kept.
        image_shape: ``(H, W, ...)`` of the photo.
        score_threshold: detections scoring below are dropped.

    Returns:
        :class:`Detection` list sorted by decreasing score (ties keep the input order), boxes as
        inclusive pixel extents (see :func:`edge_boxes_to_inclusive`).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f"detector output lengths differ: {len(boxes)} boxes, {len(scores)} "
                         f"scores, {len(labels)} labels")
    keep = (labels == person_class) & (scores >= score_threshold) & np.isfinite(scores)
    keep &= np.isfinite(boxes).all(axis=1)
    index = np.flatnonzero(keep)
    index = index[np.argsort(-scores[index], kind="stable")]
    inclusive = edge_boxes_to_inclusive(boxes[index], image_shape)
    return [Detection(box_xyxy=box, score=float(scores[i])) for box, i in zip(inclusive, index,
                                                                            strict=True)]


def drop_pretrained_init(cfg: Any) -> Any:
    """Set every ``init_cfg`` that loads pretrained weights (``type='Pretrained'``) to None, in
    a (nested) config mapping, so that building the model downloads nothing; the checkpoint
    supplies all weights. Returns ``cfg`` (modified in place)."""
    def pretrained(init: Any) -> bool:
        items = init if isinstance(init, list | tuple) else [init]
        return any(isinstance(i, Mapping) and i.get("type") == "Pretrained" for i in items)

    if isinstance(cfg, Mapping):
        for key in list(cfg.keys()):
            value = cfg[key]
            if ((key == "init_cfg" and pretrained(value))
                    or (key == "pretrained" and isinstance(value, str))):
                cfg[key] = None
            else:
                drop_pretrained_init(value)
    elif isinstance(cfg, list | tuple):
        for value in cfg:
            drop_pretrained_init(value)
    return cfg


def _import_mmdet() -> dict[str, Any]:
    """mmdet's pieces, or :class:`BackendUnavailable` with the install recipe."""
    try:
        import mmdet
        from mmcv.transforms import Compose
        from mmdet.registry import MODELS
        from mmdet.utils import get_test_pipeline_cfg
        from mmengine.config import Config
        from mmengine.model.utils import revert_sync_batchnorm
        from mmengine.registry import init_default_scope
    except (ImportError, AssertionError) as error:  # mmdet asserts its mmcv version range
        raise BackendUnavailable(f"the mmdet backend needs mmdet 3.3.0 and mmcv 2.1.0 built with "
                                 f"its ops ({type(error).__name__}: {error}); {INSTALL_HINT}"
                                 ) from error
    return {"mmdet": mmdet, "Compose": Compose, "MODELS": MODELS, "Config": Config,
            "get_test_pipeline_cfg": get_test_pipeline_cfg, "init_default_scope":
            init_default_scope, "revert_sync_batchnorm": revert_sync_batchnorm}


def default_config_path() -> Path:
    """mmdet's bundled VFNet R50 1x COCO config (needs mmdet)."""
    mm = _import_mmdet()
    path = Path(mm["mmdet"].__file__).parent / ".mim" / DEFAULT_CONFIG
    if not path.is_file():
        raise BackendUnavailable(f"{BACKEND}: mmdet's bundled config {path} is missing; give "
                                 "option 'config'")
    return path


def _check_classes(loaded: Any, path: Path) -> None:
    """Refuse a checkpoint whose saved class list does not start with ``person``."""
    meta = loaded.get("meta") if isinstance(loaded, Mapping) else None
    if not isinstance(meta, Mapping):
        return
    dataset_meta = meta.get("dataset_meta")
    classes = (dataset_meta.get("classes") if isinstance(dataset_meta, Mapping)
               else meta.get("CLASSES"))
    if classes and str(classes[PERSON_CLASS]).lower() != "person":
        raise BackendUnavailable(f"{BACKEND}: {path} was trained on classes {list(classes)[:5]}"
                                 "...; class 0 must be 'person' (COCO)")


class VFNetDetector:
    """:class:`~pipeline.backends.PersonDetector`: VarifocalNet persons, best first."""

    def __init__(self, options: VFNetOptions) -> None:
        checkpoint = require_file(options.checkpoint, "checkpoint", BACKEND, CHECKPOINT_HINT)
        mm = _import_mmdet()
        import torch

        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"{BACKEND}: device {options.device} asked for but CUDA is "
                                     "not available (this torch build: "
                                     f"{torch.__version__}); use device: cpu")
        config_path = (default_config_path() if options.config is None else
                       require_file(options.config, "config", BACKEND, "An mmdet config file."))
        cfg = mm["Config"].fromfile(str(config_path))
        drop_pretrained_init(cfg.model)
        mm["init_default_scope"](cfg.get("default_scope", "mmdet") or "mmdet")
        model = mm["revert_sync_batchnorm"](mm["MODELS"].build(cfg.model))
        loaded = load_checkpoint_file(checkpoint, "cpu", BACKEND)
        _check_classes(loaded, checkpoint)
        load_into(model, extract_state_dict(loaded, checkpoint, BACKEND), checkpoint, BACKEND)
        model.cfg = cfg
        self._model = model.to(options.device).eval()
        self._torch = torch
        self.options = options
        pipeline_cfg = mm["get_test_pipeline_cfg"](cfg.copy())
        pipeline_cfg = [t for t in pipeline_cfg if "LoadAnnotations" not in str(t.get("type"))]
        pipeline_cfg[0].type = "mmdet.LoadImageFromNDArray"
        self._pipeline = mm["Compose"](pipeline_cfg)

    def raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The detector's output on ``image`` (H, W, 3) uint8 RGB: edge-coordinate boxes
        ``(N, 4)``, scores ``(N,)``, labels ``(N,)``, in the photo's pixels."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} "
                             f"{image.dtype}")
        bgr = np.ascontiguousarray(image[..., ::-1])  # mmdet pipelines take BGR
        data = self._pipeline({"img": bgr, "img_id": 0})
        batch = {"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]}
        with self._torch.no_grad():
            result = self._model.test_step(batch)[0]
        pred = result.pred_instances
        return (pred.bboxes.detach().cpu().numpy().reshape(-1, 4),
                pred.scores.detach().cpu().numpy().reshape(-1),
                pred.labels.detach().cpu().numpy().reshape(-1))

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All persons in ``image`` (H, W, 3) uint8 RGB scoring at least the threshold, best
        first; boxes are inclusive pixel extents."""
        boxes, scores, labels = self.raw(image)
        return select_persons(boxes, scores, labels, np.shape(image),
                              self.options.score_threshold)


def make_detector(options: Mapping[str, Any]) -> VFNetDetector:
    """The ``mmdet`` person detector (registry factory); see the module docstring."""
    return VFNetDetector(VFNetOptions.from_mapping(options))

"""Keypoint detector: OpenPifPaf (COCO-17 persons), the keypoint detector of the paper.

OpenPifPaf returns, per person, 17 COCO keypoints ``x, y, confidence`` in the photo's pixels
(pixel centres at integers, as here) and a person score; :func:`annotation_to_person` maps one
to :class:`PersonKeypoints` (COCO-17 as is, BODY_25 via
:func:`pipeline.skeleton.coco17_to_body25`, no feet).

Weights are never downloaded and never unpickled. ``checkpoint`` is a path, or the name of one
of OpenPifPaf's released models (``shufflenetv2k16``, ...) only when that file is already in the
torch hub cache (``$TORCH_HOME/hub/checkpoints``, OpenPifPaf's own download place); any other
name is refused, since OpenPifPaf would download it. The file is loaded with
``torch.load(weights_only=True)``: a plain state dict, bare or under ``"state_dict"``, with
optional metadata ``"basenet"`` (str, default ``shufflenetv2k16``) and ``"upsample_stride"``
(int, default 1). OpenPifPaf's released ``.pkl`` files are pickled whole models: they are
refused (also by OpenPifPaf itself on torch ≥ 2.6, whose ``torch.load`` is weights-only by
default) and need converting once, in an environment you trust (see :data:`CONVERT_HINT`).
The network is built from its name (``openpifpaf.network.Factory``) with the COCO keypoint
heads, the weights loaded strictly, and OpenPifPaf's ``Predictor`` machinery (preprocessing,
CIF-CAF decoder) runs it.

Options (the ``keypoints.openpifpaf`` mapping of the config):

- ``checkpoint`` (path, required; or a released name cached in the torch hub, see above).
- ``device`` (``cpu`` or ``cuda[:N]``, default ``cpu``).
- ``basenet`` (str, optional): overrides the file's ``"basenet"``.

Installing: OpenPifPaf needs torchvision, i.e. the default (CUDA) torch build from PyPI rather
than the CPU wheel: ``pip install torch==2.13.0 torchvision==0.28.0`` then
``pip install --no-deps openpifpaf==0.13.11`` (its C++ extension builds against that torch;
``--no-deps`` keeps its pins from replacing torch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.backends import BackendUnavailable, PersonKeypoints
from pipeline.backends._checkpoint import (
    extract_state_dict,
    load_checkpoint_file,
    load_into,
    require_file,
)
from pipeline.errors import PipelineError
from pipeline.skeleton import coco17_to_body25

BACKEND = "openpifpaf"
DEFAULT_BASENET = "shufflenetv2k16"
INSTALL_HINT = (
    "openpifpaf needs torchvision, which the CPU torch wheel here does not provide: install the "
    "default (CUDA) build from PyPI, pip install torch==2.13.0 torchvision==0.28.0 (not from "
    "the CPU index), then pip install --no-deps openpifpaf==0.13.11")
CONVERT_HINT = (
    "convert a released OpenPifPaf checkpoint once, in an environment you trust: "
    "ckpt = torch.load('shufflenetv2k16-....pkl', weights_only=False); net = ckpt['model']; "
    "torch.save({'state_dict': net.state_dict(), 'basenet': net.base_net.name, "
    "'upsample_stride': net.head_metas[0].upsample_stride}, 'shufflenetv2k16.pt')")
OPTION_NAMES = ("checkpoint", "device", "basenet")


def annotation_to_person(data: np.ndarray, score: float) -> PersonKeypoints:
    """One OpenPifPaf person as :class:`PersonKeypoints`.

    Args:
        data: ``(17, 3)`` COCO-17 keypoints ``x, y, confidence`` (OpenPifPaf's
            ``Annotation.data``: photo pixels, pixel centres at integers; confidence 0 =
            not found).
        score: the person's score (``Annotation.score``).

    Returns:
        ``coco17`` ``(17, 3)`` with confidences clipped to [0, 1] and missing keypoints zeroed;
        ``body25`` ``(25, 3)`` from it (no feet); ``score`` clipped to [0, 1].
    """
    coco = np.array(data, dtype=np.float64)
    if coco.shape != (17, 3):
        raise ValueError(f"OpenPifPaf keypoints must be (17, 3), got {coco.shape}")
    coco[:, 2] = np.clip(np.nan_to_num(coco[:, 2], nan=0.0), 0.0, 1.0)
    coco[~(coco[:, 2] > 0) | ~np.isfinite(coco[:, :2]).all(axis=1)] = 0.0
    return PersonKeypoints(coco17=coco, body25=coco17_to_body25(coco),
                           score=float(np.clip(score, 0.0, 1.0)))


def annotations_to_people(annotations: Sequence[tuple[np.ndarray, float]]
                          ) -> list[PersonKeypoints]:
    """Persons from ``(data (17, 3), score)`` pairs, best score first (ties keep the order)."""
    people = [annotation_to_person(data, score) for data, score in annotations]
    order = sorted(range(len(people)), key=lambda i: -people[i].score)
    return [people[i] for i in order]


@dataclass(frozen=True)
class PifPafOptions:
    """The backend options (see the module docstring)."""

    checkpoint: str | None = None
    device: str = "cpu"
    basenet: str | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> PifPafOptions:
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise PipelineError(f"unknown openpifpaf option(s) {unknown}; known: "
                                f"{list(OPTION_NAMES)}")
        out = cls(**{k: v for k, v in options.items() if v is not None})
        if not (out.device == "cpu" or str(out.device).startswith("cuda")):
            raise PipelineError(f"openpifpaf device must be cpu or cuda[:N], got "
                                f"{out.device!r}")
        return out


def _import_openpifpaf() -> Any:
    try:
        import openpifpaf
    except ImportError as error:  # torchvision missing, or openpifpaf itself
        raise BackendUnavailable(f"the openpifpaf backend cannot import openpifpaf ({error}); "
                                 f"{INSTALL_HINT}") from error
    return openpifpaf


def resolve_checkpoint(checkpoint: str | None, cached: Any = None) -> Path:
    """The checkpoint file: ``checkpoint`` as a path, or a released model's name whose file is
    already in the torch hub cache (``cached(name)`` gives that path or None: OpenPifPaf's
    ``network.factory.local_checkpoint_path``). Anything else is refused (it would download)."""
    how = ("Give the path of an OpenPifPaf state dict (weights cannot be downloaded here); "
           + CONVERT_HINT)
    if checkpoint is not None and not Path(str(checkpoint)).expanduser().exists():
        local = cached(str(checkpoint)) if cached is not None else None
        if local:
            return Path(local)
        name = str(checkpoint)
        if "/" not in name and not name.endswith((".pt", ".pth", ".pkl")):
            raise BackendUnavailable(f"{BACKEND}: checkpoint {name!r} is neither a file nor a "
                                     "released model in the torch hub cache; this backend never "
                                     f"downloads. {how}")
    return require_file(checkpoint, "checkpoint", BACKEND, how)


class PifPafDetector:
    """:class:`~pipeline.backends.KeypointDetector`: OpenPifPaf's persons, best first."""

    def __init__(self, options: PifPafOptions) -> None:
        if options.checkpoint is None:
            require_file(None, "checkpoint", BACKEND, "Give the path of an OpenPifPaf state "
                         "dict (weights cannot be downloaded here).")
        openpifpaf = _import_openpifpaf()
        import torch

        path = resolve_checkpoint(options.checkpoint,
                                  openpifpaf.network.factory.local_checkpoint_path)
        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"{BACKEND}: device {options.device} asked for but CUDA is "
                                     f"not available (torch {torch.__version__}); use cpu")
        try:
            loaded = load_checkpoint_file(path, "cpu", BACKEND)
        except BackendUnavailable as error:
            raise BackendUnavailable(f"{error} OpenPifPaf's released checkpoints are pickled "
                                     f"models: {CONVERT_HINT}") from error
        meta = loaded if isinstance(loaded, Mapping) else {}
        basenet = options.basenet or meta.get("basenet") or DEFAULT_BASENET
        if basenet not in openpifpaf.BASE_FACTORIES:
            raise BackendUnavailable(f"{BACKEND}: unknown base network {basenet!r}; known: "
                                     f"{sorted(openpifpaf.BASE_FACTORIES)}")
        heads = openpifpaf.plugins.coco.CocoKp().head_metas
        for head in heads:
            head.upsample_stride = int(meta.get("upsample_stride", head.upsample_stride))
        model = openpifpaf.network.Factory(base_name=basenet).from_scratch(heads)
        load_into(model, extract_state_dict(loaded, path, BACKEND), path, BACKEND)
        self._predictor = _predictor(openpifpaf, model.eval(), torch.device(options.device))
        self.options = options

    def keypoints(self, image: np.ndarray) -> list[PersonKeypoints]:
        """The persons in ``image`` (H, W, 3) uint8 RGB, best first."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} "
                             f"{image.dtype}")
        predictions, _, _ = self._predictor.numpy_image(np.ascontiguousarray(image))
        return annotations_to_people([(ann.data, ann.score) for ann in predictions])


def _predictor(openpifpaf: Any, model: Any, device: Any) -> Any:
    """OpenPifPaf's ``Predictor`` around an already loaded ``model`` (its constructor would load
    a checkpoint by name, possibly downloading and unpickling it)."""

    class LoadedPredictor(openpifpaf.Predictor):
        def __init__(self) -> None:  # the attributes Predictor.__init__ sets (0.13.11)
            self.json_data = False
            self.visualize_image = False
            self.visualize_processed_image = False
            self.device = device
            self.model_cpu = model
            self.model = model.to(device)
            self.preprocess = self._preprocess_factory()
            self.processor = openpifpaf.decoder.factory(model.head_metas)
            self.last_decoder_time = self.last_nn_time = 0.0
            self.total_nn_time = self.total_decoder_time = 0.0
            self.total_images = 0

    return LoadedPredictor()


def make_keypoint_detector(options: Mapping[str, Any]) -> PifPafDetector:
    """The ``openpifpaf`` keypoint detector (registry factory); see the module docstring."""
    return PifPafDetector(PifPafOptions.from_mapping(options))

"""Matting backends: a trimap from a mask, closed-form matting (pymatting) and MatteFormer.

Trimaps are ``(H, W)`` uint8: 0 sure background, 128 unknown, 255 sure foreground. Alphas are
``(H, W)`` float32 in [0, 1] and equal the trimap (0 or 1) where it is known.

- ``pymatting``: closed-form matting (Levin et al. 2008) with pymatting's defaults; no options.
  Its cost grows with the number of unknown pixels (0.25 s at 28k, 18 s at 220k unknown pixels
  of a 512² image): keep the band narrow.
- ``matteformer``: MatteFormer (Park et al. 2022, github.com/webtoon/matteformer, formerly
  hongje/MatteFormer) run from its own code folder. Options: ``code_dir`` (folder holding its
  ``networks`` and ``utils`` packages, required), ``checkpoint`` (its weights file, required:
  a state dict, or a dict holding one under ``state_dict``, loadable with
  ``torch.load(weights_only=True)``), ``device`` (``cpu``, ``cuda``, ``cuda:N``; default cpu).
  Its own code needs ``timm``, ``easydict`` and ``toml`` besides torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from pipeline.backends import BackendUnavailable

FOREGROUND, UNKNOWN, BACKGROUND = 255, 128, 0

# ImageNet statistics MatteFormer's encoder was trained with (RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# MatteFormer's input: sides a multiple of 32, with a 32 px reflected border all round.
MATTEFORMER_MULTIPLE = 32
MATTEFORMER_BORDER = 32
# Progressive refinement widths of MatteFormer's inference (its config's self_refine_width1/2).
REFINE_WIDTHS = (30, 15)


def make_trimap(mask: np.ndarray, band: int) -> np.ndarray:
    """Trimap of a person mask: unknown within ``band`` px of its boundary (erode and dilate).

    A pixel of the mask stays sure foreground when no background pixel lies within Euclidean
    distance ``band`` (erosion by a disk of radius ``band``); a background pixel stays sure
    background when no mask pixel lies within ``band`` (dilation). Along a straight edge the
    unknown band is ``band`` px on each side (``2 * band`` in all); ``band = 0`` leaves none.
    The image border is not a boundary.

    Args:
        mask: ``(H, W)`` bool person mask.
        band: half width of the unknown band in pixels, ``>= 0``.

    Returns:
        ``(H, W)`` uint8 trimap: 255 foreground, 0 background, 128 unknown.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {mask.shape}")
    if int(band) != band or band < 0:
        raise ValueError(f"band must be a non-negative integer, got {band!r}")
    trimap = np.where(mask, FOREGROUND, BACKGROUND).astype(np.uint8)
    if band == 0 or mask.all() or not mask.any():
        return trimap
    inside = ndimage.distance_transform_edt(mask)  # distance of a mask pixel to background
    outside = ndimage.distance_transform_edt(~mask)  # distance of a background pixel to mask
    unknown = (mask & (inside <= band)) | (~mask & (outside <= band))
    trimap[unknown] = UNKNOWN
    return trimap


def _check_inputs(image: np.ndarray, trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, trimap = np.asarray(image), np.asarray(trimap)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if trimap.shape != image.shape[:2]:
        raise ValueError(f"trimap {trimap.shape} does not match image {image.shape[:2]}")
    return image, trimap


def known_alpha(trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the trimap is known (``(H, W)`` bool: 0 or 255) and its alpha there (float32)."""
    known = (trimap == FOREGROUND) | (trimap == BACKGROUND)
    return known, (trimap == FOREGROUND).astype(np.float32)


class PyMatting:
    """:class:`~pipeline.backends.Matter`: closed-form matting (``pymatting.estimate_alpha_cf``)."""

    def __init__(self) -> None:
        try:
            import pymatting  # compiles with numba on its first import (~30 s)
        except ImportError as error:
            raise BackendUnavailable("the pymatting backend needs pymatting: "
                                     f"pip install pymatting==1.1.16 ({error})") from error
        self._estimate = pymatting.estimate_alpha_cf

    def matte(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        """Alpha ``(H, W)`` float32 in [0, 1] of ``image`` (H, W, 3) uint8 given ``trimap``.

        A trimap without unknown pixels is its own alpha (no solve); one without known pixels
        cannot be solved and gives 0.5 everywhere.
        """
        image, trimap = _check_inputs(image, trimap)
        known, alpha = known_alpha(trimap)
        if known.all() or known.sum() == 0:
            # nothing to solve, or nothing to anchor it: the trimap's own alpha (0.5 unknown)
            return np.where(known, alpha, np.float32(0.5)).astype(np.float32)
        solved = self._estimate(image.astype(np.float64) / 255.0,
                                np.where(known, alpha, 0.5).astype(np.float64))
        out = np.clip(np.asarray(solved, dtype=np.float32), 0.0, 1.0)
        out[known] = alpha[known]
        return out


def make_pymatting(options: Mapping[str, Any]) -> PyMatting:
    """The ``matting: pymatting`` backend; it takes no options."""
    if options:
        raise ValueError(f"the pymatting backend takes no options, got {sorted(options)}")
    return PyMatting()


# --- MatteFormer: pure pre/post-processing --------------------------------------------------


def normalise_image(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB → ``(3, H, W)`` float32 in ImageNet-normalised units."""
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def trimap_one_hot(trimap: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 trimap → ``(3, H, W)`` float32 one-hot: background (< 85), unknown,
    foreground (>= 170), in that channel order."""
    trimap = np.asarray(trimap)
    classes = np.where(trimap < 85, 0, np.where(trimap >= 170, 2, 1))
    return (classes[None] == np.arange(3)[:, None, None]).astype(np.float32)


@dataclass(frozen=True)
class Padding:
    """How an ``(height, width)`` array was padded: ``top``/``left`` rows/columns added before."""

    top: int
    left: int
    height: int
    width: int


def pad_for_network(array: np.ndarray, multiple: int = MATTEFORMER_MULTIPLE,
                    border: int = MATTEFORMER_BORDER) -> tuple[np.ndarray, Padding]:
    """Reflect-pad the last two axes of ``(..., H, W)``: ``border`` before, and after enough to
    make both sides a multiple of ``multiple`` (plus ``border``)."""
    array = np.asarray(array)
    height, width = array.shape[-2:]
    if border >= min(height, width):
        raise ValueError(f"image {height}x{width} too small for a {border} px reflected border")
    extra_h, extra_w = (-height) % multiple, (-width) % multiple
    pads = [(0, 0)] * (array.ndim - 2) + [(border, border + extra_h), (border, border + extra_w)]
    return np.pad(array, pads, mode="reflect"), Padding(border, border, height, width)


def crop_padding(array: np.ndarray, padding: Padding) -> np.ndarray:
    """Undo :func:`pad_for_network` on the last two axes of ``(..., H', W')``."""
    return array[..., padding.top:padding.top + padding.height,
                 padding.left:padding.left + padding.width]


def uncertain_region(alpha: np.ndarray, width: int) -> np.ndarray:
    """``(H, W)`` bool: pixels with ``alpha`` strictly between 1/255 and 254/255, dilated by an
    elliptic kernel of side ``width // 2`` (MatteFormer's test-time rule)."""
    uncertain = ((alpha > 1.0 / 255.0) & (alpha < 1.0 - 1.0 / 255.0)).astype(np.uint8)
    side = width // 2
    if side > 1:
        uncertain = cv2.dilate(uncertain, cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                                    (side, side)))
    return uncertain.astype(bool)


def progressive_refine(os1: np.ndarray, os4: np.ndarray, os8: np.ndarray,
                       widths: tuple[int, int] = REFINE_WIDTHS) -> np.ndarray:
    """Fuse MatteFormer's three ``(H, W)`` alphas (output strides 1, 4, 8): start from the
    coarsest and replace its uncertain region by the finer predictions in turn."""
    alpha = np.array(os8, dtype=np.float32)
    for finer, width in ((os4, widths[0]), (os1, widths[1])):
        region = uncertain_region(alpha, width)
        alpha[region] = np.asarray(finer, dtype=np.float32)[region]
    return alpha


# --- MatteFormer: loading and running -------------------------------------------------------


def _import_from(code_dir: Path, module: str) -> Any:
    """Import ``module`` from ``code_dir`` without leaving it on ``sys.path`` or leaving the
    (generic: ``utils``, ``networks``) top-level names it loads in ``sys.modules``."""
    tops = ({p.stem for p in code_dir.glob("*.py")}
            | {p.name for p in code_dir.iterdir() if p.is_dir() and p.name.isidentifier()})
    saved_path = list(sys.path)
    saved = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] in tops}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(code_dir))
    try:
        importlib.invalidate_caches()
        return importlib.import_module(module)
    finally:
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if n.split(".")[0] in tops]:
            del sys.modules[name]
        sys.modules.update(saved)


def _state_dict(checkpoint: Any, path: Path) -> dict[str, Any]:
    """The model's state dict from a loaded checkpoint, ``module.`` prefixes removed."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise BackendUnavailable(f"{path}: not a MatteFormer state dict")
    return {(k[len("module."):] if k.startswith("module.") else k): v
            for k, v in checkpoint.items()}


class MatteFormer:
    """:class:`~pipeline.backends.Matter`: MatteFormer from its own code and weights."""

    def __init__(self, code_dir: Path, checkpoint: Path, device: str) -> None:
        try:
            import torch
        except ImportError as error:
            raise BackendUnavailable(f"the matteformer backend needs torch ({error})") from error
        try:
            generators = _import_from(code_dir, "networks.generators")
        except ImportError as error:
            raise BackendUnavailable(f"cannot import MatteFormer's networks from {code_dir}: "
                                     f"{error} (its code needs torch, timm, easydict, toml)"
                                     ) from error
        self._torch = torch
        self.device = torch.device(device)
        try:
            loaded = torch.load(checkpoint, map_location=self.device, weights_only=True)
        except Exception as error:  # torch raises several types (pickle, zip, runtime)
            raise BackendUnavailable(f"{checkpoint}: cannot load MatteFormer weights with "
                                     f"torch.load(weights_only=True): {error}") from error
        model = generators.get_generator(is_train=False)
        model.load_state_dict(_state_dict(loaded, checkpoint), strict=True)
        self._model = model.to(self.device).eval()

    def matte(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        """Alpha ``(H, W)`` float32 in [0, 1] of ``image`` (H, W, 3) uint8 given ``trimap``."""
        image, trimap = _check_inputs(image, trimap)
        known, alpha = known_alpha(trimap)
        if known.all():
            return alpha
        torch = self._torch
        x, padding = pad_for_network(normalise_image(image))
        t, _ = pad_for_network(trimap_one_hot(trimap))
        with torch.no_grad():
            out = self._model(torch.from_numpy(x)[None].to(self.device),
                              torch.from_numpy(t)[None].to(self.device))
        os1, os4, os8 = (out[k][0, 0].float().cpu().numpy()
                         for k in ("alpha_os1", "alpha_os4", "alpha_os8"))
        fused = np.clip(crop_padding(progressive_refine(os1, os4, os8), padding), 0.0, 1.0)
        fused[known] = alpha[known]
        return fused.astype(np.float32)


def make_matteformer(options: Mapping[str, Any]) -> MatteFormer:
    """The ``matting: matteformer`` backend (options ``code_dir``, ``checkpoint``, ``device``).

    Raises:
        BackendUnavailable: ``code_dir`` or ``checkpoint`` unset or missing, its code not
            importable, or the weights not loadable.
    """
    unknown = sorted(set(options) - {"code_dir", "checkpoint", "device"})
    if unknown:
        raise ValueError(f"unknown matteformer option(s) {unknown}; known: code_dir, "
                         "checkpoint, device")
    how = ("MatteFormer runs from its own code and weights: clone "
           "https://github.com/webtoon/matteformer and download its pretrained weights, then "
           "set mask.matteformer.code_dir and mask.matteformer.checkpoint")
    code_dir, checkpoint = options.get("code_dir"), options.get("checkpoint")
    if not code_dir or not checkpoint:
        unset = [k for k in ("code_dir", "checkpoint") if not options.get(k)]
        raise BackendUnavailable(f"matteformer: {' and '.join(unset)} not set. {how}")
    code_dir, checkpoint = Path(code_dir), Path(checkpoint)
    if not (code_dir / "networks" / "generators.py").is_file():
        raise BackendUnavailable(f"matteformer: code_dir {code_dir} has no "
                                 f"networks/generators.py. {how}")
    if not checkpoint.is_file():
        raise BackendUnavailable(f"matteformer: checkpoint {checkpoint} not found. {how}")
    return MatteFormer(code_dir, checkpoint, str(options.get("device", "cpu")))

"""Safe loading of model weights for the card's backends (mmdet, DensePose, openpifpaf).

The project loads weights with ``torch.load(path, weights_only=True)`` only: a file is accepted
when it holds a state dict of tensors, bare or under ``"state_dict"`` (mmengine) or ``"model"``
(detectron2), next to plain metadata (strings, numbers, lists, dicts). A checkpoint that needs
pickle to load (whole pickled models, numpy arrays, custom classes) is refused with an error
saying so: re-save it, once, in an environment you trust, as ``torch.save(model.state_dict())``.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.backends import BackendUnavailable

STATE_DICT_KEYS = ("state_dict", "model")


def require_file(path: Any, option: str, backend: str, how: str) -> Path:
    """``path`` as an existing file, or :class:`BackendUnavailable` naming the ``option``."""
    if path is None or str(path).strip() == "":
        raise BackendUnavailable(f"{backend}: option '{option}' is not set. {how}")
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise BackendUnavailable(f"{backend}: {option} file {path} does not exist. {how}")
    return path


def extract_state_dict(loaded: Any, path: Path, backend: str) -> dict[str, Any]:
    """The tensors of a loaded checkpoint, ``module.`` prefixes (DataParallel) removed.

    Accepts a bare state dict or one under ``"state_dict"`` / ``"model"``.
    """
    import torch

    if isinstance(loaded, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not loaded:
        raise BackendUnavailable(f"{backend}: {path} holds no state dict (a mapping of "
                                 "parameter names to tensors)")
    not_tensors = [k for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise BackendUnavailable(f"{backend}: {path}: state dict entries that are not tensors: "
                                 f"{not_tensors[:5]}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in loaded.items()}


def load_checkpoint_file(path: Path, device: str, backend: str) -> Any:
    """What ``path`` holds, loaded onto ``device`` with ``torch.load(weights_only=True)``.

    Raises:
        BackendUnavailable: when the file needs pickle (non-tensor objects) or is not a torch
            file; the message names the file and what to do.
    """
    import torch

    try:
        loaded = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise BackendUnavailable(
            f"{backend}: {path} cannot be loaded with torch.load(weights_only=True), the only "
            "way this project loads weights: it needs pickle (non-tensor objects: a pickled "
            "model, numpy arrays, custom classes) or is not a torch file at all. Refused; "
            "re-save the weights, once, in an environment you trust, as a plain state dict: "
            f"torch.save(model.state_dict(), 'weights.pth'). torch said: {first_line}"
        ) from error
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise BackendUnavailable(f"{backend}: cannot read {path} as a torch checkpoint: "
                                 f"{error}") from error
    return loaded


def load_state_dict_file(path: Path, device: str, backend: str) -> dict[str, Any]:
    """The state dict in ``path`` (see :func:`load_checkpoint_file`, :func:`extract_state_dict`)."""
    return extract_state_dict(load_checkpoint_file(path, device, backend), path, backend)


def load_into(model: Any, state: Mapping[str, Any], path: Path, backend: str) -> None:
    """``model.load_state_dict(state, strict=True)``, a mismatch reported as
    :class:`BackendUnavailable` naming the checkpoint (wrong config for these weights)."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise BackendUnavailable(f"{backend}: the weights in {path} do not fit the model built "
                                 f"from its config (wrong config or checkpoint?): "
                                 f"{str(error)[:1500]}") from error

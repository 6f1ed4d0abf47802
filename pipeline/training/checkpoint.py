"""Training checkpoints: one ``torch.save`` dict, written atomically, read with
``torch.load(weights_only=True)`` (no pickled code is ever executed).

Layout (``FORMAT``): ``kind`` (``normal_net`` | ``pixel2isdf`` | …), ``step``, ``model``,
``optimizer``, ``scaler`` (state dicts), ``rng`` (torch CPU and CUDA generator states, Python's
``random``), ``model_config`` (the JSON the network is rebuilt from), ``config_hash`` (the
training run's parameters), ``cache_schema`` (the cache layout it was trained on),
``world_size`` and ``history`` (JSON of the logged records, so a resumed run's ``train.json``
is whole).
"""

from __future__ import annotations

import json
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import torch

from models.cache_io import SCHEMA_VERSION
from pipeline.errors import PipelineError
from pipeline.io import atomic_path

FORMAT = "pixel2isdf.checkpoint/1"


def rng_state() -> dict[str, Any]:
    """The RNG states a resumed run restores (torch CPU/CUDA, Python ``random``)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                             "python_version": random.getstate()[0],
                             "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus ``format``) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)


def load_checkpoint(path: str | Path, *, kind: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely and check what it is.

    Args:
        path: the file. kind: the expected ``kind`` (None: any).

    Raises:
        PipelineError: missing, unreadable or corrupt file, another format, another kind, or
            trained on caches of another schema version; the message names the file and
            the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError,
            ValueError) as exc:
        raise PipelineError(f"checkpoint {path} is corrupt or not a checkpoint of this "
                            f"pipeline ({type(exc).__name__}: {str(exc)[:200]}); delete it "
                            "and retrain") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise PipelineError(f"checkpoint {path} has format {found!r}, expected {FORMAT!r}")
    if kind is not None and data.get("kind") != kind:
        raise PipelineError(f"checkpoint {path} holds a {data.get('kind')!r} model, expected "
                            f"{kind!r}")
    if int(data.get("cache_schema", -1)) != SCHEMA_VERSION:
        raise PipelineError(f"checkpoint {path} was trained on caches of schema version "
                            f"{data.get('cache_schema')}, this code reads version "
                            f"{SCHEMA_VERSION}; retrain it (snakemake --forcerun the rule "
                            "that wrote it)")
    return data


def model_config(data: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The ``model_config`` JSON of a loaded checkpoint as a dict."""
    try:
        return json.loads(data["model_config"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise PipelineError(f"checkpoint {path} has no readable model_config") from exc


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path,
               what: str = "model") -> None:
    """``load_state_dict`` that names the checkpoint and the first mismatches on failure."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:4]
        raise PipelineError(f"checkpoint {path}: its {what} weights do not fit the network "
                            f"built from the config: {' '.join(first)[:400]}") from exc

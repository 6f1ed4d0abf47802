"""Training checkpoints: one ``torch.save`` dict, written atomically, read with
``torch.load(weights_only=True)`` (no pickled code is ever executed).

Layout (``FORMAT``): ``kind`` (``normal_net`` | ``pixel2isdf`` | …), ``step``, ``model``,
``optimizer``, ``scaler`` (state dicts), ``rng`` (torch CPU and CUDA generator states, Python's
``random``), ``model_config`` (the JSON the network is rebuilt from), ``config_hash`` (the
training run's parameters), ``cache_schema`` (the cache layout it was trained on),
``world_size`` and ``history`` (JSON of the logged records, so a resumed run's ``train.json``
is whole).

Beside each checkpoint :func:`save_checkpoint` writes a sidecar ``<checkpoint>.meta.json``
(``SIDECAR``): the checkpoint's header (``format``, ``kind``, ``cache_schema``,
``model_config``: what :func:`checkpoint_header` checks, no weights) and the checkpoint file's
fingerprint (its size and the sha256 of its first and last MiB; the end of a ``torch.save``
zip is its central directory, which holds every record's CRC-32, so rewritten weights change
it). :func:`checkpoint_header` (the check at every Snakefile parse, pipeline/training/given.py)
reads the sidecar when it is there and matches the checkpoint; otherwise (a checkpoint of an
older version, one copied without it, one replaced after it, a sidecar that is not valid JSON
or lacks a key) it warns, naming the file and ``python -m pipeline checkpoint-meta
--checkpoints FILE``, and reads the header from the checkpoint itself, memory-mapped so the
weights are not read. A broken sidecar is never an error: it is only a shortcut.

torch is imported by the functions that save, load or seed, not with the module: the check at
every Snakefile parse reads the sidecar and imports nothing heavy (tests/test_parse.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.cache_io import SCHEMA_VERSION
from pipeline.errors import PipelineError
from pipeline.io import atomic_path

if TYPE_CHECKING:
    import torch

FORMAT = "pixel2isdf.checkpoint/1"
SIDECAR = "pixel2isdf.checkpoint-meta/1"
HEADER_KEYS = ("format", "kind", "cache_schema", "model_config")
_EDGE = 1 << 20  # the fingerprint hashes this many bytes at each end of the file

log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """The RNG states a resumed run restores (torch CPU/CUDA, Python ``random``)."""
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                             "python_version": random.getstate()[0],
                             "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus ``format``) to ``path`` atomically, then its sidecar."""
    import torch

    data = {"format": FORMAT, **payload}
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    write_sidecar(path, header=header_of(data))


def _torch_load(path: Path, map_location: str | torch.device = "cpu",
                mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)``; a file that is not a checkpoint is a PipelineError."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError,
            ValueError) as exc:
        raise PipelineError(f"checkpoint {path} is corrupt or not a checkpoint of this "
                            f"pipeline ({type(exc).__name__}: {str(exc)[:200]}); delete it "
                            "and retrain") from exc


def check_header(data: Any, path: str | Path, kind: str | None = None) -> None:
    """PipelineError unless ``data`` (a loaded checkpoint or its header) is of this format,
    of ``kind`` (None: any) and trained on caches of this schema version."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise PipelineError(f"checkpoint {path} has format {found!r}, expected {FORMAT!r}")
    if kind is not None and data.get("kind") != kind:
        raise PipelineError(f"checkpoint {path} holds a {data.get('kind')!r} model, expected "
                            f"{kind!r}")
    try:
        schema = int(data.get("cache_schema", -1))
    except (TypeError, ValueError):
        schema = -1
    if schema != SCHEMA_VERSION:
        raise PipelineError(f"checkpoint {path} was trained on caches of schema version "
                            f"{data.get('cache_schema')}, this code reads version "
                            f"{SCHEMA_VERSION}; retrain it (snakemake --forcerun the rule "
                            "that wrote it)")


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
    data = _torch_load(path, map_location)
    check_header(data, path, kind)
    return data


def header_of(data: dict[str, Any]) -> dict[str, Any]:
    """The ``HEADER_KEYS`` of a checkpoint's payload (None where one is missing)."""
    return {k: data.get(k) for k in HEADER_KEYS}


def sidecar_path(path: str | Path) -> Path:
    """``<checkpoint>.meta.json``: where a checkpoint's sidecar lives."""
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def fingerprint(path: str | Path) -> dict[str, Any]:
    """``bytes`` (the file's size) and ``head_tail_sha256`` (sha256 of its first MiB, then its
    last MiB): reads at most 2 MiB whatever the size."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        digest.update(fh.read(_EDGE))
        fh.seek(max(0, size - _EDGE))
        digest.update(fh.read(_EDGE))
    return {"bytes": size, "head_tail_sha256": digest.hexdigest()}


def write_sidecar(path: str | Path, header: dict[str, Any] | None = None) -> Path:
    """Write ``path``'s sidecar atomically and return its path.

    Args:
        path: the checkpoint. header: its ``HEADER_KEYS`` (None: read from the checkpoint,
            memory-mapped).

    Raises:
        PipelineError: (``header`` None) the checkpoint is missing, does not load, or is not
            of this format and cache schema version.
    """
    path = Path(path)
    if header is None:
        if not path.is_file():
            raise PipelineError(f"checkpoint {path} does not exist")
        data = _torch_load(path, mmap=True)
        check_header(data, path)  # a file that would not pass gets no sidecar
        header = header_of(data)
    meta = {"sidecar": SIDECAR, **header, "checkpoint": fingerprint(path)}
    out = sidecar_path(path)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out


def write_sidecars(*, checkpoints: list[Path]) -> None:
    """``python -m pipeline checkpoint-meta --checkpoints FILE...``: write the sidecar of each
    checkpoint (one trained before sidecars existed, or copied without its own)."""
    for path in checkpoints:
        log.info("wrote %s", write_sidecar(path))


def read_sidecar(path: str | Path) -> tuple[dict[str, Any] | None, str]:
    """``path``'s header from its sidecar and ``""``, or None and why the sidecar is not used
    (missing, unreadable, of another version, lacking a key, or stale: the checkpoint is not
    the file it was written for)."""
    side = sidecar_path(path)
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"it has no sidecar {side.name}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"its sidecar {side} is unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(meta, dict) or meta.get("sidecar") != SIDECAR:
        found = meta.get("sidecar") if isinstance(meta, dict) else type(meta).__name__
        return None, f"its sidecar {side} is {found!r}, not {SIDECAR!r}"
    missing = [k for k in (*HEADER_KEYS, "checkpoint") if k not in meta]
    if missing:
        return None, f"its sidecar {side} lacks {', '.join(missing)}"
    if meta["checkpoint"] != fingerprint(path):
        return None, (f"its sidecar {side} is stale (written for other content: the checkpoint "
                      "was replaced after it)")
    return header_of(meta), ""


def checkpoint_header(path: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """A checkpoint's ``HEADER_KEYS``, checked like :func:`load_checkpoint` checks the file,
    without reading its weights: from its sidecar when that matches the checkpoint, else
    (with a warning naming the file and the command that writes the sidecar) from the
    checkpoint memory-mapped, or loaded whole where memory-mapping fails.

    Raises:
        PipelineError: as :func:`load_checkpoint`.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"checkpoint {path} does not exist")
    header, why = read_sidecar(path)
    if header is None:
        log.warning("checkpoint %s: %s; reading the checkpoint itself to check it (write the "
                    "sidecar once: python -m pipeline checkpoint-meta --checkpoints %s)",
                    path, why, path)
        try:
            data = _torch_load(path, mmap=True)
        except PipelineError:  # a file mmap cannot open: the whole load says what is wrong
            data = load_checkpoint(path, kind=kind)
        header = header_of(data) if isinstance(data, dict) else data
    check_header(header, path, kind)
    return header


def model_config(data: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The ``model_config`` JSON of a loaded checkpoint as a dict."""
    try:
        return json.loads(data["model_config"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:  # TypeError: None
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

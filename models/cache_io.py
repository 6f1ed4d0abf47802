"""Reading the per-subject training cache (``cache/<subject>.h5``, written by ``pipeline.cache``).

``open_cache`` is the only way in: it refuses a file of another layout version with a message
that says how to rebuild it. ``CacheIndex`` holds the small per-subject tables a dataset needs
to pick views and frames without touching the large arrays. Layout: ``docs/cache.md``.

h5py is imported where a file is opened: the Snakefile's parse reads ``SCHEMA_VERSION``
(through pipeline/training/checkpoint.py) and imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.errors import PipelineError

if TYPE_CHECKING:
    import h5py

SCHEMA_VERSION = 4
"""Layout version; bump it whenever a dataset or attribute changes name, shape or meaning.
2: the PIFu targets follow PIFu's sampling (one σ of 5 cm, 1/17 uniform).
3: the unmasked crops beside the masked ones (``unmasked/images``, the w/o-mask ablation).
4: the fitted canonical body's signed-distance volume (``body_sdf/``, the body prior)."""

SCHEMA = f"pixel2isdf.cache/{SCHEMA_VERSION}"

CAMERA_KEYS = {"calibrated": ("K", "R", "t"), "weak_perspective": ("R", "scale", "trans")}
"""Datasets under ``camera/`` per camera model (the fit npz's ``camera_<key>`` arrays)."""

REBUILD_HINT = "rebuild it with `snakemake --forcerun cache` (or delete the file and rerun)"


def open_cache(path: str | Path) -> h5py.File:
    """Open a cache file read-only after checking its layout version.

    Args:
        path: ``cache/<subject>.h5``.

    Returns:
        The open ``h5py.File`` (the caller closes it; usable as a context manager).

    Raises:
        PipelineError: the file is missing, not HDF5, or of another ``schema_version``
            (naming the file, the found and expected versions and how to rebuild).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"cache file {path} does not exist; build it with the cache stage "
                            "(snakemake ... cache)")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise PipelineError(f"cache file {path} is not a readable HDF5 file ({exc}); "
                            f"{REBUILD_HINT}") from exc
    found = handle.attrs.get("schema_version")
    if found is None or int(found) != SCHEMA_VERSION:
        handle.close()
        shown = "none" if found is None else int(found)
        raise PipelineError(f"cache file {path} has schema_version {shown}, this code reads "
                            f"version {SCHEMA_VERSION}; {REBUILD_HINT}")
    return handle


def strings(dataset: h5py.Dataset) -> np.ndarray:
    """A variable-length string dataset as a numpy unicode array of the same shape."""
    return np.asarray(dataset.asstr()[()], dtype=str)


@dataclass(frozen=True)
class CacheIndex:
    """The small tables of one cache file (Nv flattened views, A actions).

    Attributes:
        path: the file.
        subject, camera_model: from the attributes; ``crop_size`` S in pixels.
        actions: ``(A,)`` action names in file order.
        view_names: ``(Nv,)`` view names; ``action_index`` ``(Nv,)`` int, row of ``actions``.
        view_ok: ``(Nv,)`` bool, the view passed the fit's checks.
        pifu_actions: actions that have PIFu targets (``pifu/<action>``).
        has_oracle_normals: ``oracle/normals`` is present.
        has_unmasked: ``unmasked/images`` (the crops before the matte) is present.
        has_body_sdf: ``body_sdf/`` (the fitted body's signed-distance volume) is present.
        targets: ``present``, or why the training targets (``sdf/``, ``surface/``) are
            absent (a subject without a scan).
    """

    path: Path
    subject: str
    camera_model: str
    crop_size: int
    actions: np.ndarray
    view_names: np.ndarray
    action_index: np.ndarray
    view_ok: np.ndarray
    pifu_actions: tuple[str, ...]
    has_oracle_normals: bool
    has_unmasked: bool = False
    has_body_sdf: bool = False
    targets: str = "present"

    @property
    def has_targets(self) -> bool:
        return self.targets == "present"

    @property
    def camera_keys(self) -> tuple[str, ...]:
        return CAMERA_KEYS[self.camera_model]

    def ok_views(self) -> np.ndarray:
        """``(M,)`` int rows of the views that passed the fit's checks."""
        return np.flatnonzero(self.view_ok)

    def find_view(self, action: str, view: str) -> int | None:
        """Row of ``view`` of ``action`` or None when that view is not in the cache."""
        rows = np.flatnonzero((self.actions[self.action_index] == action)
                              & (self.view_names == view))
        return int(rows[0]) if len(rows) else None


def read_index(handle: h5py.File) -> CacheIndex:
    """The small tables of an open cache file (see ``CacheIndex``)."""
    path = Path(handle.filename)
    try:
        camera_model = str(handle.attrs["camera_model"])
        if camera_model not in CAMERA_KEYS:
            raise PipelineError(f"cache file {path}: unknown camera_model {camera_model!r}")
        pifu = tuple(sorted(handle["pifu"].keys())) if "pifu" in handle else ()
        return CacheIndex(
            path=path, subject=str(handle.attrs["subject"]), camera_model=camera_model,
            crop_size=int(handle.attrs["crop_size"]), actions=strings(handle["actions"]),
            view_names=strings(handle["view_names"]),
            action_index=np.asarray(handle["action_index"][()], dtype=np.int64),
            view_ok=np.asarray(handle["view_ok"][()], dtype=bool), pifu_actions=pifu,
            has_oracle_normals="oracle/normals" in handle,
            has_unmasked="unmasked/images" in handle,
            has_body_sdf="body_sdf/values" in handle,
            targets=("present" if "sdf/values" in handle
                     else str(handle.attrs.get("targets", "absent"))))
    except KeyError as exc:
        raise PipelineError(f"cache file {path} lacks {exc}; {REBUILD_HINT}") from exc


def load_index(path: str | Path) -> CacheIndex:
    """Open, index and close a cache file (no handle is kept open)."""
    with open_cache(path) as handle:
        return read_index(handle)


def canonical_body(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The fitted naked body in the canonical frame: ``(V, 3)`` float64 metres and
    ``(F, 3)`` int64 faces (outward), read from a cache file."""
    with open_cache(path) as handle:
        try:
            return (np.asarray(handle["canonical_vertices"], dtype=np.float64),
                    np.asarray(handle["faces"], dtype=np.int64))
        except KeyError as exc:
            raise PipelineError(f"cache file {path} lacks {exc}; {REBUILD_HINT}") from exc


def body_sdf(path: str | Path) -> dict[str, np.ndarray]:
    """The fitted canonical body's signed-distance volume of a cache file: ``values``
    ``(R, R, R)`` float32 ``[z, y, x]``, ``lo``/``hi`` ``(3,)`` float32; PipelineError naming
    the file and the rebuild command when it has none."""
    with open_cache(path) as handle:
        if "body_sdf/values" not in handle:
            raise PipelineError(
                f"cache file {path} has no body signed-distance volume (body_sdf: "
                f"{handle.attrs.get('body_sdf', 'absent')}), which train.model.prior 'body' "
                "needs; rebuild it with cache.body_sdf_resolution > 0: "
                "`snakemake --forcerun cache`")
        return {k: np.asarray(handle[f"body_sdf/{k}"][()]) for k in ("values", "lo", "hi")}


def require_targets(index: CacheIndex, stage: str) -> None:
    """Refuse to train ``stage`` on a cache without training targets (a subject without a
    scan), naming the subject, the file and the truth mesh it lacks."""
    if not index.has_targets:
        raise PipelineError(
            f"{stage}: cannot train on subject {index.subject}: its cache {index.path} has no "
            f"training targets ({index.targets}), as it was built without "
            f"truth/{index.subject}/canonical_clothed.ply; a subject without a scan is "
            "reconstructed only (keep it in data.predict_subjects)")

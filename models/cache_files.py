"""Per-process reading of the per-subject caches (``cache/<subject>.h5``): lazy HDF5 handles,
the small arrays read once, images and mattes one view at a time, cameras and the body's
skinning (the datasets of :mod:`models.data` and :mod:`models.pifu.data` read through it).

HDF5 files are opened lazily, read-only, once per process (a changed ``os.getpid()`` — a
forked DataLoader worker — reopens them), so a dataset holding a :class:`CacheFiles` can be
pickled to spawned workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from models.cache_io import CacheIndex, open_cache
from models.errors import PipelineError


class CacheFiles:
    """Per-process lazy handles on the cache files and the small arrays read from them.

    ``masked=False`` serves the crops before the matte (``unmasked/images``) with alphas of
    255 everywhere: a network fed from it never sees the matte (the w/o-mask ablation).
    """

    def __init__(self, paths: Sequence[str | Path], in_memory: bool = False,
                 masked: bool = True) -> None:
        self.paths = [Path(p) for p in paths]
        self.in_memory, self.masked = in_memory, masked
        self._pid: int | None = None
        self._files: dict[int, h5py.File] = {}
        self._arrays: dict[tuple[int, str], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"paths": self.paths, "in_memory": self.in_memory, "masked": self.masked,
                "_pid": None, "_files": {}, "_arrays": {}}

    def check_images(self, index: CacheIndex) -> None:
        """PipelineError naming the file when it lacks the images this reader serves."""
        if not self.masked and not index.has_unmasked:
            raise PipelineError(
                f"cache file {index.path} has no unmasked crops (unmasked/images), which "
                "the w/o-mask input (model masked_input: false) reads; rebuild it with "
                "cache.unmasked_crops: true: `snakemake --forcerun cache`")

    @property
    def image_name(self) -> str:
        """The dataset the images come from."""
        return "images" if self.masked else "unmasked/images"

    def _check_process(self) -> None:
        pid = os.getpid()
        if pid != self._pid:  # first use, or a forked worker holding the parent's handles
            self._files, self._arrays, self._pid = {}, {}, pid

    def file(self, s: int) -> h5py.File:
        """The open cache file of subject ``s`` in this process."""
        self._check_process()
        handle = self._files.get(s)
        if handle is None:
            handle = self._files[s] = open_cache(self.paths[s])
        return handle

    def array(self, s: int, name: str) -> np.ndarray:
        """A whole (small) dataset of subject ``s``, read once per process."""
        self._check_process()
        key = (s, name)
        if key not in self._arrays:
            try:
                self._arrays[key] = self.file(s)[name][()]
            except KeyError as exc:
                raise PipelineError(f"cache file {self.paths[s]} lacks dataset {name!r}; "
                                    "rebuild it with `snakemake --forcerun cache`") from exc
        return self._arrays[key]

    def images(self, s: int, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(T, S, S, 3)`` uint8 crops (masked unless ``masked`` is false) and ``(T, S, S)``
        uint8 alphas of ``rows`` (255 everywhere when not ``masked``)."""
        handle = self.file(s)
        out = []
        for name in (self.image_name, "alphas"):
            dataset = handle[name]
            buffer = np.empty((len(rows), *dataset.shape[1:]), dtype=dataset.dtype)
            if name == "alphas" and not self.masked:
                buffer.fill(255)
            else:
                for k, r in enumerate(rows):
                    dataset.read_direct(buffer, np.s_[int(r)], np.s_[k])
            out.append(buffer)
        return out[0], out[1]

    def normals(self, s: int, rows: Sequence[int]) -> torch.Tensor:
        """``(T, 3, S, S)`` uint8 truth normal maps of ``rows`` (``oracle/normals``, encoded
        ``(n + 1) / 2 · 255``, 0 off the person), or a PipelineError when the cache has none."""
        handle = self.file(s)
        if "oracle/normals" not in handle:
            raise PipelineError(
                f"cache file {self.paths[s]} has no truth normal maps (oracle/normals: "
                f"{handle.attrs.get('oracle_normals', 'absent')}); the normal network trains "
                "on them and the oracle_normal input reads them: rebuild the cache with "
                "cache.oracle_normals: true from a data set whose truth has <view>_normal.png")
        dataset = handle["oracle/normals"]
        buffer = np.empty((len(rows), *dataset.shape[1:]), dtype=np.uint8)
        for k, r in enumerate(rows):
            dataset.read_direct(buffer, np.s_[int(r)], np.s_[k])
        return torch.from_numpy(np.ascontiguousarray(buffer.transpose(0, 3, 1, 2)))

    def planar(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """All images ``(V, 3, S, S)`` and alphas ``(V, 1, S, S)`` of subject ``s``, uint8,
        decoded once per process (``in_memory``)."""
        key = (s, "planar")
        if key not in self._arrays:
            images, alphas = self.array(s, self.image_name), self.array(s, "alphas")
            if not self.masked:
                alphas = np.full_like(alphas, 255)
            self._arrays[key] = (np.ascontiguousarray(images.transpose(0, 3, 1, 2)),
                                 np.ascontiguousarray(alphas[:, None]))
            del self._arrays[(s, self.image_name)], self._arrays[(s, "alphas")]
        return self._arrays[key]

    def tensors(self, s: int, rows: Sequence[int],
                uint8: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(T, 3, S, S)`` and alphas ``(T, 1, S, S)`` of ``rows`` as tensors, float32
        in [0, 1] or uint8 (see :func:`_to_tensors`)."""
        if not self.in_memory:
            return _to_tensors(*self.images(s, rows), uint8)
        images, alphas = self.planar(s)
        index = np.asarray(rows, dtype=np.int64)
        if uint8:
            return torch.from_numpy(images[index]), torch.from_numpy(alphas[index])
        return (torch.from_numpy(np.multiply(images[index], _SCALE, dtype=np.float32)),
                torch.from_numpy(np.multiply(alphas[index], _SCALE, dtype=np.float32)))

    def alphas(self, s: int, rows: Sequence[int]) -> torch.Tensor:
        """``(T, 1, S, S)`` uint8 mattes of ``rows`` alone (255 everywhere when not
        ``masked``: a network fed from it never sees the matte)."""
        dataset = self.file(s)["alphas"]
        buffer = np.empty((len(rows), *dataset.shape[1:]), dtype=np.uint8)
        if not self.masked:
            buffer.fill(255)
        else:
            for k, r in enumerate(rows):
                dataset.read_direct(buffer, np.s_[int(r)], np.s_[k])
        return torch.from_numpy(buffer[:, None])

    def vertex_transforms(self, s: int) -> np.ndarray:
        """``(A, N, 3, 4)`` float32 blend-skinning transform of every body vertex of subject
        ``s`` per action (``Σ_b w_vb · B_b``, canonical → posed), computed once per process."""
        weights = self.array(s, "skinning_weights")
        key = (s, "vertex_transforms")
        if key not in self._arrays:
            bones = self.array(s, "bone_transforms")[:, :, :3, :]
            self._arrays[key] = np.einsum("nb,abij->anij", weights, bones).astype(np.float32)
        return self._arrays[key]

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files, self._arrays = {}, {}


_SCALE = np.float32(1.0 / 255.0)


def _to_tensors(images: np.ndarray, alphas: np.ndarray,
                uint8: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T, S, S, 3)``, ``(T, S, S)`` uint8 → ``(T, 3, S, S)``, ``(T, 1, S, S)`` contiguous
    tensors, float32 in [0, 1] (or uint8 0–255 when ``uint8``).

    Done in numpy, one channel at a time: torch's strided uint8 → float copy is several times
    slower and uses intra-op threads that compete with the DataLoader workers.
    """
    n, size = images.shape[0], images.shape[1:3]
    if uint8:
        return (torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
                torch.from_numpy(np.ascontiguousarray(alphas[:, None])))
    out = np.empty((n, 3, *size), dtype=np.float32)
    for c in range(3):
        np.multiply(images[..., c], _SCALE, out=out[:, c], dtype=np.float32)
    alpha = np.multiply(alphas[:, None], _SCALE, dtype=np.float32)
    return torch.from_numpy(out), torch.from_numpy(alpha)


def camera_tensors(caches: CacheFiles, s: int, index: CacheIndex,
                   rows: np.ndarray) -> dict[str, Any]:
    """``camera_<key>`` tensors of ``rows``: K, R ``(T, 3, 3)``, t ``(T, 3)`` (calibrated) or
    R ``(T, 3, 3)``, scale ``(T,)``, trans ``(T, 2)`` (weak perspective)."""
    return {f"camera_{k}": torch.from_numpy(caches.array(s, f"camera/{k}")[rows].copy())
            for k in index.camera_keys}

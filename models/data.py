"""Torch datasets over the per-subject training caches (``cache/<subject>.h5``, docs/cache.md).

* ``Pixel2ISDFDataset``: K views of a subject drawn across all its actions (the multi-view
  multi-pose input of Pixel2ISDF) with SDF samples around the canonical clothed surface.
* ``ViewDataset``: single views with their truth normal maps (the normal network).
* PIFu's dataset is ``models.pifu.data.PifuDataset``, on the same ``CacheFiles`` and
  ``ViewItems``.

Both are deterministic: item ``i`` draws from ``np.random.default_rng((seed, i))`` only, so
a batch does not depend on the worker that loads it nor on ``num_workers``. HDF5 files are
opened lazily, read-only, once per process (a changed ``os.getpid()`` — a forked DataLoader
worker — reopens them); ``__init__`` only reads each file's small index and closes it, so
the dataset can be pickled to spawned workers and used with ``num_workers > 0``. The small
arrays (cameras, bodies, the point pools) are read once per process and kept in memory; images
are read one chunk (one view) at a time.

Only views whose ``view_ok`` flag is set (they passed the fit's checks) are ever drawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from models.cache_io import CacheIndex, body_sdf, load_index, open_cache
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


VIEW_SELECTIONS = ("across", "one_action")


def select_views(index: CacheIndex, n: int | None, mode: str, seed: int) -> np.ndarray:
    """Rows of the ``view_ok`` views a reconstruction uses.

    Args:
        index: the subject's cache index.
        n: how many (``None``: all of them).
        mode: ``across``: one view per action in turn (actions in a seeded order, a seeded
            view of each), so n views cover min(n, A) actions; ``one_action``: views of a
            single action, the one with the most ``view_ok`` views (the first on ties).
        seed: the draw's seed.

    Returns:
        ``(n,)`` int64 rows, ascending.

    Raises:
        PipelineError: ``n`` exceeds the views available (naming the cache), unknown mode.
    """
    if mode not in VIEW_SELECTIONS:
        raise PipelineError(f"view selection must be one of {VIEW_SELECTIONS}, got {mode!r}")
    ok = index.ok_views()
    per_action = [ok[index.action_index[ok] == a] for a in range(len(index.actions))]
    if mode == "one_action":
        per_action = [max(per_action, key=len)]
    available = sum(len(rows) for rows in per_action)
    if n is not None and n > available:
        where = "its best action" if mode == "one_action" else "all its actions"
        raise PipelineError(f"cache file {index.path}: {n} views asked ({mode}) but "
                            f"{where} has only {available} views that passed the fit's checks")
    if n is None:
        return np.sort(np.concatenate(per_action)).astype(np.int64)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(rows)) for rows in per_action if len(rows)]
    queues = [queues[i] for i in rng.permutation(len(queues))]
    chosen: list[int] = []
    while len(chosen) < n:
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(int(queue.pop()))
    return np.sort(np.asarray(chosen, dtype=np.int64))


class Pixel2ISDFDataset(Dataset):
    """Multi-view multi-pose samples of each subject with canonical SDF targets.

    Item ``i`` belongs to subject ``i // samples_per_subject`` and holds (K = ``n_views``,
    S the crop size, N body vertices, P = ``n_points``):

    * ``images`` (K, 3, S, S) float32 in [0, 1] (masked crops), ``alphas`` (K, 1, S, S);
    * ``camera_*`` per view (see ``CAMERA_KEYS``: ``camera_K/R/t`` or ``camera_R/scale/trans``);
    * ``posed_vertices`` (K, N, 3): the fitted body of each drawn view's action;
    * ``canonical_vertices`` (N, 3);
    * ``points`` (P, 3) canonical-space samples and ``sdf`` (P,) their signed distance to the
      truth clothed surface (negative inside), drawn from the cache's ``sdf`` pool;
    * ``view_index``, ``action_index`` (K,) int64 rows in the cache; ``subject_index`` ();
    * with ``with_normals``: ``normals`` (K, 3, S, S) uint8 truth normal maps (oracle input);
    * with ``with_body_sdf``: ``body_sdf`` (R, R, R) float32, the fitted canonical body's
      signed-distance volume ``[z, y, x]``, and its cube's corners ``body_sdf_lo``,
      ``body_sdf_hi`` (3,) (the body prior);
    * with ``with_hull`` (implies ``with_body_sdf``), what the silhouette feature reads
      (:mod:`models.pixel2isdf.hull`) over **every** view of the subject's pool (``rows``),
      padded to the largest pool of the dataset (V views): ``hull_alphas`` (V, 1, S, S) uint8
      (or float), ``hull_camera_*`` (V, …), ``hull_action`` (V,) int64, ``hull_valid`` (V,)
      bool (False on padding), ``action_transforms`` (A, N, 3, 4) each body vertex's
      blend-skinning transform per action, ``body_nearest`` (R, R, R) int32 each grid
      point's nearest body vertex.

    The K views are drawn without replacement among all ``view_ok`` views of all actions.

    Args:
        paths: cache files, one per subject.
        n_views: K. n_points: P (drawn without replacement when the pool is large enough).
        seed: base of every draw. samples_per_subject: items per subject (an epoch's length).
        uint8_images: return ``images``/``alphas`` as uint8 0–255 (convert on the device:
            4× less to copy between processes).
        in_memory: keep each subject's decoded images in the process (every worker) after its
            first use: no decompression afterwards, at ~S² × 4 bytes per view per worker.
        masked: False serves the unmasked crops and all-ones alphas (see ``CacheFiles``).
        rows: per subject, the rows to draw the K views from (``None``: every ``view_ok``
            view); a reconstruction passes :func:`select_views`'s rows with K = their count.
    """

    def __init__(self, paths: Sequence[str | Path], *, n_views: int = 4, n_points: int = 10_000,
                 seed: int = 0, samples_per_subject: int = 1, uint8_images: bool = False,
                 in_memory: bool = False, with_normals: bool = False,
                 masked: bool = True, rows: Sequence[np.ndarray] | None = None,
                 with_body_sdf: bool = False, with_hull: bool = False) -> None:
        if n_views < 1 or n_points < 1 or samples_per_subject < 1:
            raise ValueError("n_views, n_points and samples_per_subject must be >= 1")
        self.caches = CacheFiles(paths, in_memory, masked)
        self.indexes = [load_index(p) for p in self.caches.paths]
        self.n_views, self.n_points, self.seed = n_views, n_points, seed
        self.samples_per_subject, self.uint8_images = samples_per_subject, uint8_images
        self.with_normals, self.with_body_sdf = with_normals, with_body_sdf or with_hull
        self.with_hull = with_hull
        self.rows = ([np.asarray(r, dtype=np.int64) for r in rows] if rows is not None
                     else [index.ok_views() for index in self.indexes])
        if len(self.rows) != len(self.indexes):
            raise ValueError(f"rows has {len(self.rows)} entries for {len(self.indexes)} caches")
        for s, index in enumerate(self.indexes):
            if with_normals and not index.has_oracle_normals:
                self.caches.normals(s, [])  # raises, naming the file
            if self.with_body_sdf and not index.has_body_sdf:
                body_sdf(index.path)  # raises, naming the file and the rebuild command
            self.caches.check_images(index)
            if len(self.rows[s]) < n_views:
                raise PipelineError(f"cache file {index.path}: {len(self.rows[s])} views "
                                    f"to draw from, fewer than n_views={n_views}")

    def __len__(self) -> int:
        return len(self.indexes) * self.samples_per_subject

    def hull_views(self, s: int) -> dict[str, torch.Tensor]:
        """Every view of subject ``s``'s pool for the silhouette feature, padded to the
        dataset's largest pool (see the class docstring)."""
        rows = self.rows[s]
        size = max(len(r) for r in self.rows)
        pad = size - len(rows)
        index = self.indexes[s]
        alphas = self.caches.alphas(s, rows)
        if not self.uint8_images:
            alphas = alphas.float() / 255
        cameras = camera_tensors(self.caches, s, index, rows)

        def padded(t: torch.Tensor) -> torch.Tensor:
            return torch.cat([t, t[:1].expand(pad, *t.shape[1:])]) if pad else t

        valid = torch.arange(size) < len(rows)
        return {"hull_alphas": padded(alphas) * valid.view(-1, 1, 1, 1).to(alphas.dtype),
                **{f"hull_{k}": padded(v) for k, v in cameras.items()},
                "hull_action": padded(torch.from_numpy(index.action_index[rows])),
                "hull_valid": valid,
                "action_transforms": torch.from_numpy(self.caches.vertex_transforms(s)),
                "body_nearest": torch.from_numpy(
                    self.caches.array(s, "body_sdf/nearest").copy())}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        s = i // self.samples_per_subject
        index, rng = self.indexes[s], np.random.default_rng((self.seed, i))
        rows = rng.choice(self.rows[s], size=self.n_views, replace=False)
        images, alphas = self.caches.tensors(s, rows, self.uint8_images)
        actions = index.action_index[rows]
        pool = self.caches.array(s, "sdf/points")
        pick = rng.choice(len(pool), size=self.n_points, replace=self.n_points > len(pool))
        extra = {"normals": self.caches.normals(s, rows)} if self.with_normals else {}
        if self.with_body_sdf:
            extra.update({f"body_sdf{suffix}": torch.from_numpy(
                self.caches.array(s, f"body_sdf/{name}").copy())
                for suffix, name in (("", "values"), ("_lo", "lo"), ("_hi", "hi"))})
        if self.with_hull:
            extra.update(self.hull_views(s))
        return {
            **extra,
            "images": images, "alphas": alphas, **camera_tensors(self.caches, s, index, rows),
            "posed_vertices": torch.from_numpy(self.caches.array(s, "posed_vertices")[actions]),
            "canonical_vertices": torch.from_numpy(
                self.caches.array(s, "canonical_vertices").copy()),
            "points": torch.from_numpy(pool[pick]),
            "sdf": torch.from_numpy(self.caches.array(s, "sdf/values")[pick]),
            "view_index": torch.from_numpy(rows.astype(np.int64)),
            "action_index": torch.from_numpy(actions.astype(np.int64)),
            "subject_index": torch.tensor(s, dtype=torch.int64),
        }


class ViewItems(Dataset):
    """A dataset with one item per (subject, row) in ``self.items``."""

    items: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.items)

    def _item(self, i: int) -> tuple[int, int]:
        """``(subject, row)`` of item ``i`` (IndexError outside the dataset)."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        return self.items[i]


class ViewDataset(ViewItems):
    """Single views with their truth normal maps: the normal network's training data.

    One item per ``view_ok`` view of every subject: ``images`` (3, S, S) and ``alphas``
    (1, S, S) as in the other datasets, ``normals`` (3, S, S) uint8 cache-encoded truth
    normals, ``subject_index``, ``view_index``. Deterministic (no random draw at all).

    Raises:
        PipelineError: a cache without truth normal maps (naming the file and the fix).
    """

    def __init__(self, paths: Sequence[str | Path], *, uint8_images: bool = False,
                 in_memory: bool = False, masked: bool = True) -> None:
        self.caches = CacheFiles(paths, in_memory, masked)
        self.indexes = [load_index(p) for p in self.caches.paths]
        self.uint8_images = uint8_images
        for s, index in enumerate(self.indexes):
            if not index.has_oracle_normals:
                self.caches.normals(s, [])  # raises, naming the file
            self.caches.check_images(index)
        self.items = [(s, int(r)) for s, index in enumerate(self.indexes)
                      for r in index.ok_views()]
        if not self.items:
            raise PipelineError("no view passed the fit's checks in " + ", ".join(
                map(str, self.caches.paths)))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s, row = self._item(i)
        images, alphas = self.caches.tensors(s, [row], self.uint8_images)
        return {"images": images[0], "alphas": alphas[0],
                "normals": self.caches.normals(s, [row])[0],
                "subject_index": torch.tensor(s, dtype=torch.int64),
                "view_index": torch.tensor(row, dtype=torch.int64)}

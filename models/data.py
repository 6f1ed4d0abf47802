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
are read one chunk (one view) at a time (:mod:`models.cache_files`).

Only views whose ``view_ok`` flag is set (they passed the fit's checks) are ever drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from models.cache_files import CacheFiles, _to_tensors, camera_tensors
from models.cache_io import CacheIndex, body_sdf, load_index
from models.errors import PipelineError

__all__ = ["CacheFiles", "Pixel2ISDFDataset", "ViewDataset", "ViewItems", "_to_tensors",
           "camera_tensors", "select_views"]


VIEW_SELECTIONS = ("across", "one_action")


def distinct_view_counts(n_views: int, min_views: int) -> np.ndarray:
    """The counts of distinct views an item may hold: the divisors of ``n_views`` from
    ``min_views`` up (each view then repeats equally often, see ``Pixel2ISDFDataset``)."""
    if not 1 <= min_views <= n_views:
        raise ValueError(f"min_views must be in [1, n_views={n_views}], got {min_views}")
    return np.array([k for k in range(min_views, n_views + 1) if n_views % k == 0])


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
    With ``min_views`` below K, each item first draws how many distinct views it holds, k, among
    the divisors of K from ``min_views`` up, and repeats each of its k views K / k times. The
    fusion (mean, variance and softmax-weighted sum over a vertex's inputs) of k views
    repeated alike equals theirs alone, so the network trains on k-view inputs at a fixed
    batch shape: one photo of a person is then an input it has seen.

    Args:
        paths: cache files, one per subject.
        n_views: K. min_views: the fewest distinct views of an item (None: K; see above).
        n_points: P (drawn without replacement when the pool is large enough);
            0 serves the inputs only (no ``points``/``sdf``: a cache without targets).
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
                 with_body_sdf: bool = False, with_hull: bool = False,
                 min_views: int | None = None) -> None:
        if n_views < 1 or n_points < 0 or samples_per_subject < 1:
            raise ValueError("n_views and samples_per_subject must be >= 1, n_points >= 0")
        self.distinct = distinct_view_counts(n_views, n_views if min_views is None
                                             else min_views)
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
        if len(self.distinct) > 1:  # no extra draw otherwise: the same items as before
            k = int(rng.choice(self.distinct))
            rows = rows[np.arange(self.n_views) % k]
        images, alphas = self.caches.tensors(s, rows, self.uint8_images)
        actions = index.action_index[rows]
        extra = {"normals": self.caches.normals(s, rows)} if self.with_normals else {}
        if self.n_points:
            pool = self.caches.array(s, "sdf/points")
            pick = rng.choice(len(pool), size=self.n_points, replace=self.n_points > len(pool))
            extra.update({"points": torch.from_numpy(pool[pick]),
                          "sdf": torch.from_numpy(self.caches.array(s, "sdf/values")[pick])})
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

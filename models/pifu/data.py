"""PIFu's dataset over the training caches: one view (or the same view in a window of a
clip's consecutive frames) with balanced inside/outside samples around that frame's posed
clothed surface. Deterministic like every dataset of :mod:`models.data`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.cache_files import CacheFiles, camera_tensors
from models.cache_io import CacheIndex, load_index
from models.data import ViewItems
from models.errors import PipelineError

FRAME = re.compile(r"^(?P<clip>.+)_f(?P<frame>\d+)$")
"""An action that is a frame of a clip: ``<clip>_f<frame>`` (``act00_f03``; synthesize's
``n_frames``). Any other action is a clip of one frame."""


def clip_frames(actions: Sequence[str], action: str) -> list[str]:
    """The frames of ``action``'s clip, in frame order (``[action]`` when it is no frame)."""
    match = FRAME.match(action)
    if match is None:
        return [action]
    frames = [(int(m["frame"]), a) for a in actions
              if (m := FRAME.match(a)) is not None and m["clip"] == match["clip"]]
    return [a for _, a in sorted(frames)]


def temporal_rows(index: CacheIndex, row: int, window: int) -> list[int]:
    """Rows of the same view in the ``window`` frames of ``row``'s clip centred on its frame.

    A frame before the clip's first or after its last is clamped to the end; a frame where
    that view is absent or flagged (``view_ok`` false) is replaced by the nearest frame
    towards the centre that has it (at worst the centre itself). Returns ``window`` rows,
    oldest first.
    """
    order = clip_frames(index.actions.tolist(), str(index.actions[index.action_index[row]]))
    view = str(index.view_names[row])
    centre = order.index(str(index.actions[index.action_index[row]]))
    rows = []
    for offset in range(-(window // 2), window // 2 + 1):
        t = min(max(centre + offset, 0), len(order) - 1)
        while True:
            found = index.find_view(order[t], view)
            if found is not None and index.view_ok[found]:
                rows.append(found)
                break
            t += 1 if t < centre else -1
    return rows


def balanced_draw(inside: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n // 2`` inside and ``n - n // 2`` outside samples of a pool (PIFu's
    balance), with replacement only where a class has too few; one class alone when the other
    is empty."""
    classes = [np.flatnonzero(inside), np.flatnonzero(~inside)]
    if not len(classes[0]) or not len(classes[1]):
        pool = classes[0] if len(classes[0]) else classes[1]
        return rng.choice(pool, size=n, replace=n > len(pool))
    picks = [rng.choice(c, size=k, replace=k > len(c))
             for c, k in zip(classes, (n // 2, n - n // 2), strict=True)]
    return rng.permutation(np.concatenate(picks))


class PifuDataset(ViewItems):
    """One item per ``view_ok`` view of every subject (whose action has PIFu targets).

    Item: ``images`` (3, S, S) float32 in [0, 1], ``alphas`` (1, S, S), ``camera_*`` of the
    view, ``points`` (P, 3) posed (world) space samples around the action's truth clothed mesh,
    ``inside`` (P,) float32 1/0 labels, half of each (:func:`balanced_draw`, as PIFu);
    ``body_centre`` (3,) the mean of the action's posed fitted body (PIFu's depth origin);
    ``view_index``, ``action_index``, ``subject_index``.
    With ``temporal=True`` images, alphas and cameras gain a leading frame axis T = ``window``
    (``temporal_rows``: the same view in frames t-1, t, t+1 of the clip for window 3, clamped
    at the clip's ends) and the points are those of the centre frame; ``view_index`` /
    ``action_index`` are then (T,). Every clip must have at least ``window`` frames.

    Args:
        paths: cache files, one per subject.
        temporal: return a window of frames. window: odd frame count (default 3).
        n_points: P points per item. seed: base of every draw.
        uint8_images: return images and alphas as uint8 0–255.
        in_memory: keep each subject's decoded images in every process after first use.
    """

    def __init__(self, paths: Sequence[str | Path], *, temporal: bool = False, window: int = 3,
                 n_points: int = 5_000, seed: int = 0, uint8_images: bool = False,
                 in_memory: bool = False) -> None:
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be an odd number >= 1, got {window}")
        if n_points < 1:
            raise ValueError("n_points must be >= 1")
        self.caches = CacheFiles(paths, in_memory)
        self.indexes = [load_index(p) for p in self.caches.paths]
        self.temporal, self.window, self.n_points, self.seed = temporal, window, n_points, seed
        self.uint8_images = uint8_images
        self.items: list[tuple[int, int]] = []
        for s, index in enumerate(self.indexes):
            with_targets = set(index.pifu_actions)
            self.items += [(s, int(r)) for r in index.ok_views()
                           if index.actions[index.action_index[r]] in with_targets]
        if not self.items:
            raise PipelineError("no cache file among " + ", ".join(map(str, self.caches.paths))
                                + " has a view_ok view with PIFu targets (cache.n_pifu_points "
                                "is 0, or the data set has no posed truth meshes)")
        if temporal:
            self._check_clips()

    def _check_clips(self) -> None:
        for path, index in zip(self.caches.paths, self.indexes, strict=True):
            actions = index.actions.tolist()
            for action in index.pifu_actions:
                frames = clip_frames(actions, action)
                if len(frames) < self.window:
                    match = FRAME.match(action)
                    clip = match["clip"] if match else action
                    raise PipelineError(
                        f"cache file {path}: clip {clip!r} has {len(frames)} frame(s), fewer "
                        f"than the temporal window of {self.window}; Temporal PIFu needs clips "
                        "(actions named <clip>_f<frame>, e.g. synthesize.n_frames >= "
                        f"{self.window}: presets/temporal.yaml)")

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s, row = self._item(i)
        index, rng = self.indexes[s], np.random.default_rng((self.seed, i))
        rows = np.asarray(temporal_rows(index, row, self.window) if self.temporal else [row])
        images, alphas = self.caches.tensors(s, rows, self.uint8_images)
        cameras = camera_tensors(self.caches, s, index, rows)
        action = str(index.actions[index.action_index[row]])
        pool = self.caches.array(s, f"pifu/{action}/points")
        labels = self.caches.array(s, f"pifu/{action}/inside").astype(bool)
        pick = balanced_draw(labels, self.n_points, rng)
        centre = self.caches.array(s, "posed_vertices")[index.action_index[row]].mean(axis=0)
        out = {"images": images, "alphas": alphas, **cameras,
               "points": torch.from_numpy(pool[pick]),
               "inside": torch.from_numpy(labels[pick].astype(np.float32)),
               "body_centre": torch.from_numpy(centre.astype(np.float32)),
               "view_index": torch.from_numpy(rows.astype(np.int64)),
               "action_index": torch.from_numpy(index.action_index[rows].astype(np.int64)),
               "subject_index": torch.tensor(s, dtype=torch.int64)}
        if not self.temporal:
            out = {k: (v[0] if k not in ("points", "inside", "body_centre", "subject_index")
                       else v) for k, v in out.items()}
        return out

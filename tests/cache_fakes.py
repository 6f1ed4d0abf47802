"""A tiny fake subject for the cache and dataset tests: fit npz, crops, masks and truth.

Body: an icosphere of radius ``BODY_R``; clothed truth: a concentric icosphere of radius
``CLOTHED_R`` (canonical at the origin, action ``a`` shifted by ``offset(a)``). Crops are
``size``² random RGB, masks a centred disk, truth normal maps ``PHOTO`` sized with a known
pattern, cut by the crop box ``x0 = X0, y0 = Y0, size = size`` (scale 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from pipeline.cache import build_cache
from pipeline.meshio import write_ply

BODY_R, CLOTHED_R = 0.3, 0.4
PHOTO = (96, 128)  # (H, W) of the truth normal maps
X0, Y0 = 10, 5
SMALL = {"seed": 3, "n_sdf_points": 3000, "n_surface_points": 500, "n_pifu_points": 1500,
         "body_sdf_resolution": 33, "body_sdf_padding": 0.6}
"""Small point counts; a coarse body volume whose cube covers a latent volume padded by up to
0.6 (the tests' models use 0.5)."""


def offset(a: int) -> np.ndarray:
    """World translation of action ``a`` (metres)."""
    return np.array([0.5 * a, -0.2 * a, 1.0])


def sphere(radius: float, subdivisions: int = 3) -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_subject(root: Path, *, n_actions: int = 2, views: tuple[str, ...] = ("cam0", "cam1"),
                 missing: tuple[tuple[int, str], ...] = (),
                 flagged: tuple[tuple[int, str], ...] = (), size: int = 64,
                 normals: bool = True, seed: int = 0, clip: str | None = None) -> dict[str, Path]:
    """Write a subject under ``root``; return the ``build_cache`` path arguments.

    ``missing`` (action, view) pairs have no person (padding in the fit, ``no_person`` in
    crop.json); ``flagged`` pairs have ``view_ok`` false. ``clip``: name the actions as the
    frames of one clip (``<clip>_f00``, ...) instead of ``act00``, ...
    """
    rng = np.random.default_rng(seed)
    actions = [f"act{a:02d}" if clip is None else f"{clip}_f{a:02d}" for a in range(n_actions)]
    body_v, body_f = sphere(BODY_R, 2)
    n_bones = 2
    rows, valid, ok = [], [], []
    for a in range(n_actions):
        present = [v for v in views if (a, v) not in missing]
        rows.append(present + [""] * (len(views) - len(present)))
        valid.append([i < len(present) for i in range(len(views))])
        ok.append([i < len(present) and (a, present[i]) not in flagged
                   for i in range(len(views))])
    shape_av = (n_actions, len(views))
    K = np.broadcast_to(np.array([[60.0, 0, 31.5], [0, 60.0, 31.5], [0, 0, 1]]), (*shape_av, 3, 3))
    fit = {
        "schema": np.array("pixel2isdf.fit/1"), "body_model": np.array("anny"),
        "camera_model": np.array("calibrated"), "crop_size": np.array(size, dtype=np.int32),
        "actions": np.array(actions), "views": np.array(rows, dtype=str),
        "view_valid": np.array(valid), "view_ok": np.array(ok),
        "bone_names": np.array(["root", "spine"]),
        "posed_vertices": np.stack([body_v + offset(a) for a in range(n_actions)]).astype("f4"),
        "bone_transforms": np.broadcast_to(np.eye(4), (n_actions, n_bones, 4, 4)).astype("f4"),
        "canonical_vertices": body_v.astype("f4"), "faces": body_f.astype(np.int32),
        "skinning_weights": np.full((len(body_v), n_bones), 1.0 / n_bones, dtype="f4"),
        "camera_K": K.astype("f4"),
        "camera_R": np.broadcast_to(np.eye(3), (*shape_av, 3, 3)).astype("f4"),
        "camera_t": rng.normal(size=(*shape_av, 3)).astype("f4"),
    }
    (root / "fit").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / "fit" / "s.npz", **fit)
    yy, xx = np.mgrid[:size, :size]
    disk = (np.hypot(yy - size / 2, xx - size / 2) < size / 3).astype(np.uint8) * 255
    disk[0, 0] = 128  # one partial-alpha pixel
    clothed_v, clothed_f = sphere(CLOTHED_R)
    write_ply(root / "truth" / "canonical_clothed.ply", clothed_v, clothed_f)
    for a, action in enumerate(actions):
        write_ply(root / "truth" / action / "clothed.ply", clothed_v + offset(a), clothed_f)
        records: dict[str, Any] = {}
        for view in views:
            if (a, view) in missing:
                records[view] = {"status": "no_person", "n_persons": 0}
                continue
            records[view] = {"status": "ok", "n_persons": 1,
                             "crop": {"x0": X0, "y0": Y0, "size": size, "out_size": size}}
            _png(root / "crop" / action / f"{view}.png",
                 rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            _png(root / "mask" / action / f"{view}.png", disk)
            if normals:
                _png(root / "truth" / action / f"{view}_normal.png",
                     rng.integers(0, 256, (*PHOTO, 3), dtype=np.uint8))
        (root / "crop" / action / "crop.json").write_text(json.dumps({"views": records}))
    return {"fit": root / "fit" / "s.npz", "crops": root / "crop", "masks": root / "mask",
            "truth": root / "truth"}


def build(root: Path, output: Path | None = None, params: dict[str, Any] | None = None,
          **subject: Any) -> Path:
    """Make a fake subject under ``root`` and cache it (small point counts); return the file."""
    paths = make_subject(root, **subject)
    output = output or root / "cache" / "s.h5"
    build_cache(subject="s", output=output, params=dict(SMALL if params is None else params),
                **paths)
    return output

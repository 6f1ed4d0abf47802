"""The training cache of a subject: one HDF5 file with its views, fitted bodies and targets.

``cache/<subject>.h5`` gathers what the networks train on: every valid view's masked crop,
alpha and camera (flattened over actions, with the fit's ``view_ok`` flag), the fitted body
per action and in the canonical pose, Pixel2ISDF targets (signed distance samples around the
truth canonical clothed mesh, surface samples) and PIFu targets (inside/outside labels around
each action's truth posed clothed mesh). The truth normal maps, cut like the crops, are kept
apart under ``oracle/`` for the explicitly named oracle ablation only.

A subject without a scan (``truth=None``, ``data.predict_subjects``) gets the same file
without the targets (attribute ``targets`` says why): everything reconstruction and the
truth-free checks read, nothing training could use.

The file is written to a hidden temporary sibling and renamed into place once closed, so an
interrupted job leaves no file under the final name. Layout and conventions: ``docs/cache.md``;
reading: ``models.cache_io.open_cache``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from models.cache_io import CAMERA_KEYS, SCHEMA, SCHEMA_VERSION
from pipeline.crop import CropBox
from pipeline.detect import CROP_FILE, OK
from pipeline.errors import PipelineError
from pipeline.imageio import read_gray, read_rgb
from pipeline.io import atomic_path, file_sha256, read_json
from pipeline.progress import log_startup, progress
from pipeline.scans import ScanPolicy, ScanSign, read_mesh
from pipeline.sdf import sample_sdf_points, sdf_volume, signed_distance, surface_samples

log = logging.getLogger(__name__)

CANONICAL_MESH = "canonical_clothed.ply"
POSED_MESH = "clothed.ply"
FIT_SCHEMA = "pixel2isdf.fit/1"
NO_TRUTH = "absent: no truth (data.predict_subjects)"


@dataclass(frozen=True)
class CacheParams:
    """The ``cache`` config section (defaults as in the config schema)."""

    seed: int = 0
    n_sdf_points: int = 200_000
    n_surface_points: int = 50_000
    n_pifu_points: int = 20_000
    sigmas: tuple[float, ...] = (0.01, 0.05)
    uniform_fraction: float = 0.2
    padding: float = 0.1
    pifu_sigma: float = 0.05
    pifu_uniform_fraction: float = 1.0 / 17.0
    compression: str = "lzf"
    compression_level: int = 4
    oracle_normals: bool = True
    unmasked_crops: bool = True
    body_sdf_resolution: int = 128
    body_sdf_padding: float = 0.15

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> CacheParams:
        names = cls.__dataclass_fields__
        values = {k: v for k, v in params.items() if k in names}
        if "sigmas" in values:
            values["sigmas"] = tuple(float(s) for s in values["sigmas"])
        out = cls(**values)
        if out.compression not in ("lzf", "gzip", "none"):
            raise PipelineError(f"cache.compression must be lzf, gzip or none, "
                                f"got {out.compression!r}")
        return out

    def filters(self, dtype: np.dtype) -> dict[str, Any]:
        """h5py compression keywords for a dataset of ``dtype``."""
        if self.compression == "none":
            return {}
        if self.compression == "gzip":
            return {"compression": "gzip", "compression_opts": self.compression_level,
                    "shuffle": np.dtype(dtype).itemsize > 1}
        return {"compression": "lzf"}


def config_hash(params: dict[str, Any]) -> str:
    """sha256 of the parameters as sorted-key JSON."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()


def stream(seed: int, subject: str, purpose: str) -> np.random.Generator:
    """A random stream that depends only on the run seed, the subject and the purpose."""
    keys = [int.from_bytes(hashlib.sha256(s.encode("utf-8")).digest()[:8], "little")
            for s in (subject, purpose)]
    return np.random.default_rng([seed, *keys])


def load_fit(path: Path) -> dict[str, np.ndarray]:
    """The fit npz as a dict of arrays, checked for the keys the cache needs."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise PipelineError(f"cannot read fit file {path}: {exc}") from exc
    if str(arrays.get("schema", "")) != FIT_SCHEMA:
        raise PipelineError(f"{path}: fit schema {arrays.get('schema')!r}, expected "
                            f"{FIT_SCHEMA!r}; rerun the fit stage")
    camera_model = str(arrays.get("camera_model", ""))
    if camera_model not in CAMERA_KEYS:
        raise PipelineError(f"{path}: unknown camera_model {camera_model!r}")
    needed = ["actions", "views", "view_valid", "view_ok", "crop_size", "posed_vertices",
              "bone_transforms", "canonical_vertices", "faces", "skinning_weights", "body_model",
              *(f"camera_{k}" for k in CAMERA_KEYS[camera_model])]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise PipelineError(f"{path}: fit file lacks {missing}; rerun the fit stage")
    return arrays


def checked_mesh(path: Path, policy: ScanPolicy, hint: str = "") -> TruthMesh:
    """A truth scan the targets can be signed from: closed, or open and signable under
    ``policy`` (``data.scans``; pipeline/scans.py)."""
    vertices, faces, sign = policy.read(path, f" (the cache's targets need it){hint}")
    return TruthMesh(vertices, faces, sign)


@dataclass(frozen=True)
class TruthMesh:
    """A truth scan: ``vertices (V, 3)`` float64, ``faces (F, 3)`` int64 and how well its
    winding number signs space."""

    vertices: np.ndarray
    faces: np.ndarray
    sign: ScanSign


@dataclass(frozen=True)
class ViewRow:
    """One cached view: fit indices ``(a, v)``, names, files and crop box."""

    a: int
    v: int
    action: str
    view: str
    ok: bool
    crop_png: Path
    mask_png: Path
    box: CropBox


def view_rows(fit: dict[str, np.ndarray], fit_path: Path, crops: Path,
              masks: Path) -> tuple[list[ViewRow], dict[str, Path]]:
    """Every valid view of the fit, flattened action-major, and the crop.json files read."""
    rows: list[ViewRow] = []
    crop_files: dict[str, Path] = {}
    for a, action in enumerate(fit["actions"].tolist()):
        crop_file = crops / action / CROP_FILE
        records = read_json(crop_file).get("views", {})
        crop_files[action] = crop_file
        for v, view in enumerate(fit["views"][a].tolist()):
            if not fit["view_valid"][a, v]:
                continue
            record = records.get(view)
            if record is None or record.get("status") != OK or "crop" not in record:
                raise PipelineError(f"{crop_file}: view {view!r} is valid in the fit "
                                    f"{fit_path} but has no crop here; rerun the fit")
            rows.append(ViewRow(a, v, action, view, bool(fit["view_ok"][a, v]),
                                crops / action / f"{view}.png", masks / action / f"{view}.png",
                                CropBox.from_dict(record["crop"])))
    if not rows:
        raise PipelineError(f"{fit_path}: the fit has no valid view")
    return rows, crop_files


def masked_view(row: ViewRow, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(S, S, 3)`` uint8 crop × alpha, ``(S, S)`` uint8 alpha and the ``(S, S, 3)`` uint8
    crop itself of one view."""
    for path in (row.crop_png, row.mask_png):
        if not path.is_file():
            raise PipelineError(f"{path}: file of view {row.action}/{row.view} is missing")
    rgb = read_rgb(row.crop_png)
    alpha = read_gray(row.mask_png)
    if rgb.shape != (size, size, 3):
        raise PipelineError(f"{row.crop_png}: crop of shape {rgb.shape}, expected "
                            f"({size}, {size}, 3) (the fit's crop_size)")
    if alpha.shape != (size, size) or alpha.dtype != np.uint8:
        raise PipelineError(f"{row.mask_png}: alpha of shape {alpha.shape} {alpha.dtype}, "
                            f"expected ({size}, {size}) uint8")
    masked = (rgb.astype(np.uint16) * alpha[..., None].astype(np.uint16) + 127) // 255
    return masked.astype(np.uint8), alpha, rgb


CHUNK_BYTES = 1 << 20
"""Target chunk size of the non-image arrays: whole rows, about 1 MiB."""


def _array(h5: h5py.File | h5py.Group, name: str, data: np.ndarray,
           p: CacheParams) -> h5py.Dataset:
    """A compressed dataset chunked along its first axis (whole rows, ~``CHUNK_BYTES``)."""
    data = np.asarray(data)
    if data.dtype.kind == "U":
        return h5.create_dataset(name, data=data.astype(object), dtype=h5py.string_dtype())
    if data.ndim == 0 or data.size == 0:
        return h5.create_dataset(name, data=data)
    row_bytes = max(1, data[:1].nbytes)
    chunks = (max(1, min(len(data), CHUNK_BYTES // row_bytes)), *data.shape[1:])
    return h5.create_dataset(name, data=data, chunks=chunks, **p.filters(data.dtype))


def _image_dataset(h5: h5py.File, name: str, shape: tuple[int, ...],
                   p: CacheParams) -> h5py.Dataset:
    """An uint8 ``(Nv, ...)`` dataset chunked one image per chunk."""
    return h5.create_dataset(name, shape=shape, dtype=np.uint8, chunks=(1, *shape[1:]),
                             **p.filters(np.uint8))


def _write_views(h5: h5py.File, rows: list[ViewRow], size: int, truth: Path | None,
                 p: CacheParams, subject: str) -> str:
    """Images, alphas, (when asked) unmasked crops and (when there) oracle normals; returns
    the oracle note."""
    n = len(rows)
    images = _image_dataset(h5, "images", (n, size, size, 3), p)
    alphas = _image_dataset(h5, "alphas", (n, size, size), p)
    unmasked = (_image_dataset(h5, "unmasked/images", (n, size, size, 3), p)
                if p.unmasked_crops else None)
    normal_files = [truth / r.action / f"{r.view}_normal.png" for r in rows] if truth else []
    missing = [f for f in normal_files if not f.is_file()]
    if not p.oracle_normals:
        note = "absent: cache.oracle_normals is false"
    elif truth is None:
        note = NO_TRUTH
    elif missing:
        note = f"absent: no truth normal map {missing[0]} (real data set?)"
    else:
        note = "present: truth camera-space normals (n + 1) / 2 * 255, cut like the crops"
    normals = (_image_dataset(h5, "oracle/normals", (n, size, size, 3), p)
               if note.startswith("present") else None)
    with progress(n, f"cache {subject} views", unit="view") as bar:
        for i, row in enumerate(rows):
            images[i], alphas[i], crop = masked_view(row, size)
            if unmasked is not None:
                unmasked[i] = crop
            if normals is not None:
                normals[i] = row.box.cut(read_rgb(normal_files[i]), resample="nearest")
            bar.update()
    return note


def _write_targets(h5: h5py.File, canonical: TruthMesh, posed: dict[str, TruthMesh],
                   names: dict[str, str], p: CacheParams, subject: str,
                   signed: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """``sdf/``, ``surface/`` and ``pifu/<action>/`` sampled from the truth meshes
    (``signed``: the canonical scan's signed distance where it is not its own)."""
    sampling = {"uniform_fraction": p.uniform_fraction, "sigmas": list(p.sigmas),
                "padding": p.padding}
    with progress(2 + len(posed), f"cache {subject} targets", unit="mesh") as bar:
        samples = sample_sdf_points(canonical.vertices, canonical.faces, p.n_sdf_points,
                                    **sampling, rng=stream(p.seed, subject, "sdf"),
                                    name=names["canonical"], closed=canonical.sign.closed,
                                    signed=signed)
        group = h5.create_group("sdf")
        group.attrs.update(json_attrs(sampling))
        _array(group, "points", samples["points"], p)
        _array(group, "values", samples["sdf"], p)
        _array(group, "kind", samples["kind"], p)
        bar.update()
        points, normals = surface_samples(canonical.vertices, canonical.faces,
                                          p.n_surface_points,
                                          stream(p.seed, subject, "surface"),
                                          name=names["canonical"])
        group = h5.create_group("surface")
        _array(group, "points", points.astype(np.float32), p)
        _array(group, "normals", normals.astype(np.float32), p)
        bar.update()
        # PIFu's pool: 4N surface points + N(0, 5 cm) and N/4 uniform in the box (1/17)
        pifu_sampling = {"uniform_fraction": p.pifu_uniform_fraction,
                         "sigmas": [p.pifu_sigma], "padding": p.padding}
        for action, mesh in posed.items():
            drawn = sample_sdf_points(mesh.vertices, mesh.faces, p.n_pifu_points,
                                      **pifu_sampling,
                                      rng=stream(p.seed, subject, f"pifu/{action}"),
                                      name=names[action], closed=mesh.sign.closed)
            inside = np.signbit(drawn["sdf"])  # == sdf.occupancy (same winding-number test)
            group = h5.create_group(f"pifu/{action}")
            group.attrs.update(json_attrs(pifu_sampling))
            _array(group, "points", drawn["points"], p)
            _array(group, "inside", inside, p)
            _array(group, "kind", drawn["kind"], p)
            bar.update()


def _write_body_sdf(h5: h5py.File, vertices: np.ndarray, faces: np.ndarray, p: CacheParams,
                    name: str) -> None:
    """``body_sdf/values`` (the fitted canonical body's signed-distance volume, the body
    prior's d_body), ``body_sdf/nearest`` (each grid point's nearest body vertex) and the
    cube's corners ``body_sdf/lo``, ``body_sdf/hi``."""
    volume = sdf_volume(vertices, faces, p.body_sdf_resolution, p.body_sdf_padding, name=name)
    group = h5.create_group("body_sdf")
    group.attrs.update({"resolution": p.body_sdf_resolution, "padding": p.body_sdf_padding,
                        "layout": "[z, y, x], metres, negative inside"})
    _array(group, "values", volume["values"], p)
    _array(group, "nearest", volume["nearest"], p)
    _array(group, "lo", volume["lo"].astype(np.float32), p)
    _array(group, "hi", volume["hi"].astype(np.float32), p)


def json_attrs(values: dict[str, Any]) -> dict[str, Any]:
    """Attribute-safe values: lists become JSON strings."""
    return {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in values.items()}


REGISTERED_BODY = "registered_body.npz"
POSED_SCAN = "posed_clothed.ply"


def registered_truth(truth: Path, policy: ScanPolicy
                     ) -> tuple[TruthMesh, Callable[[np.ndarray], np.ndarray]]:
    """A registered scan (the register stage's folder): the unposed scan, whose surface the
    samples are drawn around, and the signed distance that labels them. Unposing folds a
    scan where limbs meet (an arm's and the torso's vertices skinned apart), so a point is
    signed where the scan was captured: carried into the registered pose by the registered
    body's skinning (:func:`pipeline.registration.repose`), then signed against the scan
    there (winding number and distance). The scan is checked as signable in that pose."""
    from pipeline.registration import repose  # torch: only for a registered scan

    vertices, faces = read_mesh(truth / CANONICAL_MESH)
    posed = checked_mesh(truth / POSED_SCAN, policy)
    with np.load(truth / REGISTERED_BODY, allow_pickle=False) as body:
        canonical_body, transforms = body["canonical"], body["transforms"]

    def signed(points: np.ndarray) -> np.ndarray:
        moved = repose(points, canonical_body, transforms)
        return signed_distance(posed.vertices, posed.faces, moved, name=str(truth / POSED_SCAN),
                               closed=posed.sign.closed)

    return TruthMesh(vertices, faces, posed.sign), signed


def registration_refused(truth: Path) -> str | None:
    """Why a registered scan is left out of training (``register.on_fail: skip`` and a
    failed check, ``<truth>/registration.json``), or None: no registration, or accepted."""
    report = truth / "registration.json"
    if not report.is_file():
        return None
    record = read_json(report)
    if record.get("accepted", True):
        return None
    return ("left out: the scan's registration failed (register.on_fail: skip): "
            + "; ".join(record.get("problems", [])))


def build_cache(*, subject: str, fit: Path, crops: Path, masks: Path, truth: Path | None,
                output: Path, params: dict[str, Any],
                scans: ScanPolicy | None = None) -> dict[str, Any]:
    """Write ``output`` (see the module docstring and ``docs/cache.md``); return a summary.
    ``truth`` None: a subject without a scan, cached without targets. ``scans``: which truth
    scans may have holes (``data.scans``; default: the defaults).

    Raises:
        PipelineError: an unreadable or inconsistent input (named), or a truth mesh that is
            missing or not watertight (its file named).
    """
    start = time.perf_counter()
    log_startup(f"the inputs of {subject}")  # the body's distance volume below is work
    fit, crops, masks, output = map(Path, (fit, crops, masks, output))
    truth = None if truth is None else Path(truth)
    p = CacheParams.from_params(params)
    arrays = load_fit(fit)
    size = int(arrays["crop_size"])
    camera_model = str(arrays["camera_model"])
    actions = arrays["actions"].tolist()
    rows, crop_files = view_rows(arrays, fit, crops, masks)
    sources = {"fit": fit, **{f"crops/{a}/{CROP_FILE}": f for a, f in crop_files.items()}}
    names: dict[str, str] = {}
    canonical = None
    posed: dict[str, TruthMesh] = {}
    policy = scans or ScanPolicy()
    left_out = registration_refused(truth) if truth is not None else None
    if left_out is not None:
        log.warning("%s: no targets: %s", subject, left_out)
        truth = None
    signed = None
    if truth is not None:
        names["canonical"] = str(truth / CANONICAL_MESH)
        if (truth / REGISTERED_BODY).is_file():  # a registered scan: signed in its own pose
            canonical, signed = registered_truth(truth, policy)
            sources[f"truth/{REGISTERED_BODY}"] = truth / REGISTERED_BODY
            sources[f"truth/{POSED_SCAN}"] = truth / POSED_SCAN
        else:
            canonical = checked_mesh(truth / CANONICAL_MESH, policy)
        if p.n_pifu_points > 0:
            for action in actions:
                names[action] = str(truth / action / POSED_MESH)
                posed[action] = checked_mesh(truth / action / POSED_MESH, policy,
                                             "; set cache.n_pifu_points: 0 to skip PIFu targets")
        sources |= {f"truth/{CANONICAL_MESH}": truth / CANONICAL_MESH,
                    **{f"truth/{a}/{POSED_MESH}": truth / a / POSED_MESH for a in posed}}
    checksums = {k: file_sha256(v) for k, v in sorted(sources.items())}
    index = np.array([[r.a, r.v] for r in rows])
    # Closed (flushed) before atomic_path renames it: contexts exit in reverse order.
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update({
            "schema_version": SCHEMA_VERSION, "schema": SCHEMA,
            "config_hash": config_hash(params), "params": json.dumps(params, sort_keys=True),
            "source_checksums": json.dumps(checksums, sort_keys=True), "subject": subject,
            "body_model": str(arrays["body_model"]), "camera_model": camera_model,
            "crop_size": size, "sdf_sign": "negative inside, positive outside (metres)"})
        _array(h5, "actions", arrays["actions"], p)
        _array(h5, "view_names", np.array([r.view for r in rows]), p)
        _array(h5, "action_index", index[:, 0].astype(np.int32), p)
        _array(h5, "view_ok", np.array([r.ok for r in rows]), p)
        for key in CAMERA_KEYS[camera_model]:
            values = arrays[f"camera_{key}"][index[:, 0], index[:, 1]]
            _array(h5, f"camera/{key}", values.astype(np.float32), p)
        for key in ("posed_vertices", "bone_transforms", "canonical_vertices",
                    "skinning_weights"):
            _array(h5, key, arrays[key].astype(np.float32), p)
        _array(h5, "faces", arrays["faces"].astype(np.int32), p)
        if "bone_names" in arrays:
            _array(h5, "bone_names", arrays["bone_names"], p)
        if p.body_sdf_resolution > 0:
            _write_body_sdf(h5, arrays["canonical_vertices"], arrays["faces"], p,
                            f"{fit} (fitted canonical body)")
        h5.attrs["body_sdf"] = ("present" if p.body_sdf_resolution > 0
                                else "absent: cache.body_sdf_resolution is 0")
        note = _write_views(h5, rows, size, truth, p, subject)
        h5.attrs["oracle_normals"] = note
        h5.attrs["unmasked_crops"] = ("present" if p.unmasked_crops
                                      else "absent: cache.unmasked_crops is false")
        h5.attrs["pifu_targets"] = ("present" if posed else NO_TRUTH if canonical is None
                                    else "absent: cache.n_pifu_points is 0")
        h5.attrs["targets"] = ("present" if canonical is not None
                               else left_out or NO_TRUTH)
        if canonical is not None:
            h5.attrs["truth_sign"] = json.dumps(canonical.sign.as_dict(), sort_keys=True)
            _write_targets(h5, canonical, posed, names, p, subject, signed)
    summary = {"subject": subject, "views": len(rows), "views_ok": int(sum(r.ok for r in rows)),
               "actions": len(actions), "bytes": output.stat().st_size,
               "seconds": round(time.perf_counter() - start, 2), "oracle_normals": note,
               "targets": canonical is not None}
    n_sdf = (p.n_sdf_points, p.n_surface_points) if canonical is not None else (0, 0)
    log.info("%s: wrote %s: %d views (%d ok) of %d actions, %d SDF + %d surface points, "
             "%d PIFu points per action, oracle normals %s; %.1f MB in %.1f s", subject, output,
             summary["views"], summary["views_ok"], summary["actions"], *n_sdf,
             p.n_pifu_points if posed else 0, note.split(":")[0],
             summary["bytes"] / 1e6, summary["seconds"])
    return summary


def run(*, subject: str, fit: Path, crops: Path, masks: Path, output: Path,
        params: dict[str, Any], truth: Path | None = None, scans: str | None = None) -> None:
    """CLI entry: ``python -m pipeline cache``; ``scans``: ``data.scans`` as JSON."""
    build_cache(subject=subject, fit=fit, crops=crops, masks=masks, truth=truth, output=output,
                params=params, scans=ScanPolicy.from_json(scans))

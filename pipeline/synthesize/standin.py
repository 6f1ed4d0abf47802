"""An MVP-Human-like copy of a synthetic subject (``synthesize.layout: mvp_human``).

MVP-Human (the WCPA challenge's data set) ships, per subject, actions ``Action01``,
``Action02``, ... of 8 uncalibrated views (512² RGB PNG, a mask PNG each) and one canonical
clothed scan: a textured OBJ in SMPL's frame (Y up, facing +Z, left +X, metres, origin at the
pelvis) in the "da-pose" (:data:`pipeline.synthesize.poses.DA_POSE`), with holes, and a
rotation file ``R0.txt`` (the data set's frame is ``R0 @ x`` for a point ``x`` of the OBJ).

:func:`write_standin` turns a subject generated natively (``stage.synthesize_subject``) into
that format at the paths of the ``data.layout`` templates (a plain mapping here)::

    photos         <action>/<view>.jpg cut to the largest square around the person and
                   resized to 512² PNG (the windows in standin.json), act00 -> Action01
                   (act00_f01 -> Action01_f01), views keep their names
    masks          the truth's <action>/<view>_mask.png, 0/255
    scan           the truth's canonical_clothed.npz reposed into DA_POSE by its own LBS
                   weights, pelvis at the origin, axes (x, y, z) -> (x, z, -y), holes punched
                   (soles, crown, random patches), then Q^T applied; + .mtl and .png texture
    scan_rotation  Q (3×3, ``np.savetxt``)
    standin_truth/<subject>/   canonical_clothed.ply, canonical_body.ply, subject.json (the
                   native truth) and standin.json (pelvis, axes, rotation_Q, pose): the exact
                   map from the native canonical mesh to the file, for benchmarks; the
                   pipeline never reads it.

No camera file is written. Folders are written to temporary siblings and renamed into place,
files through ``atomic_path``, so an interrupted job leaves nothing that looks valid.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline.errors import PipelineError
from pipeline.io import atomic_directory, atomic_path, read_json, write_json
from pipeline.layout import fill, subject_folder

MVP_HUMAN_LAYOUT: Mapping[str, str | None] = {
    "photos": "Images/{subject}/{action}/images/{view}.png",
    "masks": "Images/{subject}/{action}/masks/{view}.png",
    "cameras": None,
    "scan": "Canonical/{subject}/{subject}.obj",
    "scan_rotation": "Params/{subject}/R0.txt",
}
"""MVP-Human's ``data.layout`` (as the schema's descriptions state it): the templates used
when none are given (``python -m pipeline synthesize`` without ``--data-layout``)."""
STANDIN_TRUTH = "standin_truth"
TRUTH_FILES = ("canonical_clothed.ply", "canonical_body.ply", "subject.json")
AXES = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""The pipeline's axes (Z up, facing -Y, left +X) to SMPL's (Y up, facing +Z, left +X)."""
TEXTURE_SIZE = 512
PHOTO_SIZE = 512
"""Side of the stand-in's photos and masks: square crops around the person, resized."""
HOLE_RADIUS = 0.04  # metres
RANDOM_HOLES = 3


def standin_action(native: str) -> str:
    """``act00`` -> ``Action01``, ``act03_f01`` -> ``Action04_f01``."""
    match = re.fullmatch(r"act(\d+)(_f\d+)?", native)
    if match is None:
        raise PipelineError(f"action folder {native!r} is not a synthetic action (actNN)")
    return f"Action{int(match[1]) + 1:02d}{match[2] or ''}"


def check_templates(templates: Mapping[str, Any]) -> dict[str, str]:
    """The templates the stand-in needs (photos, masks, scan ending in .obj, scan_rotation).

    Raises:
        PipelineError: naming the ``data.layout`` key that is missing or unfit.
    """
    out = {}
    for key in ("photos", "masks", "scan", "scan_rotation"):
        if not templates.get(key):
            raise PipelineError(f"synthesize.layout mvp_human needs data.layout.{key}: set "
                                "data.layout to an MVP-Human-like layout, e.g. "
                                f"{json.dumps(dict(MVP_HUMAN_LAYOUT))}")
        out[key] = str(templates[key])
    if not out["scan"].endswith(".obj"):
        raise PipelineError(f"synthesize.layout mvp_human writes a textured OBJ: "
                            f"data.layout.scan {out['scan']!r} must end in .obj")
    subject_folder(out["photos"], "x")
    return out


def _inside(path: str, folder: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(folder))


def outputs(templates: Mapping[str, Any], subject: str) -> dict[str, tuple[str, bool]]:
    """What the stand-in of ``subject`` writes, relative to the data set's folder:
    ``{name: (path, is_folder)}``. Folders: ``photos`` (the subject's photo folder), ``masks``
    (the mask folder when outside it), ``truth`` (standin_truth/<subject>); files: ``scan``,
    ``scan_mtl``, ``scan_texture``, ``scan_rotation`` (those not inside a listed folder).
    ``subject`` may be ``"{subject}"`` (a wildcard pattern)."""
    t = check_templates(templates)
    folders = {"photos": subject_folder(t["photos"], subject)}
    if not _inside(fill(t["masks"], subject=subject), folders["photos"]):
        try:
            masks = subject_folder(t["masks"], subject)
        except PipelineError:
            masks = ""
        if not masks or _inside(folders["photos"], masks):
            raise PipelineError(f"data.layout.masks {t['masks']!r}: the masks must lie in the "
                                f"photo folder ({t['photos']!r}) or in a folder of their own "
                                "that names the {subject} before any {action} or {view}")
        folders["masks"] = masks
    folders["truth"] = f"{STANDIN_TRUTH}/{subject}"
    scan = fill(t["scan"], subject=subject)
    files = {"scan": scan, "scan_mtl": scan[:-4] + ".mtl", "scan_texture": scan[:-4] + ".png",
             "scan_rotation": fill(t["scan_rotation"], subject=subject)}
    out = {name: (path, True) for name, path in folders.items()}
    for name, path in files.items():
        if not any(_inside(path, folder) for folder in folders.values()):
            out[name] = (path, False)
    return out


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation about a uniformly random axis by an angle uniform in [0, 180] degrees."""
    from scipy.spatial.transform import Rotation

    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * rng.uniform(0.0, np.pi)).as_matrix()


def da_posed_scan(truth: Path, model: Any) -> dict[str, np.ndarray]:
    """The truth's clothed canonical mesh reposed into DA_POSE, in SMPL's frame with the
    pelvis at the origin: ``vertices``, ``faces``, ``uv`` (Anny's UV of each vertex's
    nearest body vertex), ``colors`` (the per-vertex albedo, uint8) and ``pelvis`` (the
    pelvis in the posed pipeline frame, subtracted before the axes change)."""
    from pipeline.meshio import read_ply
    from pipeline.synthesize import body as bodymod
    from pipeline.synthesize.poses import DA_POSE

    mesh = np.load(truth / "canonical_clothed.npz")
    phenotype = bodymod.Phenotype(**read_json(truth / "subject.json")["phenotype"])
    body = bodymod.posed_body(model, phenotype, DA_POSE)
    posed = bodymod.skin(mesh["vertices"], mesh["skinning_weights"], body.bone_transforms)
    pelvis = body.joints[body.bone_names.index("root")]
    colors = np.asarray(read_ply(truth / "canonical_clothed.ply").visual.vertex_colors)[:, :3]
    return {"vertices": (posed - pelvis) @ AXES.T, "faces": mesh["faces"].astype(np.int64),
            "uv": bodymod.body_vertex_uv(model)[mesh["nearest_body_vertex"]],
            "colors": colors.astype(np.uint8), "pelvis": pelvis}


def texture_image(uv: np.ndarray, colors: np.ndarray, size: int = TEXTURE_SIZE) -> np.ndarray:
    """``(size, size, 3)`` uint8: each vertex's colour at its UV pixel (OBJ convention, v up;
    the mean where several meet), every other pixel the colour of the nearest one set."""
    from scipy.ndimage import distance_transform_edt

    px = np.clip(np.rint(uv[:, 0] * (size - 1)), 0, size - 1).astype(np.int64)
    py = np.clip(np.rint((1.0 - uv[:, 1]) * (size - 1)), 0, size - 1).astype(np.int64)
    total = np.zeros((size, size, 3))
    count = np.zeros((size, size))
    np.add.at(total, (py, px), colors.astype(np.float64))
    np.add.at(count, (py, px), 1.0)
    filled = count > 0
    mean = total / np.maximum(count, 1.0)[..., None]
    _, (iy, ix) = distance_transform_edt(~filled, return_indices=True)
    return np.rint(mean[iy, ix]).astype(np.uint8)


def write_obj(path: Path, vertices: np.ndarray, uv: np.ndarray, faces: np.ndarray,
              texture: np.ndarray) -> None:
    """A textured OBJ (one ``vt`` per ``v``, faces ``f v/vt``), its .mtl and .png beside it;
    the OBJ is written last, each file atomically."""
    from pipeline.imageio import save_png

    stem = path.stem
    save_png(path.with_suffix(".png"), texture)
    with atomic_path(path.with_suffix(".mtl")) as tmp:
        tmp.write_text(f"newmtl material0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd {stem}.png\n")
    text = io.StringIO()
    text.write(f"mtllib {stem}.mtl\n")
    np.savetxt(text, vertices, fmt="v %.7f %.7f %.7f")
    np.savetxt(text, uv, fmt="vt %.6f %.6f")
    text.write("usemtl material0\n")
    np.savetxt(text, np.repeat(faces + 1, 2, axis=1), fmt="f %d/%d %d/%d %d/%d")
    with atomic_path(path) as tmp:
        tmp.write_text(text.getvalue())


def _compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices the faces use (kept in order) and the faces renumbered: ``(kept, faces)``."""
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return used, remap[faces]


def square_box(mask: np.ndarray) -> list[int]:
    """The largest square window of the photo, centred on the person (``mask``'s box) as
    far as the photo allows: ``[x0, y0, side]`` pixels (MVP-Human's photos are square crops
    around the person)."""
    height, width = mask.shape
    side = min(height, width)
    ys, xs = np.nonzero(mask)
    cx = 0.5 * (xs.min() + xs.max()) if len(xs) else 0.5 * width
    cy = 0.5 * (ys.min() + ys.max()) if len(ys) else 0.5 * height
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return [x0, y0, side]


def cut(image: np.ndarray, box: list[int], size: int, nearest: bool) -> np.ndarray:
    """``image`` cut to the square ``box`` and resized to ``size``² (nearest for a mask)."""
    from PIL import Image

    x0, y0, side = box
    window = Image.fromarray(image[y0:y0 + side, x0:x0 + side])
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    return np.asarray(window.resize((size, size), method))


def write_standin(*, subject: str, photos: Path, truth: Path, dataset: Path,
                  templates: Mapping[str, Any], rng: np.random.Generator,
                  model: Any = None) -> dict[str, Any]:
    """Write the MVP-like copy of a natively generated subject (``photos``, ``truth``: the
    folders ``stage.synthesize_subject`` wrote) under the data set folder ``dataset``.
    Returns the record written to standin.json."""
    from pipeline.imageio import read_gray, read_rgb, save_png
    from pipeline.scans import punch_holes
    from pipeline.synthesize import body as bodymod
    from pipeline.synthesize.poses import DA_POSE

    t = check_templates(templates)
    places = outputs(t, subject)
    model = bodymod.load_body_model() if model is None else model
    scan = da_posed_scan(truth, model)
    faces = punch_holes(scan["vertices"], scan["faces"], n_random=RANDOM_HOLES,
                        radius=HOLE_RADIUS, rng=rng, up=1)
    kept, faces = _compact(scan["vertices"], faces)
    rotation = random_rotation(rng)
    actions = {p.name: standin_action(p.name) for p in sorted(photos.iterdir()) if p.is_dir()}
    record = {"pelvis": scan["pelvis"].tolist(), "axes": AXES.tolist(),
              "rotation_Q": rotation.tolist(), "pose": DA_POSE.to_dict(),
              "map": "x_file = Q^T (axes (x_posed - pelvis)); x_posed: canonical_clothed.npz "
                     "skinned into pose with its weights and posed_body(pose) transforms; "
                     "x_dataset = R0 x_file, R0 = Q",
              "subject": subject, "actions": actions, "crops": {},
              "faces": {"kept": len(faces), "punched": len(scan["faces"]) - len(faces)}}
    folders = {name: path for name, (path, is_dir) in places.items() if is_dir}
    with contextlib.ExitStack() as stack:
        staged = {path: stack.enter_context(atomic_directory(dataset / path))
                  for path in folders.values()}

        def where(rel: str) -> Path:
            for folder, tmp in staged.items():
                if _inside(rel, folder):
                    return tmp / PurePosixPath(rel).relative_to(folder)
            return dataset / rel

        for native, action in actions.items():
            for jpeg in sorted((photos / native).glob("*.jpg")):
                view = jpeg.stem
                rgb = read_rgb(jpeg)
                mask = read_gray(truth / native / f"{view}_mask.png")
                if mask.shape != rgb.shape[:2]:
                    raise PipelineError(f"{truth / native}: mask of {view} is {mask.shape}, "
                                        f"the photo {rgb.shape[:2]}")
                names = {"subject": subject, "action": action, "view": view, "ext": "png"}
                box = square_box(mask > 0)
                record["crops"].setdefault(action, {})[view] = box
                save_png(where(fill(t["photos"], **names)), cut(rgb, box, PHOTO_SIZE, False))
                save_png(where(fill(t["masks"], **names)),
                         cut(np.where(mask > 0, 255, 0).astype(np.uint8), box, PHOTO_SIZE,
                             True))
        truth_dir = staged[folders["truth"]]
        for name in TRUTH_FILES:
            shutil.copy2(truth / name, truth_dir / name)
        write_json(truth_dir / "standin.json", record)
        target = where(fill(t["scan"], subject=subject))
        target.parent.mkdir(parents=True, exist_ok=True)
        write_obj(target, scan["vertices"][kept] @ rotation, scan["uv"][kept], faces,
                  texture_image(scan["uv"][kept], scan["colors"][kept]))
        with atomic_path(where(fill(t["scan_rotation"], subject=subject))) as tmp:
            np.savetxt(tmp, rotation, fmt="%.18e")
    return record


def standin_rng(seed: int, subject: str) -> np.random.Generator:
    """The stand-in's random stream (holes, Q): the subject's own, apart from the native
    generation's so that the native files stay the same."""
    from pipeline.synthesize.stage import subject_rng

    return subject_rng(seed, f"{subject}/standin")


def synthesize_standin(*, subject: str, dataset: Path, templates: Mapping[str, Any],
                       params: Any) -> dict[str, Any]:
    """Generate ``subject`` natively into a temporary folder of ``dataset`` (removed after),
    then write its stand-in (:func:`write_standin`). ``params``: a ``stage.SynthParams``."""
    from pipeline.synthesize.stage import synthesize_subject

    dataset.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{subject}.native-", dir=dataset) as tmp:
        photos, truth = Path(tmp) / "photos", Path(tmp) / "truth"
        synthesize_subject(subject=subject, photos_dir=photos, truth_dir=truth, params=params)
        return write_standin(subject=subject, photos=photos, truth=truth, dataset=dataset,
                             templates=templates, rng=standin_rng(params.seed, subject))


def run_splits(*, folder: Path, train: list[str] | None = None,
               val: list[str] | None = None, test: list[str] | None = None) -> None:
    """CLI entry ``python -m pipeline standin-splits``: ``<folder>/{train,val,test}.txt``,
    one subject id a line."""
    for name, ids in (("train", train or []), ("val", val or []), ("test", test or [])):
        with atomic_path(Path(folder) / f"{name}.txt") as tmp:
            tmp.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")


def parse_templates(text: str | None) -> dict[str, Any]:
    """``data.layout`` given as JSON (None: :data:`MVP_HUMAN_LAYOUT`)."""
    return dict(MVP_HUMAN_LAYOUT) if text is None else json.loads(text)

"""The ``synthesize`` stage: one synthetic subject, photographed like a real data set.

Writes, for subject ``S`` (layout documented in ``docs/synthetic_data.md``)::

    <photos>/<action>/<view>.jpg            the photos (what a real data set has)
    <photos>/<action>/cameras.json          calibrated cameras of the action's views
    <truth>/subject.json                    phenotype, outfit, appearance, garment thickness
    <truth>/canonical_clothed.ply|.npz      ground-truth clothed canonical mesh (+ labels, skinning)
    <truth>/canonical_body.ply              naked body in the canonical pose
    <truth>/contact_sheet.png               views of the first action + canonical mesh turntable
    <truth>/<action>/body.json              pose, yaw, translation, bone transforms
    <truth>/<action>/clothed.ply, body.ply  posed clothed and naked meshes
    <truth>/<action>/<view>_mask.png        foreground mask (0/255)
    <truth>/<action>/<view>_depth.png       camera z in millimetres, uint16, 0 = background
    <truth>/<action>/<view>_normal.png      camera-space normals, (n + 1) / 2 * 255
    <truth>/<action>/<view>_keypoints.json  BODY_25, OpenPose format (what a detector writes)
    <truth>/<action>/views.json             per view: box, COCO-17 keypoints with visibility

Both folders are written to temporary siblings and renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pipeline.camera import Camera, ring_cameras
from pipeline.errors import PipelineError
from pipeline.imageio import save_jpeg, save_png
from pipeline.io import atomic_directory, atomic_path, write_json
from pipeline.meshio import write_ply
from pipeline.progress import log_startup
from pipeline.progress import progress as progress_bar
from pipeline.skeleton import COCO17, coco17_to_body25, write_openpose
from pipeline.synthesize import appearance as look
from pipeline.synthesize import body as bodymod
from pipeline.synthesize import clothing, poses
from pipeline.synthesize.raycast import check_mesh
from pipeline.synthesize.render import compute_vertex_normals, make_intersector, render
from pipeline.synthesize.sheet import contact_sheet

log = logging.getLogger(__name__)

# A keypoint counts as visible when it lies in the image, on the mask, and at most this far
# (metres) behind the rendered surface at its pixel: joint centres sit inside the body.
VISIBILITY_DEPTH_TOLERANCE = 0.12
DEPTH_SCALE = 1000.0  # depth PNG units per metre (millimetres)
# Bodies face -Y (see body.py); the ring's azimuth 0 is +X, so view cam0 at -90 deg sees the
# front of an unrotated body. Each action then turns the body by a random yaw.
FRONT_AZIMUTH_DEG = -90.0


@dataclass(frozen=True)
class SynthParams:
    """The ``synthesize`` config section (see the schema for each key)."""

    seed: int
    n_actions: int
    n_frames: int
    n_views: int
    width: int
    height: int
    jpeg_quality: int
    camera: dict[str, float]
    voxel_size: float
    skirt_fraction: float
    phenotype: dict[str, list[float]]
    outfit: dict[str, Any]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SynthParams:
        keys = cls.__dataclass_fields__
        return cls(**{k: params[k] for k in keys})


def subject_rng(seed: int, subject: str) -> np.random.Generator:
    """The subject's own random stream: depends on the run seed and the name only."""
    digest = hashlib.sha256(subject.encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def action_names(n_actions: int, n_frames: int) -> list[list[str]]:
    """Folder names per action: ``act00`` or, for clips, ``act00_f00, act00_f01, ...``."""
    if n_frames == 1:
        return [[f"act{a:02d}"] for a in range(n_actions)]
    return [[f"act{a:02d}_f{f:02d}" for f in range(n_frames)] for a in range(n_actions)]


def make_rig(rng: np.random.Generator, p: SynthParams) -> list[Camera]:
    """The subject's camera ring (fixed for all its actions, like a capture studio)."""
    cam = p.camera
    focal = 0.5 * p.height / np.tan(np.deg2rad(cam["vertical_fov_deg"]) / 2.0)
    return ring_cameras(
        rng, n_views=p.n_views, distance=cam["distance"], elevation_deg=cam["elevation_deg"],
        focal_px=float(focal), width=p.width, height=p.height,
        target=(0.0, 0.0, cam["target_height"]), start_deg=FRONT_AZIMUTH_DEG,
        jitter={"distance_frac": cam["jitter_distance"],
                "elevation_deg": cam["jitter_elevation_deg"],
                "target_m": cam["jitter_target"], "focal_frac": cam["jitter_focal"],
                "roll_deg": cam["jitter_roll_deg"]},
    )


def foot_vertex_indices(canonical: bodymod.BodyMesh) -> np.ndarray:
    """Body vertices standing for OpenPose's six foot keypoints, found on the canonical body.

    Order: left big toe, left small toe, left heel, right big toe, right small toe, right heel
    (BODY_25 19-24). The canonical body faces -Y with its left side at +X and its soles on
    z = 0: the heel is the rearmost sole vertex, the toes the foremost vertices of the inner
    (big) and outer (small) parts of the foot's front 3 cm.

    Returns:
        ``(6,)`` int64 vertex indices.
    """
    v = canonical.vertices
    out = []
    for side in (1.0, -1.0):  # left (+X) then right
        foot = np.flatnonzero((v[:, 0] * side > 0.03) & (v[:, 2] < 0.08))
        sole = foot[v[foot, 2] < 0.03]
        front = foot[v[foot, 1] < v[foot, 1].min() + 0.03]
        lateral = np.abs(v[front, 0])
        inner = front[lateral <= np.quantile(lateral, 0.4)]
        outer = front[lateral >= np.quantile(lateral, 0.75)]
        out += [inner[np.argmin(v[inner, 1])], outer[np.argmin(v[outer, 1])],
                sole[np.argmax(v[sole, 1])]]
    return np.asarray(out, dtype=np.int64)


def keypoint_visibility(uv: np.ndarray, z: np.ndarray, mask: np.ndarray,
                        depth: np.ndarray) -> np.ndarray:
    """Visibility of projected keypoints ``uv (J, 2)`` at camera depth ``z (J,)``: ``(J,)`` bool."""
    h, w = mask.shape
    px = np.round(uv).astype(np.int64)
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h) & (z > 0)
    visible = np.zeros(len(uv), dtype=bool)
    idx = np.flatnonzero(inside)
    on_mask = mask[px[idx, 1], px[idx, 0]]
    surface = depth[px[idx, 1], px[idx, 0]]
    visible[idx] = on_mask & (z[idx] - surface <= VISIBILITY_DEPTH_TOLERANCE)
    return visible


def _box(mask: np.ndarray) -> list[float]:
    """Tight ``[x0, y0, x1, y1]`` pixel box (inclusive pixel extents) of a mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def _write_view_truth(folder: Path, view: str, result, keypoints_3d: np.ndarray,
                      feet_3d: np.ndarray, camera: Camera) -> dict[str, Any]:
    """Mask, depth, normal PNGs and keypoints of one view; returns its views.json entry."""
    save_png(folder / f"{view}_mask.png", result.mask.astype(np.uint8) * 255)
    depth_mm = np.where(result.mask, np.round(result.depth * DEPTH_SCALE), 0)
    save_png(folder / f"{view}_depth.png", np.clip(depth_mm, 0, 65535).astype(np.uint16))
    normal = np.where(result.mask[..., None], (result.normal + 1.0) * 0.5 * 255.0, 0.0)
    save_png(folder / f"{view}_normal.png", np.round(normal).astype(np.uint8))
    uv, z = camera.project(np.concatenate([keypoints_3d, feet_3d]))
    visible = keypoint_visibility(uv, z, result.mask, result.depth)
    points = np.concatenate([uv, visible[:, None].astype(np.float64)], axis=1)
    coco, feet = points[:17], points[17:]
    write_openpose(folder / f"{view}_keypoints.json", [coco17_to_body25(coco, feet)])
    return {
        "box_xyxy": _box(result.mask),
        "mask_area": int(result.mask.sum()),
        "keypoints_coco17": np.round(coco, 4).tolist(),
    }


def _render_action(
    *, names: list[str], frames: list[poses.Pose], model: Any, phenotype: bodymod.Phenotype,
    clothed: clothing.ClothedMesh, albedo: np.ndarray, rig: list[Camera],
    feet: np.ndarray, rng: np.random.Generator, p: SynthParams, photos: Path, truth: Path,
    yaw: float, translation: np.ndarray, light: Any, progress: tqdm,
) -> None:
    """Render every frame of one action from every camera; write photos and truth."""
    for name, pose in zip(names, frames, strict=True):
        body = bodymod.posed_body(model, phenotype, pose, yaw=yaw, translation=translation)
        posed = clothing.skin_vertices(clothed.vertices, clothed.skinning_weights,
                                       body.bone_transforms)
        (photos / name).mkdir()
        (truth / name).mkdir()
        views = {}
        # One ray scene and one set of normals serve every view of the posed mesh.
        vertices, faces = check_mesh(posed, clothed.faces)
        scene = make_intersector(vertices, faces)
        normals = compute_vertex_normals(vertices, faces)
        for index, camera in enumerate(rig):
            view = f"cam{index}"
            background = look.procedural_background(rng, p.height, p.width)
            result = render(vertices, faces, albedo, camera, background, light,
                            vertex_normals=normals, intersector=scene)
            save_jpeg(photos / name / f"{view}.jpg", look.photo_finish(rng, result.rgb),
                       p.jpeg_quality)
            views[view] = _write_view_truth(truth / name, view, result, body.keypoints,
                                            body.vertices[feet], camera)
            progress.update()
        write_json(photos / name / "cameras.json", {
            "convention": "opencv: x_cam = R @ X_world + t; x right, y down, z forward; "
                          "pixel centres at integer coordinates; metres",
            "views": {f"cam{i}": cam.to_dict() for i, cam in enumerate(rig)},
        })
        write_json(truth / name / "views.json", {"keypoint_order": list(COCO17), "views": views})
        write_json(truth / name / "body.json", {
            "pose": pose.to_dict(),
            "yaw": yaw,
            "translation": np.asarray(translation).tolist(),
            "bone_names": list(body.bone_names),
            "bone_transforms": np.round(body.bone_transforms, 8).tolist(),
            "keypoints_coco17_3d": np.round(body.keypoints, 6).tolist(),
        })
        write_ply(truth / name / "clothed.ply", posed, clothed.faces, albedo)
        write_ply(truth / name / "body.ply", body.vertices, body.faces)


def synthesize_subject(*, subject: str, photos_dir: Path, truth_dir: Path,
                       params: SynthParams) -> None:
    """Generate one subject: body, outfit, canonical clothed mesh, then every action and view."""
    rng = subject_rng(params.seed, subject)
    model = bodymod.load_body_model()
    log_startup(f"the body of {subject}")  # dressing it below is work
    phenotype = bodymod.sample_phenotype(rng, {k: tuple(v) for k, v in params.phenotype.items()})
    canonical = bodymod.canonical_body(model, phenotype)
    feet = foot_vertex_indices(canonical)
    garments = params.outfit
    outfit = clothing.sample_outfit(rng, skirt_fraction=params.skirt_fraction,
                                    bottom=garments.get("bottom"),
                                    top_thickness=tuple(garments.get("top_thickness",
                                                                     (0.006, 0.02))),
                                    bottom_thickness=tuple(garments.get("bottom_thickness",
                                                                        (0.008, 0.025))))
    log.info("%s: phenotype %s, outfit %s", subject, phenotype, outfit)
    clothed = clothing.build_clothed_canonical(canonical, outfit, voxel_size=params.voxel_size)
    appearance = look.sample_appearance(rng)
    skin_uv = bodymod.body_vertex_uv(model)[clothed.nearest_body_vertex]
    albedo = look.vertex_albedo(clothed.vertices, clothed.labels, appearance, skin_uv=skin_uv,
                                skin_texture=look.skin_detail_texture())
    rig = make_rig(rng, params)
    skirted = outfit.bottom in ("skirt", "dress")
    actions = poses.sample_actions(rng, params.n_actions,
                                   avoid=poses.LEG_SPREADING_POSES if skirted else ())
    names = action_names(params.n_actions, params.n_frames)
    total = params.n_actions * params.n_frames * params.n_views
    with atomic_directory(photos_dir) as photos, atomic_directory(truth_dir) as truth, \
            progress_bar(total, f"synthesize {subject}", unit="view") as progress:
        for a, (action, frame_names) in enumerate(zip(actions, names, strict=True)):
            start = actions[a - 1] if a > 0 else poses.CANONICAL_POSE
            frames = [action] if params.n_frames == 1 else poses.clip(start, action,
                                                                      params.n_frames)
            yaw = float(rng.uniform(0.0, 2.0 * np.pi))
            translation = np.array([*rng.uniform(-0.25, 0.25, 2), 0.0])
            _render_action(names=frame_names, frames=frames, model=model, phenotype=phenotype,
                           clothed=clothed, albedo=albedo, rig=rig, feet=feet, rng=rng, p=params,
                           photos=photos, truth=truth, yaw=yaw, translation=translation,
                           light=look.sample_light(rng), progress=progress)
        _write_subject_truth(truth, subject, phenotype, outfit, appearance, canonical, clothed,
                             albedo, rig, first_action=names[0][0], photos=photos)


def _write_subject_truth(truth: Path, subject: str, phenotype, outfit, appearance, canonical,
                         clothed, albedo, rig, first_action: str, photos: Path) -> None:
    write_ply(truth / "canonical_clothed.ply", clothed.vertices, clothed.faces, albedo)
    write_ply(truth / "canonical_body.ply", canonical.vertices, canonical.faces)
    with atomic_path(truth / "canonical_clothed.npz") as tmp:
        np.savez_compressed(tmp, vertices=clothed.vertices, faces=clothed.faces,
                            labels=clothed.labels, skinning_weights=clothed.skinning_weights,
                            nearest_body_vertex=clothed.nearest_body_vertex)
    write_json(truth / "subject.json", {
        "subject": subject,
        "phenotype": asdict(phenotype),
        "outfit": asdict(outfit),
        "appearance": json.loads(json.dumps(asdict(appearance))),
        "garment_thickness_mean_m": round(float(clothed.thickness_mean), 6),
        "canonical_pose": poses.CANONICAL_POSE.to_dict(),
        "n_vertices": {"clothed": len(clothed.vertices), "body": len(canonical.vertices)},
    })
    photos_first = [photos / first_action / f"cam{i}.jpg" for i in range(len(rig))]
    sheet = contact_sheet(photos_first, clothed.vertices, clothed.faces, canonical.vertices,
                          canonical.faces, title=f"{subject}")
    save_png(truth / "contact_sheet.png", sheet)


def run(*, subject: str, output: Path, truth: Path, params: dict[str, Any],
        dataset: Path | None = None, data_layout: str | None = None) -> None:
    """CLI entry: ``python -m pipeline synthesize``.

    ``synthesize.layout`` native (the default): photos to ``output``, truth to ``truth``.
    mvp_human: the subject is generated natively into a temporary folder, then written as an
    MVP-Human-like stand-in (``pipeline/synthesize/standin.py``) under the data set folder
    ``dataset`` at the paths of the ``data.layout`` templates ``data_layout`` (JSON; absent:
    ``standin.MVP_HUMAN_LAYOUT``); ``output`` must then be the subject's photo folder there
    and ``truth`` its ``standin_truth/<subject>`` folder.
    """
    synth = SynthParams.from_params(params)
    if params.get("layout", "native") == "native":
        synthesize_subject(subject=subject, photos_dir=output, truth_dir=truth, params=synth)
        return
    from pipeline.synthesize import standin

    if dataset is None:
        raise PipelineError("synthesize.layout mvp_human: give the data set folder (--dataset)")
    templates = standin.parse_templates(data_layout)
    places = standin.outputs(templates, subject)
    for name, given in (("photos", output), ("truth", truth)):
        expected = Path(dataset) / places[name][0]
        if Path(given).resolve() != expected.resolve():
            raise PipelineError(f"synthesize.layout mvp_human writes the {name} of {subject} "
                                f"to {expected}, not {given}")
    standin.synthesize_standin(subject=subject, dataset=Path(dataset), templates=templates,
                               params=synth)

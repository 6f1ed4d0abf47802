"""The fit stage on tiny inputs made from a known Anny body (exact keypoints and masks)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.bodymodel import skin_points
from pipeline.bodymodel.anny_model import AnnyBodyModel
from pipeline.camera import look_at
from pipeline.errors import PipelineError
from pipeline.fit import fit_to_files
from pipeline.fit_quality import similarity_align
from pipeline.fitting.inputs import load_subject
from pipeline.fitting.multiview import multiview_inliers
from pipeline.fitting.optimize import FitSettings, _Problem, fit_subject
from pipeline.fitting.raster import fill_triangles
from pipeline.imageio import save_png
from pipeline.synthesize.poses import get_pose

SIZE = 128
FAST = {"global": 30, "body": 120, "silhouette": 40}
ACTIONS = {"act00": ("arms_forward", 0.4), "act01": ("stand_relaxed", -1.2)}


@pytest.fixture(scope="module")
def model() -> AnnyBodyModel:
    return AnnyBodyModel()


def _cameras(n_views: int) -> list:
    K = np.array([[170.0, 0.0, 63.5], [0.0, 170.0, 63.5], [0.0, 0.0, 1.0]])
    cams = []
    for i in range(n_views):
        angle = 2 * math.pi * i / n_views
        eye = np.array([3.2 * math.sin(angle), -3.2 * math.cos(angle), 1.2])
        cams.append(look_at(eye, np.array([0.0, 0.0, 0.9]), K=K, width=SIZE, height=SIZE))
    return cams


def _truth(model: AnnyBodyModel) -> dict:
    shape = torch.tensor([0.4, 0.2, -0.3, 0.2, 0.5, -0.2])
    poses = torch.stack([model.pose_from_degrees(get_pose(p).as_dict()) for p, _ in
                         ACTIONS.values()])
    orient = torch.tensor([[0.0, 0.0, yaw] for _, yaw in ACTIONS.values()])
    with torch.no_grad():
        out = model.forward(shape, poses, orient, torch.tensor([[0.0, 0.0, 0.95]] * 2))
    return {"vertices": out.vertices.numpy(), "keypoints": out.keypoints.numpy()}


def write_inputs(root: Path, model: AnnyBodyModel, truth: dict, *, calibrated: bool = True,
                 n_views: int = 4) -> dict[str, Path]:
    """crop/, mask/, keypoints/ and a manifest as the preprocessing stages write them."""
    paths = {k: root / k for k in ("crops", "masks", "keypoints")}
    cams = _cameras(n_views)
    for a, action in enumerate(ACTIONS):
        views, points = {}, {}
        for i, cam in enumerate(cams):
            view = f"cam{i}"
            pix, _ = cam.project(truth["vertices"][a])
            kp, _ = cam.project(truth["keypoints"][a])
            mask = fill_triangles(pix, model.faces, SIZE)
            save_png(paths["masks"] / action / f"{view}.png", mask.astype(np.uint8) * 255)
            save_png(paths["crops"] / action / f"{view}.png",
                     np.dstack([mask.astype(np.uint8) * 200] * 3))
            views[view] = {"status": "ok", "camera": cam.to_dict() if calibrated else None}
            points[view] = {"status": "ok",
                            "coco17": np.hstack([kp, np.ones((17, 1))]).tolist()}
        (paths["crops"] / action / "crop.json").write_text(json.dumps({"views": views}))
        paths["keypoints"].mkdir(parents=True, exist_ok=True)
        (paths["keypoints"] / f"{action}.json").write_text(json.dumps({"views": points}))
    paths["manifest"] = root / "manifest.json"
    paths["manifest"].write_text(json.dumps({"actions": {a: {} for a in ACTIONS}}))
    return paths


@pytest.fixture(scope="module")
def scene(model, tmp_path_factory) -> dict:
    truth = _truth(model)
    root = tmp_path_factory.mktemp("fit")
    return {"truth": truth, "calibrated": write_inputs(root / "cal", model, truth),
            "weak": write_inputs(root / "weak", model, truth, calibrated=False)}


def _load(paths: dict):
    return load_subject("s000", list(ACTIONS), paths["crops"], paths["masks"],
                        paths["keypoints"])


def _pve_cm(fitted: np.ndarray, truth: np.ndarray, align: bool = False) -> float:
    if align:  # similarity (Procrustes with scale): weak perspective leaves the size free
        fitted = similarity_align(fitted, truth)
    return float(np.linalg.norm(fitted - truth, axis=-1).mean() * 100)


def test_calibrated_fit_recovers_the_body(model, scene):
    result = fit_subject(model, _load(scene["calibrated"]), FitSettings(iterations=FAST))
    for a in range(len(ACTIONS)):
        assert _pve_cm(result.posed["vertices"][a], scene["truth"]["vertices"][a]) < 4.0
    assert np.nanmax(result.metrics["keypoint_error_px"]) < 3.0
    assert result.view_ok.all() and np.nanmin(result.metrics["silhouette_iou"]) > 0.8


def test_weak_perspective_fit_reprojects_the_keypoints(model, scene):
    settings = FitSettings(camera="weak_perspective", iterations=FAST)
    result = fit_subject(model, _load(scene["weak"]), settings)
    assert "camera_scale" in result.cameras and "camera_K" not in result.cameras
    assert np.nanmax(result.metrics["keypoint_error_px"]) < 4.0
    for a in range(len(ACTIONS)):  # no world frame: compare after a rigid alignment
        assert _pve_cm(result.posed["vertices"][a], scene["truth"]["vertices"][a],
                       align=True) < 5.0


def test_silhouette_term_can_be_switched_off(model, scene):
    settings = FitSettings(silhouette="none", iterations=FAST)
    result = fit_subject(model, _load(scene["calibrated"]), settings)
    assert all(h["stage"] != "silhouette" for h in result.history)
    assert _pve_cm(result.posed["vertices"][0], scene["truth"]["vertices"][0]) < 5.0


def test_same_settings_give_the_same_fit(model, scene):
    settings = FitSettings(iterations={"global": 5, "body": 10, "silhouette": 5})
    first = fit_subject(model, _load(scene["calibrated"]), settings)
    second = fit_subject(model, _load(scene["calibrated"]), settings)
    np.testing.assert_array_equal(first.pose, second.pose)
    np.testing.assert_array_equal(first.posed["vertices"], second.posed["vertices"])


def test_view_without_keypoints_still_fits(model, scene, tmp_path, caplog):
    paths = write_inputs(tmp_path, model, scene["truth"])
    file = paths["keypoints"] / "act00.json"
    data = json.loads(file.read_text())
    data["views"]["cam2"]["coco17"] = np.zeros((17, 3)).tolist()
    file.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        result = fit_subject(model, _load(paths), FitSettings(iterations=FAST))
    assert "act00/cam2: no keypoints in this view" in caplog.text
    assert np.isnan(result.metrics["keypoint_error_px"][0, 2])
    assert _pve_cm(result.posed["vertices"][0], scene["truth"]["vertices"][0]) < 5.0


def test_nan_in_a_camera_is_named(model, scene, tmp_path):
    paths = write_inputs(tmp_path, model, scene["truth"])
    file = paths["crops"] / "act01" / "crop.json"
    data = json.loads(file.read_text())
    data["views"]["cam3"]["camera"]["t"][1] = float("nan")
    file.write_text(json.dumps(data).replace("NaN", "NaN"))
    with pytest.raises(PipelineError, match=r"crop\.json: camera of view 'cam3' has a non-finite"):
        _load(paths)


def test_non_finite_loss_names_the_view(model, scene):
    problem = _Problem(model, _load(scene["calibrated"]), FitSettings())
    problem.target[1, 2, 5, 0] = float("nan")
    total, per_view, _ = problem.loss("body")
    with pytest.raises(PipelineError, match="action act01 view cam2"):
        problem.check_finite(total, per_view, "test")


def test_a_view_that_cannot_fit_is_flagged_then_fails(model, scene, tmp_path, caplog):
    paths = write_inputs(tmp_path, model, scene["truth"])
    file = paths["keypoints"] / "act00.json"
    data = json.loads(file.read_text())
    points = np.asarray(data["views"]["cam1"]["coco17"])
    points[:, :2] = points[::-1, :2] + 45.0  # scrambled and shifted: no body pose explains it
    data["views"]["cam1"]["coco17"] = points.tolist()
    file.write_text(json.dumps(data))
    settings = FitSettings(iterations=FAST, outlier_px=0.0, max_view_error_px=15.0)
    with caplog.at_level(logging.WARNING):
        result = fit_subject(model, _load(paths), settings)
    assert not result.view_ok[0, 1] and result.view_ok[0, [0, 2, 3]].all()
    assert "s000/act00: views flagged as badly fitted: cam1" in caplog.text
    strict = FitSettings(iterations={"global": 10, "body": 30, "silhouette": 0},
                         outlier_px=0.0, max_view_error_px=15.0, min_views=4)
    with pytest.raises(PipelineError, match=r"s000/act00: the fit diverged.*fit\.min_views.*cam1"):
        fit_subject(model, _load(paths), strict)


def test_multiview_outliers_are_found():
    cams = _cameras(6)
    world = np.array([[0.1, 0.0, 1.0], [0.0, 0.1, 1.5]])
    points = np.stack([np.hstack([c.project(world)[0], np.ones((2, 1))]) for c in cams])
    points[4, 1, :2] += 30.0
    projections = np.stack([c.K @ np.hstack([c.R, c.t[:, None]]) for c in cams])
    keep = multiview_inliers(points, projections, threshold_px=10.0)
    assert keep[:, 0].all() and keep[:, 1].sum() == 5 and not keep[4, 1]


def test_stage_writes_npz_report_and_overlays(model, scene, tmp_path):
    paths = scene["calibrated"]
    out = tmp_path / "fit"
    params = {"seed": 3, "iterations": {"global": 5, "body": 10, "silhouette": 5}}
    fit_to_files(subject="s000", manifest=paths["manifest"], crops=paths["crops"],
                 masks=paths["masks"], keypoints=paths["keypoints"], output=out / "s000.npz",
                 report=out / "s000.json", overlays=out / "s000", params=params)
    with np.load(out / "s000.npz", allow_pickle=False) as fit:
        assert str(fit["body_model"]) == "anny" and str(fit["camera_model"]) == "calibrated"
        assert list(fit["actions"]) == list(ACTIONS) and fit["view_ok"].shape == (2, 4)
        skinned = skin_points(torch.from_numpy(fit["canonical_vertices"]),
                              torch.from_numpy(fit["skinning_weights"]),
                              torch.from_numpy(fit["bone_transforms"]))
        np.testing.assert_allclose(skinned.numpy(), fit["posed_vertices"], atol=1e-4)
        # The rig the avatar export reads: the body model's skeleton of the saved shape (at
        # the fit's thread count, which fit_to_files left this process at).
        rig = model.skeleton(torch.from_numpy(fit["shape"]))
        assert fit["bone_parents"].dtype == np.int64 and fit["bone_bind"].dtype == np.float64
        assert fit["bone_bind"].shape == (len(fit["bone_names"]), 4, 4)
        np.testing.assert_array_equal(fit["bone_parents"], rig.parents)
        np.testing.assert_array_equal(fit["bone_bind"], rig.bind)
    report = json.loads((out / "s000.json").read_text())
    assert report["history"][0]["stage"] == "global" and "act01" in report["views"]
    assert sorted(p.name for p in (out / "s000").iterdir()) == ["act00.png", "act01.png"]
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_left_right_swaps_are_undone():
    cams = _cameras(6)
    rng = np.random.default_rng(0)
    world = rng.normal([0.0, 0.0, 1.0], 0.3, size=(17, 3))
    points = np.stack([np.hstack([c.project(world)[0], np.ones((17, 1))]) for c in cams])
    legs = [11, 12, 13, 14, 15, 16]  # left/right hip, knee, ankle
    swapped = points.copy()
    swapped[2, legs] = points[2, [12, 11, 14, 13, 16, 15]]
    projections = np.stack([c.K @ np.hstack([c.R, c.t[:, None]]) for c in cams])
    from pipeline.fitting.multiview import fix_left_right

    fixed, groups = fix_left_right(swapped, projections, threshold_px=10.0)
    assert groups == [(2, "legs")]
    np.testing.assert_array_equal(fixed, points)


def test_smplx_body_model_runs_through_the_stage(scene, tmp_path):
    pytest.importorskip("smplx")
    from tests.test_bodymodel_smplx import write_synthetic_smplx

    write_synthetic_smplx(tmp_path / "SMPLX_NEUTRAL.npz")
    paths = scene["calibrated"]
    params = {"body_model": "smplx", "smplx": {"model_path": str(tmp_path)},
              "iterations": {"global": 10, "body": 20, "silhouette": 5, "refine": 0},
              "max_view_error_px": 1e6, "min_view_inside": 0.0}
    out = tmp_path / "fit"
    fit_to_files(subject="s000", manifest=paths["manifest"], crops=paths["crops"],
                 masks=paths["masks"], keypoints=paths["keypoints"], output=out / "s000.npz",
                 report=out / "s000.json", overlays=out / "s000", params=params)
    with np.load(out / "s000.npz", allow_pickle=False) as fit:
        assert str(fit["body_model"]) == "smplx" and fit["shape"].shape == (10,)
        assert fit["posed_vertices"].shape[1] >= 9930 and fit["pose"].shape == (2, 21, 3)
        assert np.isfinite(fit["posed_vertices"]).all()
        assert fit["bone_transforms"].shape == (2, 55, 4, 4)
        assert fit["bone_parents"].shape == (55,) and fit["bone_bind"].shape == (55, 4, 4)


def test_pytorch3d_silhouette_needs_the_package(model, scene):
    try:
        import pytorch3d  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pytorch3d is installed: the error path cannot be shown")
    from pipeline.backends import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="pytorch3d is not installed"):
        _Problem(model, _load(scene["calibrated"]), FitSettings(silhouette="pytorch3d"))
    with pytest.raises(PipelineError, match=r"pytorch3d needs fit\.camera: calibrated"):
        _Problem(model, _load(scene["weak"]),
                 FitSettings(camera="weak_perspective", silhouette="pytorch3d"))


def test_placement_without_triangulation_uses_rays_and_a_yaw_search(model, scene):
    from scipy.spatial.transform import Rotation

    from pipeline.fitting.cameras import init_calibrated

    subject = _load(scene["calibrated"])
    keypoints = np.stack([np.stack([v.keypoints for v in a.views]) for a in subject.actions])
    keypoints[:, 0, 1::2, 2] = 0.0  # every joint seen in one view only: nothing triangulates
    keypoints[:, 1, 0::2, 2] = 0.0
    keypoints[:, 2:, :, 2] = 0.0
    zero = model.forward(torch.zeros(6), model.neutral_pose()[None], torch.zeros(1, 3),
                         torch.zeros(1, 3)).keypoints[0].numpy()
    orient, transl = init_calibrated(subject, keypoints, zero)
    for a, (_, yaw) in enumerate(ACTIONS.values()):
        found = Rotation.from_rotvec(orient[a])
        assert (found.inv() * Rotation.from_euler("z", yaw)).magnitude() < math.radians(25)
        assert np.linalg.norm(transl[a] - [0.0, 0.0, 0.95]) < 0.15


def test_nearest_index_is_the_brute_force_nearest():
    from pipeline.fitting.losses import nearest_index

    generator = torch.Generator().manual_seed(1)
    points = torch.rand(2, 3, 40, 2, generator=generator) * 100
    candidates = torch.rand(2, 3, 70, 2, generator=generator) * 100
    index = nearest_index(points, candidates)
    assert index.shape == (2, 3, 40) and index.dtype == torch.int64
    distances = ((points[..., :, None, :].double() - candidates[..., None, :, :].double())
                 ** 2).sum(-1)
    torch.testing.assert_close(index, distances.argmin(-1))


def test_calibrated_projection_matches_the_camera():
    from pipeline.camera import intrinsics_from_fov
    from pipeline.fitting.cameras import CalibratedCameras

    cameras = [look_at(np.array([2.5 * math.cos(a), 2.5 * math.sin(a), 1.2]),
                       np.array([0.0, 0.0, 0.9]), K=intrinsics_from_fov(50, 640, 480),
                       width=640, height=480).with_crop(100 + 10 * i, 20, 380, 128)
               for i, a in enumerate((0.3, 2.0))]
    module = CalibratedCameras(np.stack([c.K for c in cameras])[None],
                               np.stack([c.R for c in cameras])[None],
                               np.stack([c.t for c in cameras])[None])
    points = np.random.default_rng(0).normal([0, 0, 0.9], 0.4, size=(50, 3))
    pixels = module.project(torch.as_tensor(points, dtype=torch.float32)[None])[0].numpy()
    for view, camera in enumerate(cameras):
        np.testing.assert_allclose(pixels[view], camera.project(points)[0], atol=2e-3)

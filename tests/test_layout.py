"""A data set's file layout (``data.layout``, pipeline/layout.py): the templates checked when
the config is read, the photos found on a tiny tree of the default and the MVP-Human layout,
the ingest manifest of an MVP-Human tree (masks, missing masks, no cameras), a layout's masks
through detect to ``mask.backend: given``, the CLI and the workflow's ingest jobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import backends
from pipeline.cli import main
from pipeline.config import stage_params, validate_config
from pipeline.crop import CropBox
from pipeline.detect import DetectParams, detect_action
from pipeline.errors import PipelineError
from pipeline.imageio import read_gray, read_matte
from pipeline.ingest import IngestParams, ingest_subject
from pipeline.layout import Layout, pattern
from pipeline.mask import MaskParams, crop_matte, mask_action
from tests.conftest import make_layout, run_snakemake, tiny_config, write_config, write_photo

MVP = {
    "photos": "Images/{subject}/{action}/images/{view}.png",
    "masks": "Images/{subject}/{action}/masks/{view}.png",
    "cameras": None,
    "scan": "Canonical/{subject}/{subject}.obj",
    "scan_rotation": "Params/{subject}/R0.txt",
}
EXTENSIONS = ("jpg", "jpeg", "png")


def make_mvp(root: Path, subjects: list[str], actions: tuple[str, ...] = ("a0", "a1"),
             n_views: int = 3) -> Path:
    """An MVP-Human-like tree under ``root`` (the data set's folder): photos of 128×96 and
    their masks (a person-sized rectangle), a scan and a rotation per subject."""
    seed = 0
    for subject in subjects:
        for action in actions:
            base = root / "Images" / subject / action
            for i in range(n_views):
                write_photo(base / "images" / f"{i:02d}.png", seed)
                mask = np.zeros((96, 128), np.uint8)
                mask[10:90, 30 + i:90 + i] = 255
                (base / "masks").mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(base / "masks" / f"{i:02d}.png")
                seed += 1
        (root / "Canonical" / subject).mkdir(parents=True, exist_ok=True)
        (root / "Canonical" / subject / f"{subject}.obj").write_text("v 0 0 0\n")
        (root / "Params" / subject).mkdir(parents=True, exist_ok=True)
        (root / "Params" / subject / "R0.txt").write_text("1 0 0\n0 1 0\n0 0 1\n")
    return root


# --- templates checked when the config is read ----------------------------------------------


@pytest.mark.parametrize("key, template, message", [
    ("photos", "{subject}/{action}/{camera}.png", r"unknown placeholder \{camera\}"),
    ("photos", "{subject}/{action}/{view:>3}.png", r"unknown placeholder \{view:>3\}"),
    ("masks", "{subject}/{action}/{view}.{ext}", r"unknown placeholder \{ext\}"),
    ("cameras", "{subject}/{action}/{view}.json", r"unknown placeholder \{view\}"),
    ("masks", "/data/{subject}/{action}/{view}.png", "must be relative"),
    ("scan", "../truth/{subject}.ply", "without '..'"),
    ("photos", "{subject}/{view}.png", r"needs \{action\}"),
    ("scan_rotation", "Params/R0.txt", r"needs \{subject\}"),
    ("photos", "{action}/{subject}/{view}.png", r"must name the \{subject\}"),
    ("photos", "{subject}_{action}/{view}.png", r"must name the \{subject\}"),
    ("photos", "{subject}/{action}/{view.png", "expected '}'"),
])
def test_a_bad_template_fails_at_parse_time(key: str, template: str, message: str) -> None:
    with pytest.raises(PipelineError, match=rf"my\.yaml:\n  - data\.layout\.{key} .*{message}"):
        validate_config({"data": {"layout": {key: template}}}, source="my.yaml")


def test_default_and_mvp_layouts_are_valid() -> None:
    assert Layout.from_config(validate_config({})["data"]["layout"]) == Layout()
    config = validate_config({"data": {"layout": MVP}, "register": {"enabled": True}})
    layout = Layout.from_config(config["data"]["layout"])
    assert layout == Layout(**MVP)
    assert layout.photo_folder("100001") == "Images/100001"
    assert layout.mask_of("100001", "a0", "07") == "Images/100001/a0/masks/07.png"
    assert layout.cameras_of("100001", "a0") is None
    assert layout.scan_of("100001") == "Canonical/100001/100001.obj"
    assert layout.rotation_of("100001") == "Params/100001/R0.txt"
    assert Layout().photo_folder("s0") == "s0" and Layout().rotation_of("s0") is None


def test_given_masks_need_layout_masks() -> None:
    with pytest.raises(PipelineError, match=r"mask\.backend: given .* data\.layout\.masks is null"):
        validate_config({"mask": {"backend": "given"}})
    validate_config({"mask": {"backend": "given"}, "data": {"layout": MVP},
                     "register": {"enabled": True}})


def test_split_files_with_an_mvp_layout(tmp_path: Path) -> None:
    folder = make_mvp(tmp_path / "data" / "mvp", ["100001", "100002", "200001"], n_views=1)
    (folder / "mvp_train200.txt").write_text("100001\n100002\n")
    (folder / "mvp_test50.txt").write_text("# test\n200001\n")
    config = validate_config({"data": {
        "root": str(tmp_path / "data"), "dataset": "mvp", "layout": MVP,
        "split_files": {"subjects": "mvp_train200.txt", "test_subjects": "mvp_test50.txt"}},
        "register": {"enabled": True}})
    data = config["data"]
    assert data["subjects"] == ["100001", "100002", "200001"]
    assert data["test_subjects"] == ["200001"]
    assert Layout.from_config(data["layout"]) == Layout(**MVP)


# --- pattern and find_photos ----------------------------------------------------------------


def test_pattern_names_each_field() -> None:
    regex = pattern("{subject}/{action}/{view}.{ext}", ["jpg", "png"])
    match = regex.match("s0/act00/cam1.JPG")
    assert match is not None and (match["action"], match["view"]) == ("act00", "cam1")
    assert regex.match("s0/act00/cam1.txt") is None
    assert regex.match("s0/act00/sub/cam1.jpg") is None
    twice = pattern("Canonical/{subject}/{subject}.obj")
    assert twice.match("Canonical/x1/x1.obj") and not twice.match("Canonical/x1/x2.obj")


def test_find_photos_default_layout(tmp_path: Path) -> None:
    make_layout(tmp_path, {"s0": {"act00": 2, "act01": 1}, "s1": {"act00": 1}})
    act = tmp_path / "s0" / "act00"
    write_photo(act / "cam2.PNG", 9)  # extensions are case-insensitive
    (act / "notes.txt").write_text("not a photo")  # another extension
    (act / "cameras.json").write_text("{}")
    write_photo(act / ".cam3.jpg", 9)  # hidden file
    write_photo(tmp_path / "s0" / ".cache" / "cam4.jpg", 9)  # hidden folder
    write_photo(act / "sub" / "cam5.jpg", 9)  # deeper than the template
    found = Layout().find_photos(tmp_path, "s0", EXTENSIONS)
    assert sorted(found) == ["act00", "act01"]
    assert found["act00"] == {v: [act / f"{v}.{e}"] for v, e in
                              (("cam0", "jpg"), ("cam1", "jpg"), ("cam2", "PNG"))}
    assert found["act01"] == {"cam0": [tmp_path / "s0" / "act01" / "cam0.jpg"]}


def test_find_photos_mvp_layout(tmp_path: Path) -> None:
    make_mvp(tmp_path, ["100001"], actions=("a0",), n_views=2)
    images = tmp_path / "Images" / "100001" / "a0" / "images"
    write_photo(images / "02.jpg", 9)  # the template says .png
    write_photo(images / ".03.png", 9)
    found = Layout(**MVP).find_photos(tmp_path, "100001", EXTENSIONS)
    assert found == {"a0": {"00": [images / "00.png"], "01": [images / "01.png"]}}


def test_a_template_matching_nothing_names_template_and_folder(tmp_path: Path) -> None:
    make_layout(tmp_path, {"s0": {"act00": 2}})  # the default layout, read as MVP-Human's
    (tmp_path / "Images" / "s0").mkdir(parents=True)
    with pytest.raises(PipelineError, match=r"data\.layout\.photos 'Images/\{subject\}/"
                                            r"\{action\}/images/\{view\}\.png' matches no file "
                                            rf"under {tmp_path}/Images/s0"):
        Layout(**MVP).find_photos(tmp_path, "s0", EXTENSIONS)
    with pytest.raises(PipelineError, match=r"data folder .*/Images/s1 does not exist"):
        Layout(**MVP).find_photos(tmp_path, "s1", EXTENSIONS)


# --- the manifest of an MVP-Human tree ------------------------------------------------------


def test_mvp_manifest_records_masks_and_no_cameras(tmp_path: Path) -> None:
    root = make_mvp(tmp_path / "mvp", ["100001"])
    manifest = ingest_subject(data_dir=root, subject="100001", output=tmp_path / "m.json",
                              params=IngestParams(min_views=2), layout=Layout(**MVP))
    assert manifest["data_dir"] == str(root) and manifest["n_views"] == 6
    view = manifest["actions"]["a1"]["views"]["02"]
    assert view["file"] == "Images/100001/a1/images/02.png"
    assert view["mask"] == "Images/100001/a1/masks/02.png"
    assert all(a["cameras"] is None for a in manifest["actions"].values())


def test_mvp_missing_mask_is_rejected(tmp_path: Path) -> None:
    root = make_mvp(tmp_path / "mvp", ["100001"])
    missing = root / "Images" / "100001" / "a0" / "masks" / "01.png"
    missing.unlink()
    with pytest.raises(PipelineError, match=rf"images/01\.png: mask {missing} is missing "
                                            r"\(data\.layout\.masks "):
        ingest_subject(data_dir=root, subject="100001", output=tmp_path / "m.json",
                       params=IngestParams(min_views=2), layout=Layout(**MVP))
    manifest = ingest_subject(data_dir=root, subject="100001", output=tmp_path / "m.json",
                              params=IngestParams(min_views=2, on_bad_image="skip"),
                              layout=Layout(**MVP))
    act = manifest["actions"]["a0"]
    assert sorted(act["views"]) == ["00", "02"]
    assert act["rejected"]["01"]["file"] == "Images/100001/a0/images/01.png"
    assert "data.layout.masks" in act["rejected"]["01"]["reason"]


def test_layout_masks_reach_the_given_mask_backend(tmp_path: Path, monkeypatch) -> None:
    """The manifest's mask → the detect record → ``mask.backend: given``."""
    monkeypatch.setitem(backends.REGISTRY["detect"], "fake", "tests.fakes:make_detector")
    root = make_mvp(tmp_path / "mvp", ["100001"], actions=("a0",))
    manifest = tmp_path / "manifest.json"
    ingest_subject(data_dir=root, subject="100001", output=manifest,
                   params=IngestParams(min_views=2), layout=Layout(**MVP))
    crops = tmp_path / "crop"
    detected = detect_action(manifest=manifest, action="a0", truth=tmp_path / "none",
                             output=crops, params=DetectParams(
                                 "fake", 64, 0.1, "fail", 0.3, {"boxes": [([20, 5, 100, 92], 1)]}))
    record = detected["views"]["01"]
    mask = root / "Images" / "100001" / "a0" / "masks" / "01.png"
    assert record["mask"] == str(mask)
    mask_action(crops=crops, action="a0", truth=tmp_path / "none", output=tmp_path / "m",
                params=MaskParams("given", "none", 4, {}, {}))
    expected = crop_matte(read_matte(mask), CropBox.from_dict(record["crop"]))
    coarse = read_gray(tmp_path / "m" / "01_coarse.png")
    np.testing.assert_array_equal(coarse, np.round(expected * 255).astype(np.uint8))


def test_given_detection_boxes_the_mask(tmp_path: Path) -> None:
    """``detect.backend: given``: the box of each view's own mask."""
    root = make_mvp(tmp_path / "mvp", ["100001"], actions=("a0",))
    manifest = tmp_path / "manifest.json"
    ingest_subject(data_dir=root, subject="100001", output=manifest,
                   params=IngestParams(min_views=2), layout=Layout(**MVP))
    detected = detect_action(manifest=manifest, action="a0", truth=tmp_path / "none",
                             output=tmp_path / "crop",
                             params=DetectParams("given", 64, 0.1, "fail", 0.3, {}))
    for view, record in detected["views"].items():
        mask = read_matte(root / "Images" / "100001" / "a0" / "masks" / f"{view}.png") > 0.5
        ys, xs = np.nonzero(mask)
        assert record["box_xyxy"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    with pytest.raises(PipelineError, match=r"detect\.backend: given .* data\.layout\.masks"):
        validate_config({"detect": {"backend": "given"}})


# --- the CLI and the workflow ---------------------------------------------------------------


def test_cli_reads_the_layout(tmp_path: Path, caplog) -> None:
    root = make_mvp(tmp_path / "mvp", ["100001"])
    params = json.dumps(stage_params(validate_config({"ingest": {"min_views": 2}}), "ingest"))
    args = ["ingest", "--params", params, "--subject", "100001", "--data-dir", str(root),
            "--output", str(tmp_path / "m.json")]
    assert main([*args, "--layout", json.dumps(MVP)]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["n_views"] == 6
    assert main([*args, "--layout", json.dumps({"photo": "x"})]) == 1
    assert "unknown data.layout key(s) ['photo']" in caplog.text
    assert main(args) == 1  # the default layout: no <data set>/100001 folder
    assert "100001 does not exist" in caplog.text


@pytest.mark.slow
def test_workflow_ingests_an_mvp_tree_and_reruns_on_a_layout_change(tmp_path: Path) -> None:
    make_mvp(tmp_path / "data" / "mvp", ["100001", "100002"])
    config = tiny_config(data={"dataset": "mvp", "subjects": ["100001", "100002"],
                               "layout": MVP})
    write_config(tmp_path, config)
    run_snakemake(tmp_path, "--cores", "1")
    manifest = json.loads((tmp_path / "results/mvp/manifest/100002.json").read_text())
    assert manifest["data_dir"] == "data/mvp"
    assert manifest["actions"]["a0"]["views"]["00"]["mask"] == "Images/100002/a0/masks/00.png"
    again = run_snakemake(tmp_path, "-n")
    assert "nothing to be done" in (again.stdout + again.stderr).lower()
    write_config(tmp_path, {**config, "data": {**config["data"], "layout": {**MVP,
                                                                           "masks": None}}})
    result = run_snakemake(tmp_path, "-n", "--printshellcmds")
    planned = result.stdout + result.stderr
    assert planned.count("rule ingest:") == 2, planned
    assert "input: data/mvp/Images/100001" in planned and "Params have changed" in planned
    assert planned.count("--data-dir data/mvp --layout ") == 2, planned

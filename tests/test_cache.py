"""The training cache: layout, targets, refusals, determinism and atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from models.cache_io import SCHEMA_VERSION, load_index, open_cache
from pipeline.cache import build_cache
from pipeline.errors import PipelineError
from pipeline.io import file_sha256
from pipeline.meshio import read_ply, write_ply
from pipeline.scans import ScanPolicy
from pipeline.sdf import signed_distance
from pipeline.train import check_training_caches
from tests.cache_fakes import CLOTHED_R, SMALL, X0, Y0, build, make_subject, offset

REPO = Path(__file__).resolve().parents[1]
SUBJECT = {"n_actions": 2, "views": ("cam0", "cam1", "cam2"), "missing": ((1, "cam1"),),
           "flagged": ((0, "cam2"),)}


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("cache"), **SUBJECT)


def datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                      if isinstance(obj, h5py.Dataset) else None)
    return out


def test_layout_attrs_and_views(cached: Path) -> None:
    root = cached.parents[1]
    with open_cache(cached) as h5:
        attrs = dict(h5.attrs)
        assert attrs["schema_version"] == SCHEMA_VERSION
        assert attrs["config_hash"] == hashlib.sha256(
            json.dumps(SMALL, sort_keys=True).encode()).hexdigest()
        assert (attrs["subject"], attrs["body_model"], attrs["camera_model"]) == (
            "s", "anny", "calibrated")
        assert attrs["crop_size"] == 64
        sums = json.loads(attrs["source_checksums"])
        assert sums["fit"] == file_sha256(root / "fit" / "s.npz")
        assert sums["crops/act01/crop.json"] == file_sha256(root / "crop/act01/crop.json")
        assert set(sums) >= {"truth/canonical_clothed.ply", "truth/act00/clothed.ply"}
        assert h5["view_names"].asstr()[()].tolist() == ["cam0", "cam1", "cam2", "cam0", "cam2"]
        assert h5["action_index"][()].tolist() == [0, 0, 0, 1, 1]
        assert h5["view_ok"][()].tolist() == [True, True, False, True, True]
        images, alphas = h5["images"], h5["alphas"]
        assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8
        assert alphas.shape == (5, 64, 64) and alphas.dtype == np.uint8
        assert images.chunks == (1, 64, 64, 3) and alphas.chunks == (1, 64, 64)
        assert images.compression == "lzf"
        crop = np.asarray(Image.open(root / "crop/act01/cam2.png")).astype(np.float64)
        alpha = np.asarray(Image.open(root / "mask/act01/cam2.png")).astype(np.float64)
        assert np.array_equal(alphas[4], alpha.astype(np.uint8))
        assert np.abs(images[4] - crop * alpha[..., None] / 255).max() <= 0.5
        fit = np.load(root / "fit" / "s.npz")
        assert np.array_equal(h5["camera/t"][3], fit["camera_t"][1, 0])
        assert h5["camera/K"].shape == (5, 3, 3) and "camera/scale" not in h5
        assert h5["posed_vertices"].shape == fit["posed_vertices"].shape
        assert h5["posed_vertices"].dtype == np.float32
        assert h5["bone_transforms"].shape == (2, 2, 4, 4)
        assert np.array_equal(h5["faces"][()], fit["faces"])
        assert h5["skinning_weights"].shape == fit["skinning_weights"].shape
        normals = h5["oracle/normals"]
        assert normals.shape == (5, 64, 64, 3) and normals.chunks == (1, 64, 64, 3)
        photo = np.asarray(Image.open(root / "truth/act01/cam2_normal.png"))
        assert np.array_equal(normals[4], photo[Y0:Y0 + 64, X0:X0 + 64])
        assert h5.attrs["oracle_normals"].startswith("present")


def test_sdf_targets_sign_and_pifu(cached: Path) -> None:
    with open_cache(cached) as h5:
        points, values = h5["sdf/points"][()], h5["sdf/values"][()]
        assert points.shape == (3000, 3) and points.dtype == np.float32
        assert values.shape == (3000,) and values.dtype == np.float32
        kind = h5["sdf/kind"][()]
        assert np.sum(kind == 0) == 600 and np.sum(kind == 1) == 2400
        radius = np.linalg.norm(points, axis=1)
        far = np.abs(radius - CLOTHED_R) > 0.01
        assert np.all(values[far & (radius < CLOTHED_R)] < 0)  # negative inside
        assert np.all(values[far & (radius > CLOTHED_R)] > 0)
        np.testing.assert_allclose(values, radius - CLOTHED_R, atol=0.01)
        surface = h5["surface/points"][()]
        assert surface.shape == (500, 3) and h5["surface/normals"].shape == (500, 3)
        np.testing.assert_allclose(np.linalg.norm(surface, axis=1), CLOTHED_R, atol=0.01)
        for a in range(2):
            q, inside = h5[f"pifu/act{a:02d}/points"][()], h5[f"pifu/act{a:02d}/inside"][()]
            assert q.shape == (1500, 3) and inside.dtype == bool
            r = np.linalg.norm(q - offset(a), axis=1)
            clear = np.abs(r - CLOTHED_R) > 0.01
            assert np.array_equal(inside[clear], r[clear] < CLOTHED_R)
            # PIFu's pool: N/4 uniform per 4N near points (1/17), near points σ = 5 cm
            kind = h5[f"pifu/act{a:02d}/kind"][()]
            assert np.sum(kind == 0) == round(1500 / 17)
            offsets = r[kind == 1] - CLOTHED_R  # radial offset ~ N(0, σ) on a large sphere
            assert 0.04 < np.std(offsets) < 0.06


def test_index_and_oracle_absent(tmp_path: Path) -> None:
    path = build(tmp_path, normals=False, params={**SMALL, "n_pifu_points": 0,
                                                  "compression": "gzip"})
    index = load_index(path)
    assert not index.has_oracle_normals and index.pifu_actions == ()
    with open_cache(path) as h5:
        assert "oracle/normals" not in h5 and "pifu" not in h5
        assert h5.attrs["oracle_normals"].startswith("absent")
        assert h5["images"].compression == "gzip"


def test_inputs_only_cache_without_truth(cached: Path, tmp_path: Path) -> None:
    """A subject without a scan: the same inputs as with one, no targets, no truth read."""
    paths = make_subject(tmp_path, **SUBJECT)
    paths["truth"] = None
    output = tmp_path / "cache" / "p.h5"
    summary = build_cache(subject="s", output=output, params=dict(SMALL), **paths)
    assert summary["targets"] is False
    index = load_index(output)
    assert not index.has_targets and "data.predict_subjects" in index.targets
    assert not index.has_oracle_normals and index.pifu_actions == ()
    with_truth, without = datasets(cached), datasets(output)
    target_groups = ("sdf/", "surface/", "pifu/", "oracle/")
    assert not [k for k in without if k.startswith(target_groups)]
    inputs = [k for k in with_truth if not k.startswith(target_groups)]
    assert sorted(inputs) == sorted(without)
    for key in inputs:
        np.testing.assert_array_equal(without[key], with_truth[key], err_msg=key)
    with open_cache(output) as h5:
        assert h5.attrs["targets"] == h5.attrs["pifu_targets"] == index.targets
        assert not any("truth" in k for k in json.loads(h5.attrs["source_checksums"]))


def test_training_on_a_cache_without_targets_is_refused(cached: Path, tmp_path: Path) -> None:
    paths = make_subject(tmp_path, **SUBJECT)
    paths["truth"] = None
    output = tmp_path / "cache" / "p.h5"
    build_cache(subject="s", output=output, params=dict(SMALL), **paths)
    check_training_caches([cached], "train")  # a cache with targets passes
    for train, test in (([output], []), ([cached], [output])):
        with pytest.raises(PipelineError) as info:
            check_training_caches(train, "train", test)
        message = str(info.value)
        assert "cannot train on subject s" in message and str(output) in message
        assert "truth/s/canonical_clothed.ply" in message and "predict_subjects" in message


def test_version_refusal_and_bad_files(cached: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.h5"
    old.write_bytes(cached.read_bytes())
    with h5py.File(old, "a") as h5:
        h5.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(PipelineError) as err:
        open_cache(old)
    message = str(err.value)
    assert str(old) in message and f"version {SCHEMA_VERSION + 1}" in message
    assert f"version {SCHEMA_VERSION}" in message and "snakemake --forcerun cache" in message
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(PipelineError, match=r"junk\.h5"):
        open_cache(junk)
    with pytest.raises(PipelineError, match="does not exist"):
        open_cache(tmp_path / "none.h5")


@pytest.mark.parametrize("mesh", ["canonical_clothed.ply", "act01/clothed.ply"])
def test_open_truth_is_refused_when_scans_must_be_closed(tmp_path: Path, mesh: str) -> None:
    paths = make_subject(tmp_path)
    broken = paths["truth"] / mesh
    loaded = read_ply(broken)
    write_ply(broken, loaded.vertices, loaded.faces[1:])
    output = tmp_path / "cache" / "s.h5"
    with pytest.raises(PipelineError, match=re.escape(str(broken))) as err:
        build_cache(subject="s", output=output, params=dict(SMALL),
                    scans=ScanPolicy(open=False), **paths)
    assert "open boundary edges" in str(err.value)
    assert not output.exists()


def test_truth_with_a_hole_gives_the_closed_twins_targets(tmp_path: Path) -> None:
    """A scan with a hole (data.scans.open, the default) is signed by its winding number:
    the same SDF targets as the closed scan away from the hole."""
    paths = make_subject(tmp_path)
    scan = paths["truth"] / "canonical_clothed.ply"
    loaded = read_ply(scan)
    write_ply(scan, loaded.vertices, loaded.faces[1:])
    output = tmp_path / "cache" / "s.h5"
    build_cache(subject="s", output=output, params=dict(SMALL), **paths)
    opened = datasets(output)
    exact = signed_distance(np.asarray(loaded.vertices), np.asarray(loaded.faces),
                            opened["sdf/points"])
    assert (np.sign(opened["sdf/values"]) == np.sign(exact)).mean() > 0.99
    with h5py.File(output) as h5:
        assert json.loads(h5.attrs["truth_sign"])["closed"] is False


def test_deterministic(cached: Path, tmp_path: Path) -> None:
    again = build(tmp_path, **SUBJECT)
    first, second = datasets(cached), datasets(again)
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name], second[name]), name
    other = build(tmp_path / "seed", params={**SMALL, "seed": 4}, **SUBJECT)
    assert not np.array_equal(datasets(other)["sdf/points"], first["sdf/points"])


KILLED_WRITER = """
import sys, time
from pathlib import Path
import pipeline.cache as cache
from tests.cache_fakes import SMALL, make_subject

def stall(*args, **kwargs):
    Path(sys.argv[2]).touch()
    time.sleep(120)

cache.sample_sdf_points = stall
root = Path(sys.argv[1])
cache.build_cache(subject="s", output=root / "cache" / "s.h5", params=dict(SMALL),
                  **make_subject(root))
"""


def test_killed_writer_leaves_no_file(tmp_path: Path) -> None:
    marker = tmp_path / "sampling"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(marker)],
                            cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer never reached the SDF sampling"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    folder = tmp_path / "cache"
    assert not (folder / "s.h5").exists()
    leftovers = [p.name for p in folder.iterdir()]
    assert leftovers and all(name.startswith(".s.h5.") for name in leftovers)
    build_cache(subject="s", output=folder / "s.h5", params=dict(SMALL),
                **make_subject(tmp_path))
    with open_cache(folder / "s.h5") as h5:
        assert h5["sdf/values"].shape == (3000,)

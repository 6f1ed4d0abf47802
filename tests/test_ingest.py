"""Ingest: every kind of bad image, both policies, min_views, and the manifest format (paths
relative to the data set's folder, ``data_dir``). The layouts themselves: test_layout.py."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.ingest import IngestParams, check_image, ingest_subject
from tests.conftest import make_layout, write_photo

PARAMS = IngestParams(min_views=2)


@pytest.fixture
def subject_dir(tmp_path):
    make_layout(tmp_path, {"s0": {"act00": 3, "act01": 3}})
    return tmp_path / "s0"


def test_manifest_lists_every_view(subject_dir, tmp_path):
    (subject_dir / "act00" / "cameras.json").write_text("{}")
    (subject_dir / "act00" / "notes.txt").write_text("not a view")
    out = tmp_path / "out" / "s0.json"
    manifest = ingest_subject(data_dir=subject_dir.parent, subject="s0", output=out, params=PARAMS)
    assert json.loads(out.read_text()) == manifest
    assert manifest["schema"] == "pixel2isdf.manifest/1"
    assert manifest["data_dir"] == str(tmp_path)  # the data set's folder
    assert manifest["n_views"] == 6 and manifest["n_rejected"] == 0
    view = manifest["actions"]["act00"]["views"]["cam1"]
    assert (view["file"], view["width"], view["height"], view["mode"]) == (
        "s0/act00/cam1.jpg", 128, 96, "RGB")
    assert "mask" not in view  # the default layout has no masks
    assert len(view["sha256"]) == 64
    assert manifest["actions"]["act00"]["cameras"] == "s0/act00/cameras.json"
    assert manifest["actions"]["act01"]["cameras"] is None


def _truncated_jpeg(path):
    data = write_photo(path, 1).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_an_image(path):
    path.write_text("hello, I am text")


def _zero_bytes(path):
    path.write_bytes(b"")


def _tiny(path):
    Image.new("RGB", (8, 8)).save(path)


@pytest.mark.parametrize(
    ("make_bad", "reason"),
    [
        (_zero_bytes, "zero bytes"),
        (_truncated_jpeg, "truncated or corrupt JPEG"),
        (_not_an_image, "not an image"),
        (_tiny, "absurd size 8x8"),
    ],
)
def test_each_bad_image_is_named(subject_dir, tmp_path, make_bad, reason):
    bad = subject_dir / "act01" / "cam2.jpg"
    make_bad(bad)
    info, why = check_image(bad, PARAMS)
    assert info is None and reason in why
    out = tmp_path / "m.json"
    with pytest.raises(PipelineError) as err:
        ingest_subject(data_dir=subject_dir.parent, subject="s0", output=out, params=PARAMS)
    assert f"{bad}: {reason}" in str(err.value)
    assert not out.exists()


def test_huge_image_rejected_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (4000, 3000)).save(path)
    info, why = check_image(path, IngestParams(max_pixels=1_000_000))
    assert info is None and "absurd size 4000x3000" in why


def test_unreadable_file(subject_dir, monkeypatch):
    bad = subject_dir / "act00" / "cam0.jpg"
    real_open = Image.open

    def deny(path, *args, **kwargs):
        if str(path) == str(bad):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", deny)
    _, why = check_image(bad, PARAMS)
    assert why == "unreadable: Permission denied"


def test_fail_lists_every_bad_file(subject_dir, tmp_path):
    _zero_bytes(subject_dir / "act00" / "cam0.jpg")
    _not_an_image(subject_dir / "act01" / "cam1.jpg")
    with pytest.raises(PipelineError) as err:
        ingest_subject(data_dir=subject_dir.parent, subject="s0", output=tmp_path / "m.json",
                       params=PARAMS)
    text = str(err.value)
    assert "2 bad image(s)" in text
    assert "act00/cam0.jpg: zero bytes" in text and "act01/cam1.jpg: not an image" in text


def test_skip_records_and_goes_on(subject_dir, tmp_path):
    _truncated_jpeg(subject_dir / "act00" / "cam0.jpg")
    params = IngestParams(min_views=2, on_bad_image="skip")
    manifest = ingest_subject(data_dir=subject_dir.parent, subject="s0", output=tmp_path / "m.json",
                              params=params)
    act = manifest["actions"]["act00"]
    assert sorted(act["views"]) == ["cam1", "cam2"]
    assert act["rejected"]["cam0"]["file"] == "s0/act00/cam0.jpg"
    assert "truncated" in act["rejected"]["cam0"]["reason"]
    assert manifest["n_rejected"] == 1


def test_too_few_views_fails_clearly(subject_dir, tmp_path):
    _zero_bytes(subject_dir / "act01" / "cam0.jpg")
    _zero_bytes(subject_dir / "act01" / "cam1.jpg")
    params = IngestParams(min_views=2, on_bad_image="skip")
    with pytest.raises(PipelineError, match=r"act01: 1 usable view\(s\) < min_views 2") as info:
        ingest_subject(data_dir=subject_dir.parent, subject="s0", output=tmp_path / "m.json",
                       params=params)
    assert "lower ingest.min_views" in str(info.value)  # the setting to change


def test_duplicate_view_names(subject_dir, tmp_path):
    write_photo(subject_dir / "act00" / "cam0.png", 9)
    params = IngestParams(min_views=2, on_bad_image="skip")
    manifest = ingest_subject(data_dir=subject_dir.parent, subject="s0", output=tmp_path / "m.json",
                              params=params)
    assert "duplicate view name" in manifest["actions"]["act00"]["rejected"]["cam0"]["reason"]


def test_missing_or_empty_subject(tmp_path):
    with pytest.raises(PipelineError, match="does not exist"):
        ingest_subject(data_dir=tmp_path, subject="x", output=tmp_path / "m.json",
                       params=PARAMS)
    (tmp_path / "x" / "act00").mkdir(parents=True)
    with pytest.raises(PipelineError, match=r"matches no file under .*/x"):
        ingest_subject(data_dir=tmp_path, subject="x", output=tmp_path / "m.json",
                       params=PARAMS)


def test_extensions_are_case_insensitive(tmp_path):
    make_layout(tmp_path, {"s0": {"a": 2}}, ext="PNG")
    manifest = ingest_subject(data_dir=tmp_path, subject="s0",
                              output=tmp_path / "m.json", params=PARAMS)
    assert manifest["n_views"] == 2

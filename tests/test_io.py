"""Atomic outputs: a failed or killed writer never leaves a valid-looking file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.errors import PipelineError
from pipeline.io import atomic_directory, atomic_path, read_json, write_json


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json"
        tmp.write_text("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    assert list(target.parent.iterdir()) == [target]


def test_atomic_path_keeps_old_content_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_directory_replaces_whole_folder(tmp_path):
    target = tmp_path / "d"
    (target).mkdir()
    (target / "stale.txt").write_text("x")
    with atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    with pytest.raises(ValueError), atomic_directory(target) as tmp:
        (tmp / "partial.txt").write_text("z")
        raise ValueError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_killed_writer_leaves_no_file(tmp_path):
    target = tmp_path / "out.json"
    script = (
        "import sys, time\n"
        "from pipeline.io import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('{\"partial\": ')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.1)
    assert not target.exists()
    write_json(target, {"a": 1})  # a rerun completes
    assert read_json(target) == {"a": 1}


def test_write_json_refuses_nan_and_read_json_names_file(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"a": float("nan")})
    assert not (tmp_path / "x.json").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(PipelineError, match=r"bad\.json is not valid JSON"):
        read_json(bad)


def test_atomic_files_get_the_umask_mode(tmp_path):
    import os

    from pipeline.io import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644

"""benchmarks/stage_speed.py: its output comparison names what differs between two trees'
outputs, on files made here."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from tests.conftest import load_benchmark


def test_differing_files_names_changed_and_missing_files(tmp_path: Path) -> None:
    stage_speed = load_benchmark("stage_speed")
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "s000").mkdir(parents=True)
        (root / "s000" / "same.txt").write_bytes(b"x")
    (a / "s000" / "changed.bin").write_bytes(b"\x00\x01")
    (b / "s000" / "changed.bin").write_bytes(b"\x00\x02")
    (a / "only_a.txt").write_text("a")
    assert stage_speed.differing_files(a, b) == ["only_a.txt", "s000/changed.bin"]
    assert stage_speed.differing_files(a, a) == []


def test_differing_h5_names_datasets_and_attributes(tmp_path: Path) -> None:
    stage_speed = load_benchmark("stage_speed")
    files = {}
    for name, value, note in (("a", 1.0, "x"), ("b", 1.0, "x"), ("c", 2.0, "y")):
        files[name] = tmp_path / f"{name}.h5"
        with h5py.File(files[name], "w") as h5:
            h5.attrs["note"] = note
            h5.create_dataset("sdf/values", data=np.array([0.5, value], np.float32))
            h5.create_dataset("faces", data=np.arange(6, dtype=np.int32).reshape(2, 3))
    assert stage_speed.differing_h5(files["a"], files["b"]) == []
    assert stage_speed.differing_h5(files["a"], files["c"]) == ["a.h5:/@attrs",
                                                                "a.h5:sdf/values"]


def test_differing_files_compares_reports_without_their_seconds(tmp_path: Path) -> None:
    stage_speed = load_benchmark("stage_speed")
    a, b = tmp_path / "a", tmp_path / "b"
    for root, seconds, psnr in ((a, 1.5, 20.0), (b, 0.7, 20.0)):
        root.mkdir()
        (root / "r.json").write_text(
            f'{{"model": {{"seconds": {seconds}, "held_out": {{"psnr": {psnr}}}}}}}')
    assert stage_speed.differing_files(a, b, timed_json=True) == []
    assert stage_speed.differing_files(a, b) == ["r.json"]
    (b / "r.json").write_text('{"model": {"seconds": 0.7, "held_out": {"psnr": 20.5}}}')
    assert stage_speed.differing_files(a, b, timed_json=True) == ["r.json"]


def test_differing_checkpoints_names_weights_and_optimiser_state(tmp_path: Path) -> None:
    import torch

    stage_speed = load_benchmark("stage_speed")
    model = {"w": torch.ones(2), "b": torch.zeros(1)}
    state = {"state": {0: {"exp_avg": torch.ones(2), "step": torch.tensor(3.0)}},
             "param_groups": [{"lr": 1e-3, "params": [0]}]}
    paths = {}
    for name, w, avg in (("a", 1.0, 1.0), ("b", 1.0, 1.0), ("c", 2.0, 1.0), ("d", 1.0, 0.5)):
        paths[name] = tmp_path / f"{name}.pt"
        optimizer = {**state, "state": {0: {**state["state"][0],
                                            "exp_avg": torch.full((2,), avg)}}}
        torch.save({"model": {**model, "w": torch.full((2,), w)}, "optimizer": optimizer},
                   paths[name])
    assert stage_speed.differing_checkpoints(paths["a"], paths["b"]) == []
    assert stage_speed.differing_checkpoints(paths["a"], paths["c"]) == ["model:w"]
    assert stage_speed.differing_checkpoints(paths["a"], paths["d"]) == ["optimizer"]

"""PIFu stages (pipeline/train.py run_pifu, pipeline/pifu.py): both models train, reconstruct
posed meshes in the camera frame, are scored and tabulated; wrong inputs are refused."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import validate_config
from pipeline.errors import PipelineError
from pipeline.meshio import read_ply
from pipeline.pifu import REPORT_TABLE2, evaluate, reconstruct, table
from pipeline.report import clip
from pipeline.train import run_pifu
from pipeline.training.checkpoint import load_checkpoint
from pipeline.training.given import check_given_checkpoints
from tests.cache_fakes import CLOTHED_R, build, offset

TINY = {"enabled": True,
        "train": {"n_points": 64,
                  "model": {"input_size": 32, "channels": 8, "n_stacks": 2, "hg_depth": 1,
                            "mlp_dims": [16, 8]},
                  "run": {"steps": 3, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 2,
                          "log_every": 1, "val_every": 3, "image_every": 3, "val_batches": 1,
                          "device": "cpu", "threads": 1}},
        "reconstruct": {"views": ["cam0"], "resolution": 24, "init_resolution": 6,
                        "padding": 0.2, "device": "cpu", "threads": 1},
        "evaluate": {"points": 200, "samples": 500, "device": "cpu", "threads": 1}}


NAMES = {"pifu": "PIFu", "temporal_pifu": "Temporal PIFu"}
UNIT_SCORES = ("iou", "mse", "precision", "recall", "accuracy")  # each in [0, 1]


def check_computed_scores(reports: dict[str, dict], table_csv: Path) -> None:
    """Each model's scores (its evaluation JSON, ``reports[model]``) are the run's: finite,
    within their range, consistent with the per-item results, and what the table's
    "(ours)" column shows; none is the report's reference number the table prints beside
    it (those are constants of pipeline/pifu.py)."""
    rows = {row[0]: row for row in csv.reader(table_csv.open())}
    header = rows.pop("metric")
    for model, report in reports.items():
        column = header.index(f"{NAMES[model]} (ours)")
        scores, items = report["table2"], report["items"]
        assert scores["items"] == len(items) > 0 and scores["points"] > 0
        for key in UNIT_SCORES:
            value = scores[key]
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (model, key, value)
            assert rows[key][column] == f"{value:.4f}", (model, key)
            reference = REPORT_TABLE2[model].get(key)
            assert reference is None or f"{value:.4f}" != f"{reference:.4f}", (model, key)
        # every item has the same number of points: the accuracy is the items' mean
        assert scores["accuracy"] == pytest.approx(np.mean([i["accuracy"] for i in items]))
        surface = report["surface"]
        scored = [r for r in surface["rows"] if r["surface"]]
        assert len(surface["rows"]) == surface["meshes"] > 0
        assert surface["no_surface"] == surface["meshes"] - len(scored)
        for key, label in (("chamfer_cm", "Chamfer (cm), posed"), ("p2s_cm", "P2S (cm), posed")):
            for row in scored:
                assert math.isfinite(row[key]) and row[key] >= 0.0, (model, key, row)
            mean = surface[key]
            if scored:
                assert mean == pytest.approx(np.mean([r[key] for r in scored]))
                assert rows[label][column] == f"{mean:.2f}"
            else:
                assert mean is None and rows[label][column] == "—"


def pifu_params(part: str) -> dict:
    """Validated ``pifu.<part>`` stage parameters (with the seed) of the tiny config."""
    config = validate_config({"seed": 3, "pifu": TINY})
    return {"seed": config["seed"], **config["pifu"][part]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three fake subjects, each a clip of 3 frames × 2 views: s0 trains, s2 validates
    (keep: best), s1 is the test subject (``caches[1]``), never read by training; both models
    trained 3 steps."""
    root = tmp_path_factory.mktemp("pifu")
    caches = [build(root / f"s{i}", output=root / "cache" / f"s{i}.h5", seed=i, n_actions=3,
                    clip="walk") for i in range(3)]
    truth = root / "truth_root"
    truth.mkdir()
    (truth / "s").symlink_to(root / "s1" / "truth")  # the test cache's subject is "s"
    out = {"caches": caches, "truth": truth, "root": root}
    for model in ("pifu", "temporal_pifu"):
        ckpt = root / model / "checkpoint.pt"
        run_pifu(model=model, train_caches=caches[:1], val_caches=caches[2:],
                 held_out=[caches[1].stem], output=ckpt, summary=ckpt.parent / "train.json",
                 params=pifu_params("train"))
        out[model] = ckpt
    return out


@pytest.mark.parametrize("model", ["pifu", "temporal_pifu"])
def test_both_models_train_and_validate(trained, model: str) -> None:
    data = load_checkpoint(trained[model], kind=model)
    assert data["step"] == 3
    assert json.loads(data["model_config"])["model"]["temporal"] is (model == "temporal_pifu")
    summary = json.loads((trained[model].parent / "train.json").read_text())
    assert set(summary["final_validation"]) >= {
        "val/iou", "val/mse", "val/precision", "val/recall", "val/accuracy"}
    assert (summary["train_subjects"], summary["val_subjects"],
            summary["held_out_subjects"]) == (["s0"], ["s2"], ["s1"])
    assert summary["selected"]["keep"] == "best" and summary["selected"]["metric"] == "val/iou"


def test_a_checkpoint_of_the_other_model_is_refused(trained, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="holds a 'temporal_pifu' model, expected 'pifu'"):
        reconstruct(model="pifu", checkpoint=trained["temporal_pifu"],
                    cache=trained["caches"][1], output=tmp_path / "r",
                    params=pifu_params("reconstruct"))
    assert not (tmp_path / "r").exists()


def test_checkpoints_given_by_path_are_checked(trained) -> None:
    """pifu.checkpoints: the right kind and the config's model settings pass; another
    model's file, or other sizes, are refused naming the file and each differing key."""
    given = {"pifu": str(trained["pifu"]), "temporal_pifu": str(trained["temporal_pifu"])}
    check_given_checkpoints(validate_config({"pifu": {**TINY, "checkpoints": given}}))
    swapped = {"pifu": str(trained["temporal_pifu"])}
    with pytest.raises(PipelineError, match="holds a 'temporal_pifu' model, expected 'pifu'"):
        check_given_checkpoints(validate_config({"pifu": {**TINY, "checkpoints": swapped}}))
    wider = {**TINY, "checkpoints": {"pifu": str(trained["pifu"])},
             "train": {**TINY["train"], "model": {**TINY["train"]["model"], "channels": 12}}}
    with pytest.raises(PipelineError, match=r"other pifu\.train\.model settings \(channels: "
                                            r"checkpoint 8, config 12\).*pifu\.checkpoints\.pifu"):
        check_given_checkpoints(validate_config({"pifu": wider}))


def _recon(trained, model: str, out: Path) -> dict:
    return reconstruct(model=model, checkpoint=trained[model], cache=trained["caches"][1],
                       output=out, params=pifu_params("reconstruct"))


@pytest.mark.parametrize("model", ["pifu", "temporal_pifu"])
def test_posed_meshes_per_frame_in_the_camera_frame(trained, model: str,
                                                    tmp_path: Path) -> None:
    summary = _recon(trained, model, tmp_path / "r")
    meshes = summary["meshes"]
    assert [(m["action"], m["view"]) for m in meshes] == [
        (f"walk_f0{a}", "cam0") for a in range(3)]
    written = json.loads((tmp_path / "r" / "recon.json").read_text())
    assert written["meshes"] == json.loads(json.dumps(meshes))
    for m in meshes:
        assert m["queries"] < m["dense_queries"]
        to_world = np.asarray(m["camera_to_world"])
        assert np.allclose(to_world[3], [0, 0, 0, 1])
        assert np.allclose(to_world[:3, :3] @ to_world[:3, :3].T, np.eye(3), atol=1e-6)
        if m["surface"]:  # within the grid box around the posed body (radius 0.3 + 0.2)
            verts = np.asarray(read_ply(tmp_path / "r" / m["file"]).vertices)
            world = verts @ to_world[:3, :3].T + to_world[:3, 3]
            a = int(m["action"][-1])
            assert np.abs(world - offset(a)).max() <= 0.3 + 0.2 + 1e-3


def test_evaluation_and_table(trained, tmp_path: Path) -> None:
    reports = []
    for model in ("pifu", "temporal_pifu"):
        recon = tmp_path / model
        _recon(trained, model, recon)
        out = tmp_path / f"{model}.json"
        result = evaluate(model=model, checkpoint=trained[model],
                          caches=trained["caches"][1:2], recons=[recon],
                          truth=trained["truth"], output=out, params=pifu_params("evaluate"))
        scores = result["table2"]
        assert scores["items"] == 6 and scores["points"] == 6 * 200
        assert result["surface"]["meshes"] == 3
        assert all(i["motion_cm"] == pytest.approx(100 * np.linalg.norm(offset(1) - offset(0)))
                   for i in result["items"])  # the fake's frames move by offset(a)
        reports.append(out)
    table(reports=reports, csv_output=tmp_path / "t.csv", markdown=tmp_path / "t.md",
          html_output=tmp_path / "t.html")
    rows = list(csv.reader((tmp_path / "t.csv").open()))
    assert rows[0] == ["metric", "PIFu (report)", "Temporal PIFu (report)", "PIFu (ours)",
                       "Temporal PIFu (ours)"]
    assert rows[1][:3] == ["iou", "0.8118", "0.8599"]  # the report's, printed beside ours
    check_computed_scores({m: json.loads((tmp_path / f"{m}.json").read_text())
                           for m in ("pifu", "temporal_pifu")}, tmp_path / "t.csv")
    assert "## Accuracy against the body's motion" in (tmp_path / "t.md").read_text()
    assert "<table>" in (tmp_path / "t.html").read_text()
    clip(recons=[tmp_path / "pifu", tmp_path / "temporal_pifu"], truth=trained["truth"] / "s",
         output=tmp_path / "clip.png", params={"clip_frames": 3})
    image = Image.open(tmp_path / "clip.png")
    assert image.width > image.height  # 3 frames across, 3 rows (2 models + truth)


def test_evaluation_of_a_perfect_occupancy_scores_one(trained, tmp_path: Path,
                                                      monkeypatch) -> None:
    """The Table 2 bookkeeping, with the network replaced by the exact occupancy."""
    from pipeline import pifu as stage

    def exact(net, caches, params, device):
        net.forward = lambda batch, points: (torch.linalg.norm(
            points - batch["body_centre"][:, None], dim=-1) < CLOTHED_R).double()
        return original(net, caches, params, device)

    original = stage.held_out_scores
    monkeypatch.setattr(stage, "held_out_scores", exact)
    recon = tmp_path / "r"
    _recon(trained, "pifu", recon)
    result = evaluate(model="pifu", checkpoint=trained["pifu"], caches=trained["caches"][1:2],
                      recons=[recon], truth=trained["truth"], output=tmp_path / "e.json",
                      params=pifu_params("evaluate"))
    assert result["table2"]["accuracy"] > 0.97 and result["table2"]["iou"] > 0.95

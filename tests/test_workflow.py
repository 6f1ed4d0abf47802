"""End-to-end Snakemake runs of the workflow on a tiny layout made by the test."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pygltflib
import pytest

from pipeline.meshio import read_ply
from tests.conftest import run_snakemake, tiny_config, write_config
from tests.test_pifu import check_computed_scores

pytestmark = pytest.mark.slow


def _planned_jobs(result) -> dict[str, int]:
    """Rule → job count from the 'Job stats' table of a dry run."""
    text = result.stdout + result.stderr
    table = text.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
            if m[1] not in ("total", "count")}


def test_run_forcerun_and_param_change(tiny_layout):
    write_config(tiny_layout, tiny_config())
    run_snakemake(tiny_layout, "--cores", "2")
    manifest = tiny_layout / "results" / "tiny" / "manifest" / "s000.json"
    data = json.loads(manifest.read_text())
    assert data["subject"] == "s000" and data["n_views"] == 6
    assert (tiny_layout / "logs" / "tiny" / "ingest" / "s001.log").exists()
    assert (tiny_layout / "results" / "tiny" / "benchmarks" / "ingest" / "s001.tsv").exists()

    # Nothing to do on a second run.
    result = run_snakemake(tiny_layout, "--cores", "1")
    assert "Nothing to be done" in result.stdout + result.stderr

    # --forcerun reruns the rule (and, later, what depends on it).
    before = manifest.stat().st_mtime_ns
    result = run_snakemake(tiny_layout, "--cores", "2", "--forcerun", "ingest")
    assert _planned_jobs(result) == {"ingest": 2, "all": 1}
    assert manifest.stat().st_mtime_ns != before

    # Changing one stage's parameters reruns that stage only (params rerun trigger).
    write_config(tiny_layout, tiny_config(ingest={"min_views": 2, "min_side": 32}))
    result = run_snakemake(tiny_layout, "--cores", "1", "-n")
    assert _planned_jobs(result) == {"ingest": 2, "all": 1}
    assert "Params have changed since last execution" in result.stdout + result.stderr


def test_corrupt_image_fails_the_rule_and_names_the_file(tiny_layout):
    bad = tiny_layout / "data" / "tiny" / "s001" / "act01" / "cam1.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    write_config(tiny_layout, tiny_config())
    result = run_snakemake(tiny_layout, "--cores", "2", check=False)
    assert result.returncode != 0
    log = (tiny_layout / "logs" / "tiny" / "ingest" / "s001.log").read_text()
    assert f"{bad.relative_to(tiny_layout)}: truncated or corrupt JPEG" in log
    # The good subject went through (keep-going); the bad one left no manifest.
    assert (tiny_layout / "results" / "tiny" / "manifest" / "s000.json").exists()
    assert not (tiny_layout / "results" / "tiny" / "manifest" / "s001.json").exists()

    # With on_bad_image: skip the same data goes through and the manifest records the reason.
    write_config(tiny_layout, tiny_config(ingest={"min_views": 2, "on_bad_image": "skip"}))
    run_snakemake(tiny_layout, "--cores", "2")
    data = json.loads((tiny_layout / "results" / "tiny" / "manifest" / "s001.json").read_text())
    assert "truncated" in data["actions"]["act01"]["rejected"]["cam1"]["reason"]


def test_lint_is_clean(tiny_layout):
    write_config(tiny_layout, tiny_config())
    result = run_snakemake(tiny_layout, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _synthetic_config(**ingest):
    """One synthetic subject through every stage, with the oracle backends (fast, exact)."""
    return {
        "seed": 11,
        "detect": {"backend": "oracle", "crop_size": 128},
        "mask": {"backend": "oracle", "matting": "none"},
        "keypoints": {"backend": "oracle"},
        "fit": {"iterations": {"global": 5, "body": 10, "silhouette": 5}, "min_views": 1,
                "max_view_error_px": 1000.0, "min_view_inside": 0.0, "threads": 1},
        "cache": {"n_sdf_points": 2000, "n_surface_points": 500, "n_pifu_points": 500,
                  "threads": 1},
        "data": {"root": "data", "dataset": "syn", "subjects": ["s000"], "test_subjects": []},
        "synthesize": {"enabled": True, "n_actions": 1, "n_views": 2, "width": 128,
                       "height": 96, "voxel_size": 0.02},
        "ingest": {"min_views": 2, **ingest},
        "train_normal": {"model": {"ngf": 4, "n_downsample": 2, "n_blocks": 1, "input_size": 32},
                         "run": TINY_RUN},
        "train": {"model": {"input": "normal", "input_size": 64, "feature_channels": 4,
                            "geometry_width": 0.125, "fusion_hidden": 8, "latent_dim": 4,
                            "volume_resolution": 32, "diffusion_width": 0.25,
                            "head_hidden": 16, "head_layers": 2, "head_skip": None,
                            "n_freqs": 2},
                  "n_views": 2, "n_points": 64, "run": {**TINY_RUN, "processes": 2}},
        "reconstruct": {"subjects": "all", "resolution": 32, "init_resolution": 8,
                        "threads": 1},
        "evaluate": {"n_samples": 2000, "n_iou": 2000, "mvp_samples": 1000, "threads": 1},
        "report": {"size": 64},
    }


TINY_RUN = {"steps": 2, "batch_size": 2, "lr": 0.001, "device": "cpu", "threads": 1,
            "checkpoint_every": 1, "log_every": 1, "val_every": 2, "image_every": 2,
            "keep": "last"}
"""keep: last, as these configs have no validation subject (the Snakefile refuses keep: best
without one); test_pifu_branch_end_to_end has one and keeps PIFu's best step."""


def test_synthetic_default_chain_and_rerun_scope(tmp_path):
    write_config(tmp_path, _synthetic_config())
    run_snakemake(tmp_path, "--cores", "2")
    manifest = json.loads((tmp_path / "results/syn/manifest/s000.json").read_text())
    assert manifest["n_views"] == 2
    assert json.loads((tmp_path / "results/syn/synthetic_checks/s000.json").read_text())["passed"]
    assert (tmp_path / "data/syn/truth/s000/contact_sheet.png").exists()
    assert (tmp_path / "logs/syn/synthesize/s000.log").exists()
    crop = json.loads((tmp_path / "results/syn/crop/s000/act00/crop.json").read_text())
    assert crop["oracle"] is True and sorted(crop["views"]) == ["cam0", "cam1"]
    keypoints = json.loads((tmp_path / "results/syn/keypoints/s000/act00.json").read_text())
    assert keypoints["views"]["cam1"]["status"] == "ok"
    assert (tmp_path / "results/syn/overlay/s000/act00.png").exists()
    with np.load(tmp_path / "results/syn/fit/s000.npz", allow_pickle=False) as fit:
        assert fit["posed_vertices"].shape[0] == 1 and list(fit["views"][0]) == ["cam0", "cam1"]
    assert (tmp_path / "results/syn/fit/s000/act00.png").exists()
    assert (tmp_path / "logs/syn/fit/s000.log").exists()
    with h5py.File(tmp_path / "results/syn/cache/s000.h5", "r") as cache:
        assert cache["sdf/points"].shape == (2000, 3)
    for model, processes in (("normal_net", 1), ("pixel2isdf", 2)):
        summary = json.loads((tmp_path / f"results/syn/train/{model}/train.json").read_text())
        assert summary["steps"] == 2 and summary["train_subjects"] == ["s000"]
        assert summary["world_size"] == processes  # train.run.processes: 2 → torchrun, gloo
        assert (tmp_path / f"results/syn/train/{model}/checkpoint.pt").exists()
    assert "100%" in (tmp_path / "logs/syn/train.log").read_text()  # the progress bar
    recon = json.loads((tmp_path / "results/syn/recon/pixel2isdf/s000.json").read_text())
    assert recon["split"] == "train" and recon["resolution"] == 32
    assert (tmp_path / "results/syn/recon/pixel2isdf/s000.ply").exists()
    # After the reconstruction, one job a subject runs the five stages that read it.
    assess_log = (tmp_path / "logs/syn/assess/pixel2isdf/s000.log").read_text()
    assert re.search(r"evaluate [0-9.]+ s, render [0-9.]+ s, selfcheck [0-9.]+ s, "
                     r"colour [0-9.]+ s, export [0-9.]+ s", assess_log)
    evaluation = json.loads((tmp_path / "results/syn/eval/pixel2isdf/s000.json").read_text())
    assert set(evaluation["metrics"]) == {"model", "fitted_body", "truth_body"}
    assert evaluation["metrics"]["fitted_body"]["chamfer_cm"] > 0
    summary_md = (tmp_path / "results/syn/eval/pixel2isdf/summary.md").read_text()
    assert "## train subjects: mean over 1 (s000)" in summary_md
    for figure in ("render/pixel2isdf/s000.png", "training_curves.png"):
        assert (tmp_path / "results/syn/report" / figure).stat().st_size > 0
    avatar = pygltflib.GLTF2().load(str(tmp_path / "results/syn/recon/pixel2isdf/s000.glb"))
    assert len(avatar.skins[0].joints) == len(avatar.nodes) - 2  # the bones, root, mesh
    colour = json.loads((tmp_path / "results/syn/eval/pixel2isdf/s000.colour.json").read_text())
    for mesh in ("model", "fitted_body"):
        assert colour[mesh]["held_out"]["views"] == 2 and colour[mesh]["held_out"]["psnr"] > 0
        assert colour[mesh]["truth_ciede2000"]["p95"] >= colour[mesh]["truth_ciede2000"]["mean"]
    coloured = read_ply(tmp_path / "results/syn/recon/pixel2isdf/coloured/s000.ply")
    assert coloured.visual.kind == "vertex"

    # The HTML report gathers the metrics, renders, curves and overlays.
    run_snakemake(tmp_path, "--report", "report.html")
    page = (tmp_path / "report.html").read_text()
    for item in ("summary.html", "metrics.csv", "training_curves.png", "s000.png", "act00.png"):
        assert item in page

    # A mask parameter changes: the subject's image stages rerun (one job), nothing upstream.
    config = _synthetic_config()
    config["mask"]["band"] = 3
    write_config(tmp_path, config)
    assert _planned_jobs(run_snakemake(tmp_path, "--cores", "1", "-n")) == {
        "preprocess": 1, "fit": 1, "cache": 1, "train_normal": 1, "train": 1,
        "reconstruct": 1, "assess": 1, "evaluate_summary": 1, "training_curves": 1,
        "all": 1}

    # A training parameter changes: only Pixel2ISDF retrains.
    config = _synthetic_config()
    config["train"]["n_points"] = 32
    write_config(tmp_path, config)
    assert _planned_jobs(run_snakemake(tmp_path, "--cores", "1", "-n")) == {
        "train": 1, "reconstruct": 1, "assess": 1, "evaluate_summary": 1,
        "training_curves": 1, "all": 1}

    # An evaluation parameter changes: the subject's assessment (one job: scores, render,
    # self-check, colour, avatar) and the summary; nothing upstream.
    config = _synthetic_config()
    config["evaluate"]["n_samples"] = 1500
    write_config(tmp_path, config)
    assert _planned_jobs(run_snakemake(tmp_path, "--cores", "1", "-n")) == {
        "assess": 1, "evaluate_summary": 1, "all": 1}

    # A checkpoint given by path (trained elsewhere): no training job, the meshes redone.
    given = tmp_path / "given.pt"
    given.write_bytes((tmp_path / "results/syn/train/pixel2isdf/checkpoint.pt").read_bytes())
    config = _synthetic_config()
    config["train"]["checkpoint"] = str(given)
    write_config(tmp_path, config)
    planned = _planned_jobs(run_snakemake(tmp_path, "--cores", "1", "-n"))
    assert "train" not in planned and "train_normal" not in planned
    assert planned["reconstruct"] == 1 and "training_curves" not in planned
    config["train"]["model"] = {**config["train"]["model"], "latent_dim": 3}
    write_config(tmp_path, config)
    refused = run_snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert refused.returncode != 0 and "latent_dim: checkpoint" in refused.stdout + refused.stderr

    # The same subject as one without a scan (data.predict_subjects), with the checkpoint
    # given: its cache is rebuilt without targets, its mesh is checked without truth and the
    # summary lists it as "no truth"; nothing trains and nothing reads its truth.
    config = _synthetic_config()
    config["train"]["checkpoint"] = str(given)
    config["data"]["predict_subjects"] = ["s000"]
    write_config(tmp_path, config)
    assert _planned_jobs(run_snakemake(tmp_path, "--cores", "1", "-n")) == {
        "cache": 1, "reconstruct": 1, "assess_untruthed": 1, "evaluate_summary": 1, "all": 1}
    run_snakemake(tmp_path, "--cores", "2")
    with h5py.File(tmp_path / "results/syn/cache/s000.h5", "r") as cache:
        assert "sdf" not in cache and "predict_subjects" in cache.attrs["targets"]
    recon = json.loads((tmp_path / "results/syn/recon/pixel2isdf/s000.json").read_text())
    assert recon["split"] == "predict"
    colour = json.loads((tmp_path / "results/syn/eval/pixel2isdf/s000.colour.json").read_text())
    assert colour["truth_colours"] == "absent: no truth" and colour["model"]["seen"] > 0
    summary_md = (tmp_path / "results/syn/eval/pixel2isdf/summary.md").read_text()
    assert "| s000 | predict |" in summary_md and "no truth |" in summary_md
    assert "## train subjects" not in summary_md
    config["train"]["checkpoint"] = None
    write_config(tmp_path, config)
    refused = run_snakemake(tmp_path, "--cores", "1", "-n", check=False)
    assert refused.returncode != 0 and "data.predict_subjects" in refused.stdout + refused.stderr

    # An ingest parameter changes: ingest and what follows rerun, the synthesis does not.
    write_config(tmp_path, _synthetic_config(min_side=48))
    planned = _planned_jobs(run_snakemake(tmp_path, "--cores", "1", "-n"))
    assert "synthesize" not in planned and planned["ingest"] == 1

    # A synthesis parameter changes: synthesis and everything downstream rerun.
    config = _synthetic_config()
    config["synthesize"]["jpeg_quality"] = 80
    write_config(tmp_path, config)
    # (A dry run stops planning at the ingest checkpoint: what follows it appears once it ran.)
    planned = _planned_jobs(run_snakemake(tmp_path, "--cores", "1", "-n"))
    assert {"synthesize", "ingest"} <= set(planned)


def test_every_subject_is_synthesized_and_ingested_at_once(tmp_path):
    """A fresh run plans every subject's synthesis, ingest and preprocessing together (so
    they run in parallel): no rule waits on a manifest to plan."""
    config = _synthetic_config()
    config["data"]["subjects"] = ["s000", "s001", "s002"]
    write_config(tmp_path, config)
    planned = _planned_jobs(run_snakemake(tmp_path, "--cores", "1", "-n"))
    assert planned["synthesize"] == 3 and planned["ingest"] == 3
    assert planned["preprocess"] == 3 and planned["fit"] == 3


def test_pifu_branch_end_to_end(tmp_path):
    """presets/temporal.yaml's shape, tiny: three synthetic subjects, each a clip of 3 frames
    (s000 trains, s002 validates and chooses the step kept, s001 is the test subject); both
    PIFu models train, reconstruct the test frames and land in one table with the scores
    this run computed."""
    config = _synthetic_config()
    config["data"].update({"subjects": ["s000", "s001", "s002"], "val_subjects": ["s002"],
                           "test_subjects": ["s001"]})
    config["synthesize"].update({"n_frames": 3})
    config["stop_after"] = "cache"
    config["pifu"] = {"enabled": True,
                      "train": {"n_points": 64, "run": {**TINY_RUN, "keep": "best"},
                                "model": {"input_size": 32, "channels": 8, "n_stacks": 2,
                                          "hg_depth": 1, "mlp_dims": [16]}},
                      "reconstruct": {"views": ["cam0"], "resolution": 16,
                                      "init_resolution": 4, "threads": 1, "device": "cpu"},
                      "evaluate": {"points": 100, "samples": 300, "threads": 1,
                                   "device": "cpu"}}
    write_config(tmp_path, config)
    run_snakemake(tmp_path, "--cores", "2")
    results = tmp_path / "results/syn"
    reports = {}
    for model in ("pifu", "temporal_pifu"):
        trained = json.loads((results / f"train/{model}/train.json").read_text())
        assert (trained["train_subjects"], trained["val_subjects"],
                trained["held_out_subjects"]) == (["s000"], ["s002"], ["s001"])
        assert trained["selected"]["keep"] == "best"
        assert trained["selected"]["metric"] == "val/iou"
        recon = json.loads((results / f"recon/{model}/s001/recon.json").read_text())
        assert [m["action"] for m in recon["meshes"]] == [f"act00_f0{f}" for f in range(3)]
        reports[model] = json.loads((results / f"eval/{model}/pifu.json").read_text())
        assert reports[model]["test_subjects"] == ["s001"]
        assert reports[model]["table2"]["items"] == 3 * 2  # 3 frames × 2 views of s001
    # The table's "(ours)" columns: the scores above, each in its range, not the report's.
    check_computed_scores(reports, results / "eval/pifu/table2.csv")
    table = (results / "eval/pifu/table2.md").read_text()
    assert f"| iou | 0.8118 | 0.8599 | {reports['pifu']['table2']['iou']:.4f} |" in table
    assert (results / "report/render/pifu/s001.png").stat().st_size > 0
    assert not (results / "train/pixel2isdf").exists()  # stop_after: cache

    # Both models given by path (pifu.checkpoints): no training job, the meshes redone.
    given = {}
    for model in ("pifu", "temporal_pifu"):
        given[model] = str(tmp_path / f"{model}_given.pt")
        (tmp_path / f"{model}_given.pt").write_bytes(
            (results / f"train/{model}/checkpoint.pt").read_bytes())
    config["pifu"]["checkpoints"] = given
    write_config(tmp_path, config)
    planned = _planned_jobs(run_snakemake(tmp_path, "--cores", "1", "-n"))
    assert "train_pifu" not in planned and planned["reconstruct_pifu"] == 2


def test_ablation_and_views_study_share_the_main_stages(tmp_path):
    """Both experiments on the tiny chain: after the main run, they plan only their own jobs
    (no fit, cache or normal network of the main run again), and each writes its table."""
    config = _synthetic_config()
    config["data"].update({"subjects": ["s000", "s001"], "test_subjects": ["s001"]})
    config["train"]["run"] = TINY_RUN
    config["ablation"] = {"seeds": [1], "steps": 2}
    config["views_study"] = {"counts": [1, None]}
    write_config(tmp_path, config)
    run_snakemake(tmp_path, "--cores", "2")
    planned = _planned_jobs(run_snakemake(tmp_path, "--cores", "1", "-n", "ablation",
                                          "views_study"))
    assert planned == {
        "fit_keypoints_only": 2, "oracle_fit": 2, "cache_ablation": 4,
        "train_normal_unmasked": 1, "train_ablation": 7, "reconstruct_ablation": 7,
        "evaluate": 7 + 4, "ablation_table": 1, "ablation": 1, "reconstruct_views": 4,
        "views_table": 1, "views_study": 1}
    run_snakemake(tmp_path, "--cores", "2", "ablation", "views_study")
    results = tmp_path / "results/syn"
    ablation = (results / "ablation/ablation.md").read_text()
    for label in ("full model", "w/o mask", "w/o normal map", "w/o fit refinement",
                  "sphere prior (the report's initialisation)", "oracle: truth body",
                  "oracle: truth normal maps"):
        assert f"| {label} |" in ablation
    assert "One seed" in ablation and "2 training steps" in ablation
    train = json.loads((results / "ablation/train/no_mask/seed1/train.json").read_text())
    assert train["steps"] == 2
    with np.load(results / "ablation/fit/keypoints_only/s000.npz") as fit:
        assert fit["posed_vertices"].shape[0] == 1
    views = (results / "views_study/views.md").read_text()
    assert "| 1 |" in views and "| all |" in views
    one = json.loads((results / "recon/views/one_action-1/s001.json").read_text())
    assert one["n_views"] == 1 and one["view_selection"] == "one_action"
    run_snakemake(tmp_path, "--report", "report.html", "all", "ablation", "views_study")
    page = (tmp_path / "report.html").read_text()
    assert "ablation.html" in page and "views.html" in page

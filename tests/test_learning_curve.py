"""The learning curve and the shifted test set: synthesize populations, the curve's
training jobs (nested subsets, scaled budgets, no test cache) and its table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import curve_reports, parse_stage_params, validate_config
from pipeline.errors import PipelineError
from pipeline.learning_curve import parse_curve_model, power_law, table
from pipeline.synthesize import clothing
from pipeline.synthesize.population import IN_DISTRIBUTION, population_of, subject_params
from tests.conftest import tiny_config, write_config
from tests.test_splits import _cache, _dry_run, _options, ingested  # noqa: F401

SHIFTED = {"subjects": ["x0", "x1", "x2"], "seed": 99, "bottoms": ["trousers", "dress"],
           "width": 1280, "camera": {"elevation_deg": 20.0},
           "phenotype": {"age": [0.7, 1.0]}, "outfit": {"top_thickness": [0.02, 0.04]}}


def _config(**populations) -> dict:
    return validate_config({
        "seed": 5, "data": {"subjects": ["s0", "s1", "x0", "x1", "x2"], "val_subjects": [],
                            "test_subjects": []},
        "synthesize": {"populations": populations}})


# --- populations ----------------------------------------------------------------------------


def test_a_subject_outside_every_population_keeps_the_section() -> None:
    config = _config(shifted=SHIFTED)
    params = subject_params(config, "s0")
    section = {k: v for k, v in config["synthesize"].items() if k != "populations"}
    assert params == {"seed": 5, **section}
    assert population_of(config, "s0") == IN_DISTRIBUTION
    parse_stage_params(json.dumps(params), "synthesize")  # what the stage accepts


def test_a_population_overrides_seed_sizes_camera_phenotype_and_outfit() -> None:
    config = _config(shifted=SHIFTED)
    base = config["synthesize"]
    params = subject_params(config, "x1")
    assert population_of(config, "x1") == "shifted"
    assert params["seed"] == 99 and params["width"] == 1280
    assert params["height"] == base["height"]  # not overridden
    assert params["camera"]["elevation_deg"] == 20.0
    assert params["camera"]["distance"] == base["camera"]["distance"]  # merged, not replaced
    assert params["phenotype"]["age"] == [0.7, 1.0]
    assert params["phenotype"]["weight"] == base["phenotype"]["weight"]
    assert params["outfit"]["top_thickness"] == [0.02, 0.04]
    assert [subject_params(config, s)["outfit"]["bottom"] for s in ("x0", "x1", "x2")] == [
        "trousers", "dress", "trousers"]  # in turn
    assert "populations" not in params
    parse_stage_params(json.dumps(params), "synthesize")


@pytest.mark.parametrize("populations, message", [
    ({"a": {"subjects": ["x0", "zz"]}}, "synthesize.populations.a.subjects: ['zz'] not in"),
    ({"a": {"subjects": ["x0"]}, "b": {"subjects": ["x1", "x0"]}},
     "x0 is in both synthesize.populations.a and .b"),
    ({"a": {"subjects": ["x0"], "camera": {"zoom": 2}}}, "synthesize.populations.a gives"),
    ({"a": {"subjects": ["x0"], "phenotype": {"age": [0.5]}}}, "synthesize.populations.a"),
])
def test_bad_populations_are_refused(populations: dict, message: str) -> None:
    with pytest.raises(PipelineError, match="populations") as info:
        _config(**populations)
    assert message in str(info.value)


def test_an_imposed_bottom_leaves_the_rest_of_the_outfit_unchanged() -> None:
    drawn = clothing.sample_outfit(np.random.default_rng(3), skirt_fraction=0.35)
    other = "dress" if drawn.bottom != "dress" else "trousers"
    imposed = clothing.sample_outfit(np.random.default_rng(3), skirt_fraction=0.35,
                                     bottom=other)
    assert imposed.bottom == other
    assert imposed.sleeves == drawn.sleeves and imposed.hair == drawn.hair
    assert imposed.top_thickness == drawn.top_thickness
    loose = clothing.sample_outfit(np.random.default_rng(3), top_thickness=(0.03, 0.04))
    assert 0.03 <= loose.top_thickness <= 0.04
    with pytest.raises(ValueError, match="outfit bottom='kilt'"):
        clothing.sample_outfit(np.random.default_rng(3), bottom="kilt")


# --- the curve's jobs -------------------------------------------------------------------------

SUBJECTS = ["s000", "s001", "s002", "s003", "s004", "s005"]


@pytest.mark.slow
def test_curve_points_train_on_nested_subsets_with_scaled_budgets(ingested: Path) -> None:  # noqa: F811
    write_config(ingested, tiny_config(
        stop_after="evaluate",
        data={"subjects": SUBJECTS, "val_subjects": ["s001"], "test_subjects": ["s003"]},
        learning_curve={"sizes": [1, 3], "seeds": [4], "train_steps_per_subject": 7,
                        "train_normal_steps_per_subject": 2}))
    for size, train in ((1, ["s000"]), (3, ["s000", "s002", "s004"])):
        jobs, log = _dry_run(ingested, f"results/tiny/curve/n{size}/seed4/checkpoint.pt")
        for rule, steps in (("train_curve", 7 * size), ("train_normal_curve", 2 * size)):
            assert rule in jobs, log
            options = _options(jobs[rule]["shell"])
            assert options["--train-caches"] == [_cache(s) for s in train]
            assert options["--val-caches"] == [_cache("s001")]
            assert options["--held-out"] == ["s003"]
            stage = json.loads(options["--params"][0])
            assert stage["run"]["steps"] == steps
        assert json.loads(_options(jobs["train_curve"]["shell"])["--params"][0])["seed"] == 4
        assert f"curve/n{size}/normal_net/checkpoint.pt" in jobs["train_curve"]["shell"]


@pytest.mark.slow
def test_a_curve_larger_than_the_training_set_is_refused_by_name(ingested: Path) -> None:  # noqa: F811
    write_config(ingested, tiny_config(
        stop_after="evaluate",
        data={"subjects": SUBJECTS, "val_subjects": ["s001"], "test_subjects": ["s003"]}))
    _, log = _dry_run(ingested, "results/tiny/curve/n12/seed1/checkpoint.pt")
    assert "learning_curve.sizes asks for 12 training subjects" in log
    assert "has 4 (s000, s002, s004, s005)" in log


# --- the table ----------------------------------------------------------------------------


def _report(folder: Path, size: int, seed: int, subject: str, mesh: float,
            body: float, variant: str = "") -> Path:
    def metrics(chamfer: float) -> dict:
        return {"chamfer_cm": chamfer, "p2s_cm": chamfer, "s2p_cm": chamfer,
                "normal_consistency": 0.9, "fscore_1cm": 1 / chamfer, "fscore_2cm": 0.8,
                "iou": 0.9, "mvp_chamfer_cm": chamfer, "n_samples": 10, "surface": True}
    path = folder / f"{variant}n{size}_seed{seed}_{subject}.json"
    model = f"curve/{variant + '/' if variant else ''}n{size}/seed{seed}"
    path.write_text(json.dumps({
        "subject": subject, "split": "test", "model": model, "components": 1,
        "metrics": {"model": metrics(mesh), "fitted_body": metrics(body),
                    "truth_body": metrics(body)}}))
    return path


def test_power_law_recovers_its_parameters() -> None:
    sizes = [3, 6, 12, 24]
    a, b = power_law(sizes, [2.0 * n ** -0.3 for n in sizes])
    assert a == pytest.approx(2.0) and b == pytest.approx(0.3)


def test_the_table_gives_each_test_set_its_curve(tmp_path: Path) -> None:
    reports = []
    for size in (2, 8):
        for seed in (1, 2):
            reports.append(_report(tmp_path, size, seed, "s0", 2.0 * size ** -0.5, 1.5))
            reports.append(_report(tmp_path, size, seed, "x0", 4.0 * size ** -0.25, 3.0))
    reports.append(_report(tmp_path, 8, 1, "x0", 1.0, 3.0, variant="hull_feature"))
    out = tmp_path / "out"
    fits = table(reports=reports, test_sets=json.dumps({"s0": IN_DISTRIBUTION, "x0": "shifted"}),
                 csv_output=out / "c.csv", markdown=out / "c.md", html_output=out / "c.html",
                 headline=out / "h.md",
                 params={"sizes": [2, 8], "seeds": [1, 2], "train_steps_per_subject": 10,
                         "train_normal_steps_per_subject": 5, "predict_at": 200})
    assert "| shifted | 3.36 | 2.38 | -15.9 % | 1.06 |" in (out / "h.md").read_text()
    assert fits["shifted"]["b"] == pytest.approx(0.25)
    assert fits["shifted"]["predicted"] == pytest.approx(4.0 * 200 ** -0.25)
    assert fits[IN_DISTRIBUTION]["means"][8] == pytest.approx(2.0 / 8 ** 0.5)
    text = (out / "c.md").read_text()
    assert "## Test set: shifted (x0)" in text and "## Test set: in-distribution (s0)" in text
    assert "| 8 | 80 | 0.71 ± 0.00 | 1.50 ± 0.00 | +53 % | 2/2 |" in text
    assert len((out / "c.csv").read_text().splitlines()) == 1 + len(reports)
    variant = text.split("## Variant hull_feature")[1]
    assert "| shifted | 8 | 1 | 2.38 | 1.00 |" in variant and "| 1/1 |" in variant


def test_the_table_refuses_reports_it_cannot_place(tmp_path: Path) -> None:
    good = _report(tmp_path, 2, 1, "s0", 1.0, 1.5)
    kwargs = {"csv_output": tmp_path / "c.csv", "markdown": tmp_path / "c.md",
              "html_output": tmp_path / "c.html",
              "params": {"sizes": [2, 8], "seeds": [1], "train_steps_per_subject": 10,
                         "train_normal_steps_per_subject": 5, "predict_at": 200}}
    with pytest.raises(PipelineError, match=r"no report of size\(s\) \[8\]"):
        table(reports=[good], test_sets=json.dumps({"s0": "a"}), **kwargs)
    with pytest.raises(PipelineError, match="test subject s0 has no test set"):
        table(reports=[good], test_sets="{}", **kwargs)
    with pytest.raises(PipelineError, match="is not a learning-curve run"):
        parse_curve_model("ablation/full/seed1")
    assert parse_curve_model("curve/hull_feature/n24/seed2") == ("hull_feature", 24, 2)
    assert parse_curve_model("curve/n24/seed2") == ("full", 24, 2)
    with pytest.raises(PipelineError, match="unknown ablation variant 'shiny'"):
        parse_curve_model("curve/shiny/n24/seed2")


@pytest.mark.parametrize("variants, message", [
    ({"full": [3]}, "'full' is not a variant to compare"),
    ({"shiny": [3]}, "'shiny' is not a variant"),
    ({"hull_feature": [7]}, "sizes [7] are not in learning_curve.sizes"),
])
def test_bad_curve_variants_are_refused(variants: dict, message: str) -> None:
    with pytest.raises(PipelineError) as info:
        validate_config({"learning_curve": {"sizes": [3, 5], "variants": variants}})
    assert message in str(info.value)


def test_variant_seeds_must_have_curve_twins() -> None:
    with pytest.raises(PipelineError, match=r"variant_seeds: \[9\] not in"):
        validate_config({"learning_curve": {"seeds": [1, 2], "variant_seeds": [1, 9]}})


def test_curve_reports_name_every_point_and_variant() -> None:
    config = validate_config({
        "results": "res", "data": {"dataset": "d", "subjects": ["a", "b", "t1", "t2", "v"],
                                   "val_subjects": ["v"], "test_subjects": ["t2", "t1"]},
        "learning_curve": {"sizes": [1, 2], "seeds": [1, 2], "variants": {"few_views": [2]},
                           "variant_seeds": [2]}})
    reports = [str(p) for p in curve_reports(config)]
    assert len(reports) == 2 * 2 * 2 + 1 * 1 * 2
    assert reports[0] == "res/d/eval/curve/n1/seed1/t1.json"  # data.subjects order
    assert reports[-2:] == ["res/d/eval/curve/few_views/n2/seed2/t1.json",
                            "res/d/eval/curve/few_views/n2/seed2/t2.json"]

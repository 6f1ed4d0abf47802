"""A fitted body's size: standing height, the prior's mean, a given height, and the
settings that state them (pipeline/fitting/scale.py, fit.height_m, fit.anny.prior_phenotype)."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import validate_config
from pipeline.errors import PipelineError
from pipeline.fitting.scale import height_loss, scale_source, standing_height
from tests.conftest import require, tiny_config, write_config
from tests.test_splits import _dry_run, _options, ingested  # noqa: F401


@pytest.fixture(scope="module")
def anny():
    require("anny")
    from pipeline.bodymodel.anny_model import AnnyBodyModel

    return AnnyBodyModel


def test_scale_sources() -> None:
    assert scale_source("calibrated", None) == "calibrated"
    assert scale_source("calibrated", 1.7) == "calibrated"
    assert scale_source("weak_perspective", None) == "prior"
    assert scale_source("weak_perspective", 1.7) == "given"


def test_one_calibrated_photo_per_pose_does_not_measure_size() -> None:
    """A calibrated camera fixes a size by triangulation: one photo of a pose cannot."""
    assert scale_source("calibrated", None, [1, 1, 1]) == "prior"
    assert scale_source("calibrated", 1.8, [1]) == "given"
    assert scale_source("calibrated", None, [1, 2]) == "calibrated"
    assert scale_source("weak_perspective", None, [8, 8]) == "prior"


def test_the_default_prior_is_an_adult_not_annys_adolescent_mean(anny) -> None:
    """Anny's all-0.5 mean has age 0.5; the population prior (age 0.675) stands ~12 %
    taller: the size a fit without cameras gets."""
    config = validate_config({})
    adult = anny(config["fit"]["anny"])
    teen = anny({"prior_phenotype": {}})
    with torch.no_grad():
        h_adult = float(standing_height(adult, adult.initial_shape()))
        h_teen = float(standing_height(teen, teen.initial_shape()))
    assert 1.6 < h_teen < h_adult < 2.0
    assert h_adult / h_teen > 1.08
    assert torch.allclose(torch.sigmoid(adult.initial_shape())[1], torch.tensor(0.675))
    assert float(adult.shape_prior(adult.initial_shape())) == 0.0


def test_a_given_height_sets_the_body_within_one_percent(anny) -> None:
    model = anny({})
    shape = model.initial_shape().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([shape], lr=0.06)
    for _ in range(60):
        optimiser.zero_grad()
        loss = height_loss(model, shape, 1.58) + 0.01 * model.shape_prior(shape)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        assert float(standing_height(model, shape)) == pytest.approx(1.58, rel=0.01)


def test_unknown_prior_names_are_refused(anny) -> None:
    with pytest.raises(PipelineError, match=r"prior_phenotype: unknown names \['stature'\]"):
        anny({"prior_phenotype": {"stature": 0.5}})


@pytest.mark.parametrize("heights, message", [
    ({"zz": 1.7}, "fit.height_m: zz is not in data.subjects"),
    ({"s000": 170}, "fit.height_m.s000: 170 m is not a person's standing height"),
    ({"s000": 0.3}, "(0.5-2.5 m)"),
])
def test_bad_heights_are_refused(heights: dict, message: str) -> None:
    with pytest.raises(PipelineError) as info:
        validate_config(tiny_config(fit={"height_m": heights}), source="my.yaml")
    assert message in str(info.value) and "my.yaml" in str(info.value)


@pytest.mark.slow
def test_the_fit_job_gets_the_subjects_height_only(ingested) -> None:  # noqa: F811
    write_config(ingested, tiny_config(
        stop_after="fit", fit={"camera": "weak_perspective", "height_m": {"s001": 1.64}},
        data={"subjects": ["s000", "s001"], "val_subjects": [], "test_subjects": []}))
    for subject, expected in (("s001", ["1.64"]), ("s000", None)):
        jobs, log = _dry_run(ingested, f"results/tiny/fit/{subject}.npz")
        assert "fit" in jobs, log
        options = _options(jobs["fit"]["shell"])
        assert options.get("--height-m") == expected
        assert "height_m" not in options["--params"][0]  # per subject: one refit per change

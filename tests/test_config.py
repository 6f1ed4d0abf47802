"""The config schema: defaults, unknown keys, types, ranges, and both enforcers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from pipeline.config import (
    load_config,
    load_schema,
    parse_stage_params,
    stage_params,
    validate_config,
)
from pipeline.errors import PipelineError
from tests.conftest import REPO, run_snakemake, tiny_config, write_config


def _keys_without(node: dict, where: str = "") -> list[str]:
    """Schema nodes (properties) lacking a description or a default."""
    missing = []
    for name, sub in node.get("properties", {}).items():
        path = f"{where}.{name}" if where else name
        if "description" not in sub or "default" not in sub:
            missing.append(path)
        missing += _keys_without(sub, path)
    return missing


def test_every_key_has_description_and_default():
    schema = load_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    missing = _keys_without(schema)
    for name, sub in schema["$defs"].items():
        missing += _keys_without(sub, f"$defs.{name}")
    assert missing == []


def test_default_config_is_valid_and_complete():
    config = load_config(REPO / "config.yaml")
    assert config["ingest"]["on_bad_image"] == "fail"
    assert config["synthesize"]["camera"]["distance"] > 0  # filled from the schema


def test_defaults_fill_an_empty_config():
    config = validate_config({})
    assert config["data"]["dataset"] == "demo"
    assert config["ingest"]["min_views"] == 4


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"ingets": {}}, "'ingets' was unexpected"),
        ({"ingest": {"min_views": 0}}, "ingest.min_views: 0 is less than the minimum of 1"),
        ({"ingest": {"on_bad_image": "ignore"}}, "ingest.on_bad_image: 'ignore' is not one of"),
        ({"synthesize": {"camera": {"distance": "far"}}},
         "synthesize.camera.distance: 'far' is not of type 'number'"),
        ({"synthesize": {"n_views": 2.5}}, "synthesize.n_views: 2.5 is not of type 'integer'"),
        ({"data": {"subjects": ["a/b"]}}, "data.subjects.0: 'a/b' does not match"),
        ({"data": {"test_subjects": ["zz"]}}, "data.test_subjects: ['zz'] not in data.subjects"),
        ({"data": {"predict_subjects": ["zz"]}},
         "data.predict_subjects: ['zz'] not in data.subjects"),
        ({"data": {"predict_subjects": ["s003"]}}, "['s003'] in both data.test_subjects"),
    ],
)
def test_bad_config_names_the_key(bad, expected):
    with pytest.raises(PipelineError) as info:
        validate_config(bad, source="my.yaml")
    assert expected in str(info.value)
    assert "my.yaml" in str(info.value)


def test_load_config_names_file_for_bad_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: [1,\n")
    with pytest.raises(PipelineError, match=r"c\.yaml is not valid YAML"):
        load_config(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(PipelineError, match="must hold a mapping"):
        load_config(path)


def test_yaml_loading_is_safe(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_config(path)


def test_stage_params_round_trip():
    config = validate_config({"seed": 3})
    params = stage_params(config, "ingest")
    assert params["seed"] == 3
    assert parse_stage_params(json.dumps(params), "ingest") == params
    with pytest.raises(PipelineError, match=r"ingest\.min_side"):
        parse_stage_params(json.dumps({**params, "min_side": 0}), "ingest")
    with pytest.raises(PipelineError, match=r"'bogus' was unexpected"):
        parse_stage_params(json.dumps({**params, "bogus": 1}), "ingest")


def test_cli_rejects_bad_config_before_work(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"ingest": {"min_views": -1}}))
    out = tmp_path / "m.json"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "ingest", "--config", str(config), "--subject", "s",
         "--data-dir", str(tmp_path), "--output", str(out)],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert "ingest.min_views: -1 is less than the minimum of 1" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_snakefile_rejects_bad_config_before_work(tiny_layout):
    write_config(tiny_layout, tiny_config(ingest={"min_views": 0}, extra_key=1))
    result = run_snakemake(tiny_layout, "--cores", "1", check=False)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "extra_key" in text and "min_views" in text
    assert not (tiny_layout / "results").exists()


@pytest.mark.parametrize("preset", sorted((REPO / "presets").glob("*.yaml")), ids=lambda p: p.name)
def test_presets_are_valid(preset):
    config = load_config(preset)
    assert set(config["data"]["test_subjects"]) <= set(config["data"]["subjects"])

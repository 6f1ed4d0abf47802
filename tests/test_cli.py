"""The stage CLI: subcommands, options from signatures, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import STAGES, _add_function_options, build_parser, main
from tests.conftest import make_layout


def test_every_stage_resolves_to_a_keyword_only_function():
    for name, spec in STAGES.items():
        parser = build_parser(name)
        assert parser.prog == "python -m pipeline", name
        func = spec.load()
        assert callable(func)


def test_options_follow_the_signature():
    import argparse

    def run(*, subject: str, data_dir: Path, count: int = 3, files: list[Path], flag: bool = False,
            params: dict):
        return None

    parser = argparse.ArgumentParser()
    _add_function_options(parser, run)
    args = parser.parse_args(["--subject", "s", "--data-dir", "d", "--files", "a", "b", "--flag"])
    assert vars(args) == {"subject": "s", "data_dir": Path("d"), "count": 3,
                          "files": [Path("a"), Path("b")], "flag": True}


def test_positional_arguments_are_refused():
    import argparse

    def run(subject: str, *, params: dict):
        return None

    with pytest.raises(TypeError, match="keyword-only"):
        _add_function_options(argparse.ArgumentParser(), run)


def test_main_runs_ingest_with_json_params(tmp_path):
    make_layout(tmp_path, {"s0": {"a": 2}})
    params = {"seed": 1, "extensions": ["jpg"], "on_bad_image": "fail", "min_views": 2,
              "min_side": 8, "max_pixels": 10**7}
    out = tmp_path / "m.json"
    code = main(["ingest", "--params", json.dumps(params), "--subject", "s0",
                 "--data-dir", str(tmp_path), "--output", str(out)])
    assert code == 0 and json.loads(out.read_text())["n_views"] == 2


def test_input_error_exits_1_without_traceback(tmp_path):
    params = {"seed": 1, "extensions": ["jpg"], "on_bad_image": "fail", "min_views": 2,
              "min_side": 8, "max_pixels": 10**7}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "ingest", "--params", json.dumps(params),
         "--subject", "s0", "--data-dir", str(tmp_path / "missing"), "--output", "x.json"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_usage_error_exits_2():
    result = subprocess.run([sys.executable, "-m", "pipeline", "nosuchstage"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice" in result.stderr

"""Loading and validating the run configuration against ``schemas/config.schema.yaml``.

The Snakefile and ``python -m pipeline`` both validate with :func:`validate_config`. Defaults
from the schema are filled in, so a stage always sees every key.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from pipeline.errors import PipelineError

SCHEMA_RESOURCE = "schemas/config.schema.yaml"


def load_schema() -> dict[str, Any]:
    """The configuration schema shipped with the package (a fresh copy each call)."""
    text = resources.files("pipeline").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    # libyaml's safe loader where PyYAML has it: the same data, 6× sooner than pure Python.
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _extend_with_default(validator_class: type) -> type:
    """A validator class that writes each property's ``default`` into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema) -> Iterator:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _format_error(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    return f"{path}: {error.message}"


def validate_config(
    config: Mapping[str, Any], schema: dict[str, Any] | None = None, source: str = "config"
) -> dict[str, Any]:
    """Validate ``config`` and return a copy with every default filled in.

    Raises:
        PipelineError: naming each offending key (``section.key: problem``) and the source.
    """
    schema = load_schema() if schema is None else schema
    registry = Registry().with_resource("urn:config", Resource.from_contents(schema))
    instance = copy.deepcopy(dict(config))
    validator = _extend_with_default(Draft202012Validator)(schema, registry=registry)
    # Fill defaults first (a pass that may report errors on partial data), then validate the result.
    list(validator.iter_errors(instance))
    errors = sorted(
        Draft202012Validator(schema, registry=registry).iter_errors(instance),
        key=lambda e: [str(p) for p in e.absolute_path],
    )
    if errors:
        lines = "\n".join(f"  - {_format_error(e)}" for e in errors)
        raise PipelineError(f"invalid configuration in {source}:\n{lines}")
    resolve_split_files(instance)
    _check_cross_references(instance, source)
    return instance


SPLITS = ("val_subjects", "test_subjects", "predict_subjects")
"""The held-out splits of ``data``; the training subjects are the others of ``subjects``."""

SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def read_split_file(path: Path, setting: str) -> list[str]:
    """The subject ids of a split file: one a line, blank lines and ``#`` comments skipped.

    Raises:
        PipelineError: naming the file and ``setting`` when it is missing, empty, or holds a
            malformed or repeated id (with its line number).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"{setting}: cannot read split file {path}: "
                            f"{exc.strerror or exc}") from exc
    ids: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        subject = line.split("#", 1)[0].strip()
        if not subject:
            continue
        if not SUBJECT_ID.match(subject):
            raise PipelineError(f"{setting}: {path} line {number}: {subject!r} is not a "
                                "subject id (letters, digits, '_', '.', '-')")
        if subject in ids:
            raise PipelineError(f"{setting}: {path} line {number}: {subject} is listed twice")
        ids.append(subject)
    if not ids:
        raise PipelineError(f"{setting}: split file {path} lists no subject")
    return ids


def resolve_split_files(config: dict[str, Any]) -> None:
    """Fill ``data``'s subject lists from ``data.split_files`` (in place; see the schema).

    Raises:
        PipelineError: a split file that cannot be read or is malformed (see
            :func:`read_split_file`).
    """
    data = config["data"]
    files = {k: v for k, v in data.get("split_files", {}).items() if v}
    folder = Path(data["root"]) / data["dataset"]
    for key, name in files.items():
        path = Path(name) if Path(name).is_absolute() else folder / name
        data[key] = read_split_file(path, f"data.split_files.{key}")
    if "subjects" in files:  # a training split: the held-out subjects are subjects too
        held_out = dict.fromkeys(s for key in SPLITS for s in data.get(key, []))
        data["subjects"] += [s for s in held_out if s not in data["subjects"]]


def check_splits(config: Mapping[str, Any], source: str = "config") -> None:
    """Rules the schema cannot state: every held-out subject is among the subjects, and the
    validation, test and truth-free (predict) splits are disjoint.

    Raises:
        PipelineError: naming the subjects and the two settings.
    """
    data = config["data"]
    for key in SPLITS:
        unknown = sorted(set(data.get(key, [])) - set(data["subjects"]))
        if unknown:
            raise PipelineError(
                f"invalid configuration in {source}:\n  - data.{key}: {unknown} "
                f"not in data.subjects {data['subjects']}"
            )
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1:]:
            both = sorted(set(data.get(first, [])) & set(data.get(second, [])))
            if both:
                raise PipelineError(
                    f"invalid configuration in {source}:\n  - {both} in both data.{first} "
                    f"and data.{second}; the splits are disjoint: keep each subject in one "
                    "(validation chooses, test is scored and never chooses, predict has no "
                    "scan)"
                )


def check_layout(config: Mapping[str, Any], source: str = "config") -> None:
    """``data.layout``: every path template is relative, without '..', with known
    placeholders and the fields it needs (:meth:`pipeline.layout.Layout.check`); and
    ``mask.backend: given`` has masks to read (``data.layout.masks``).

    Raises:
        PipelineError: naming ``data.layout.<key>``, the template and the source.
    """
    from pipeline.layout import Layout

    try:
        layout = Layout.from_config(config["data"].get("layout", {}))
    except PipelineError as exc:
        raise PipelineError(f"invalid configuration in {source}:\n  - {exc}") from exc
    for stage in ("detect", "mask"):
        if config.get(stage, {}).get("backend") == "given" and layout.masks is None:
            raise PipelineError(
                f"invalid configuration in {source}:\n  - {stage}.backend: given reads the "
                "data set's own masks, but data.layout.masks is null: set it to where a "
                "photo's mask lies (e.g. {subject}/{action}/masks/{view}.png) or choose "
                f"another {stage}.backend")


def check_register(config: Mapping[str, Any], source: str = "config") -> None:
    """Scans that are not in the pipeline's frame are registered: ``register.enabled`` is
    needed where ``data.frame`` is not the pipeline's own, the scans have a rotation file
    or lie elsewhere than ``truth/<subject>/`` (:mod:`pipeline.register`).

    Raises:
        PipelineError: naming what needs the registration and the setting to change.
    """
    from pipeline.frames import DatasetFrame
    from pipeline.layout import Layout

    data = config["data"]
    if config.get("register", {}).get("enabled", False) or config.get("stop_after") in (
            "ingest", "preprocess", "fit"):
        return  # registering, or no stage that reads a scan
    frame = DatasetFrame.from_config(data["frame"])
    layout = Layout.from_config(data.get("layout", {}))
    reasons = []
    if not frame.is_pipeline:
        reasons.append("data.frame is not the pipeline's own (Z up, facing -y, metres, feet, "
                       "canonical pose)")
    if layout.scan_rotation is not None:
        reasons.append(f"data.layout.scan_rotation is set ({layout.scan_rotation!r})")
    if layout.scan != Layout().scan:
        reasons.append(f"data.layout.scan {layout.scan!r} is not the pipeline's truth layout")
    if reasons:
        raise PipelineError(f"invalid configuration in {source}:\n  - the scans must be "
                            f"registered ({'; '.join(reasons)}): set register.enabled: true")


def _check_cross_references(config: dict[str, Any], source: str) -> None:
    from pipeline.synthesize.population import check_populations

    check_layout(config, source)
    check_register(config, source)
    check_splits(config, source)
    check_populations(config, source)
    check_heights(config, source)
    check_curve(config, source)


def load_configs(paths: list[Path]) -> dict[str, Any]:
    """Several YAML config files merged in order (as ``snakemake --configfile a b``),
    validated with defaults filled."""
    from pipeline.ablation import merged

    config: dict[str, Any] = {}
    for path in paths:
        config = merged(config, yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    return validate_config(config, source=" ".join(map(str, paths)))


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file safely, validate it and fill defaults."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PipelineError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PipelineError(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return validate_config(data, source=str(path))


def stage_params(config: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The parameters a stage receives: its config section (a dotted path for a nested one,
    ``pifu.train``) plus the run's seed."""
    values: Any = config
    for key in section.split("."):
        values = values[key]
    return {"seed": config["seed"], **values}


PER_SUBJECT = ("populations", "height_m")
"""Settings of a section that the Snakefile resolves per subject (not in a stage's params)."""
LEFT_OUT_AT_DEFAULT = {"synthesize": ("layout",)}
"""Settings added after results existed, which the rules leave out of a stage's params while
they hold their default (the stage fills it in), so that adding them reran nothing."""


def check_heights(config: Mapping[str, Any], source: str = "config") -> None:
    """``fit.height_m``: known subjects, plausible heights (0.5-2.5 m).

    Raises:
        PipelineError: naming the subject, the height and the setting.
    """
    for subject, height in config["fit"].get("height_m", {}).items():
        if subject not in config["data"]["subjects"]:
            raise PipelineError(
                f"invalid configuration in {source}:\n  - fit.height_m: {subject} is not in "
                f"data.subjects {config['data']['subjects']}")
        if not 0.5 <= float(height) <= 2.5:
            raise PipelineError(
                f"invalid configuration in {source}:\n  - fit.height_m.{subject}: {height} m "
                "is not a person's standing height (0.5-2.5 m); give metres")


def check_curve(config: Mapping[str, Any], source: str = "config") -> None:
    """``learning_curve.variants``: known ablation variants other than ``full`` (the curve
    itself), each at sizes of the curve.

    Raises:
        PipelineError: naming the variant or the sizes.
    """
    from pipeline.ablation import VARIANTS

    curve = config["learning_curve"]
    stray = sorted(set(curve.get("variant_seeds") or []) - set(curve["seeds"]))
    if stray:
        raise PipelineError(
            f"invalid configuration in {source}:\n  - learning_curve.variant_seeds: {stray} "
            f"not in learning_curve.seeds {curve['seeds']} (a variant run needs its twin)")
    for name, sizes in curve["variants"].items():
        if name not in VARIANTS or name == "full":
            raise PipelineError(
                f"invalid configuration in {source}:\n  - learning_curve.variants: {name!r} "
                f"is not a variant to compare with the curve; known: "
                f"{sorted(set(VARIANTS) - {'full'})}")
        outside = sorted(set(sizes) - set(curve["sizes"]))
        if outside:
            raise PipelineError(
                f"invalid configuration in {source}:\n  - learning_curve.variants.{name}: "
                f"sizes {outside} are not in learning_curve.sizes {curve['sizes']}")


def curve_reports(config: Mapping[str, Any]) -> list[Path]:
    """Every evaluation report the learning curve's table reads: each test subject for each
    point and seed, then for each variant at its sizes (and ``variant_seeds``), under
    ``<results>/<dataset>/eval/curve/``. The Snakefile's table rule and
    ``benchmarks/learning_curve.py`` (which asks for them by name) share it."""
    curve, data = config["learning_curve"], config["data"]
    tests = [s for s in data["subjects"] if s in data["test_subjects"]]
    folder = Path(config["results"]) / data["dataset"] / "eval" / "curve"
    runs = [(f"n{n}", seed) for n in curve["sizes"] for seed in curve["seeds"]]
    for name, sizes in curve["variants"].items():
        runs += [(f"{name}/n{n}", seed) for n in sizes
                 for seed in curve.get("variant_seeds") or curve["seeds"]]
    return [folder / point / f"seed{seed}" / f"{s}.json" for point, seed in runs for s in tests]


def section_schema(schema: dict[str, Any], section: str) -> dict[str, Any]:
    """A schema for ``stage_params(config, section)``: the section's schema plus ``seed``
    (``pifu.train`` is ``$defs/pifu_train``)."""
    sub = copy.deepcopy(schema["$defs"][section.replace(".", "_")])
    sub["properties"] = {"seed": schema["properties"]["seed"], **sub["properties"]}
    # resolved per subject before a stage sees them (synthesize/population.py, fit.height_m)
    optional = (*PER_SUBJECT, *LEFT_OUT_AT_DEFAULT.get(section, ()))
    sub["required"] = sorted(k for k in sub["properties"] if k not in optional)
    sub["$defs"] = schema["$defs"]
    sub["$schema"] = schema["$schema"]
    return sub


def parse_json_object(text: str, option: str, what: str = "") -> dict[str, Any]:
    """A command-line option's JSON object (``--params``, ``--layout``); PipelineError
    naming the option (and ``what`` it should hold) when it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{option} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PipelineError(f"{option} must be a JSON object{what}")
    return value


def sections_params(config: Mapping[str, Any], sections: tuple[str, ...]
                    ) -> dict[str, dict[str, Any]]:
    """The parameters of a stage that reads several sections: :func:`stage_params` of each,
    by section (what ``--params`` holds for it)."""
    return {section: stage_params(config, section) for section in sections}


def parse_sections_params(text: str, sections: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Validate the JSON parameters of a stage that reads several sections: one object per
    section, each checked as :func:`parse_stage_params` checks one."""
    params = parse_json_object(text, "--params", f" with the keys {list(sections)}")
    if sorted(params) != sorted(sections):
        raise PipelineError(f"--params must hold the sections {list(sections)}, got "
                            f"{sorted(params)}")
    return {section: parse_stage_params(json.dumps(params[section]), section)
            for section in sections}


def parse_stage_params(text: str, section: str) -> dict[str, Any]:
    """Validate the JSON parameters a Snakemake rule passes to a stage (``--params``)."""
    params = parse_json_object(text, "--params")
    sub = section_schema(load_schema(), section)
    errors = list(Draft202012Validator(sub).iter_errors(params))
    if errors:
        lines = "\n".join(f"  - {section}.{_format_error(e)}" for e in errors)
        raise PipelineError(f"invalid parameters for stage {section!r}:\n{lines}")
    return params

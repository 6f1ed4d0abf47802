"""Populations: synthetic subjects drawn from another distribution than the training set's.

``synthesize.populations`` names groups of subjects (a shifted test set: older, heavier, in
dresses, seen from higher cameras in larger photos) and the settings that differ from the
``synthesize`` section. :func:`subject_params` resolves the settings one subject is made
with; the Snakefile passes them per subject, so editing one population reruns its subjects
only, and the subjects outside every population keep the section's settings unchanged.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from pipeline.errors import PipelineError

IN_DISTRIBUTION = "in-distribution"
"""The label of the subjects outside every population."""

_NESTED = ("camera", "phenotype", "outfit")
_SCALAR = ("n_views", "width", "height", "skirt_fraction")


def population_of(config: Mapping[str, Any], subject: str) -> str:
    """The population a subject belongs to, or :data:`IN_DISTRIBUTION`."""
    for name, population in config["synthesize"]["populations"].items():
        if subject in population["subjects"]:
            return name
    return IN_DISTRIBUTION


def subject_params(config: Mapping[str, Any], subject: str) -> dict[str, Any]:
    """The ``synthesize`` parameters of one subject (the stage's ``--params``): the section
    with its population's settings merged in, the population's seed as ``seed``, and the
    population's ``bottoms`` turned into ``outfit.bottom`` (subject ``i`` of the population
    wears ``bottoms[i % len(bottoms)]``). ``populations`` itself is left out."""
    section = {k: copy.deepcopy(v) for k, v in config["synthesize"].items()
               if k != "populations"}
    params = {"seed": config["seed"], **section}
    name = population_of(config, subject)
    if name == IN_DISTRIBUTION:
        return params
    population = config["synthesize"]["populations"][name]
    if population.get("seed") is not None:
        params["seed"] = population["seed"]
    for key in _SCALAR:
        if population.get(key) is not None:
            params[key] = population[key]
    for key in _NESTED:
        params[key] = {**params[key], **population.get(key, {})}
    if population.get("bottoms"):
        bottoms = population["bottoms"]
        params["outfit"]["bottom"] = bottoms[population["subjects"].index(subject) % len(bottoms)]
    return params


def check_populations(config: Mapping[str, Any], source: str = "config") -> None:
    """Every population's subjects are in ``data.subjects`` and in no other population, and
    every subject's resolved settings are valid.

    Raises:
        PipelineError: naming the population, the subjects and the setting.
    """
    from pipeline.config import parse_stage_params

    seen: dict[str, str] = {}
    subjects = config["data"]["subjects"]
    for name, population in config["synthesize"]["populations"].items():
        unknown = sorted(set(population["subjects"]) - set(subjects))
        if unknown:
            raise PipelineError(
                f"invalid configuration in {source}:\n  - synthesize.populations.{name}."
                f"subjects: {unknown} not in data.subjects {subjects}")
        for subject in population["subjects"]:
            if subject in seen:
                raise PipelineError(
                    f"invalid configuration in {source}:\n  - {subject} is in both "
                    f"synthesize.populations.{seen[subject]} and .{name}; a subject "
                    "belongs to one population")
            seen[subject] = name
        first = population["subjects"][0]
        try:
            parse_stage_params(json.dumps(subject_params(config, first)), "synthesize")
        except PipelineError as exc:
            raise PipelineError(f"invalid configuration in {source}: synthesize.populations."
                                f"{name} gives its subjects invalid settings:\n{exc}") from exc

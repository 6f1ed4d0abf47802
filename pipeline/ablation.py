"""The ablation study of the report's Table 1, plus two oracle rows.

Every variant trains Pixel2ISDF once per seed of ``ablation.seeds`` and is reconstructed and
evaluated like the main model; each changes one thing and shares every other stage (the
Snakemake rules in ``rules/ablation.smk`` point at the shared files):

========================  ==========================================================
``full``                  the method, as the main model (its own seeds)
``no_mask``               unmasked crops, no matte (cache ``unmasked/images``), with a
                          normal network trained on them too
``no_normal``             the masked image straight into the geometry network
``no_refine``             the body of the keypoint-only fit (no silhouette term, no refit)
``sphere_prior``          the report's SDF initialisation (a sphere) instead of our body prior
``oracle_body``           oracle: the truth body instead of the fit
``oracle_normal``         oracle: the truth normal maps as the input
========================  ==========================================================

The Snakefile reads :data:`VARIANTS` and :func:`train_section`, so the top-level imports are
the standard library and ``pipeline.errors`` only; the table and the oracle fit import numpy
and the other stages in their functions.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.studies import StudyRow


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table.

    Attributes:
        label: the row's name in the table.
        body: whose body the cache holds: ``fit`` (the main fit), ``keypoints_only`` (the
            fit without silhouette term or refit) or ``truth`` (oracle).
        model: overrides of ``train.model`` (and of ``train_normal.model`` for
            ``masked_input``).
        train: overrides of the rest of the ``train`` section (``min_views``).
        report_chamfer: the report's Table 1 Chamfer for this row (None: not in the report).
        oracle: reads the synthetic truth, labelled as such.
    """

    label: str
    body: str = "fit"
    model: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    report_chamfer: float | None = None
    oracle: bool = False


VARIANTS: dict[str, Variant] = {
    "full": Variant("full model", report_chamfer=0.9985),
    "no_mask": Variant("w/o mask", model={"masked_input": False}, report_chamfer=1.1277),
    "no_normal": Variant("w/o normal map", model={"input": "image"}, report_chamfer=1.0827),
    "no_refine": Variant("w/o fit refinement", body="keypoints_only", report_chamfer=1.1285),
    "sphere_prior": Variant("sphere prior (the report's initialisation)",
                            model={"prior": "sphere", "hull_feature": False}),
    "hull_feature": Variant("with the silhouette feature (the mattes at each query point)",
                            model={"hull_feature": True}),
    "few_views": Variant("trained on 1, 2 or 4 distinct views a sample",
                         train={"min_views": 1}),
    "oracle_body": Variant("oracle: truth body", body="truth", oracle=True),
    "oracle_normal": Variant("oracle: truth normal maps", model={"input": "oracle_normal"},
                             oracle=True),
}
"""The variants, in table order."""

KEYPOINTS_ONLY_FIT: dict[str, Any] = {"silhouette": "none", "iterations": {"refine": 0}}
"""Overrides of the ``fit`` section for ``no_refine``: keypoint stages only."""


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``overrides`` merged in (mappings merged key by key)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def variant(name: str) -> Variant:
    """The variant called ``name``; PipelineError listing the known ones otherwise."""
    if name not in VARIANTS:
        raise PipelineError(f"unknown ablation variant {name!r}; known: {sorted(VARIANTS)}")
    return VARIANTS[name]


def train_section(train: Mapping[str, Any], name: str, steps: int | None) -> dict[str, Any]:
    """The ``train`` section a variant trains with: the config's, with the variant's model
    overrides (model and other train settings) and, when given, ``steps`` training steps."""
    out = merged(train, {**variant(name).train, "model": dict(variant(name).model)})
    if steps is not None:
        out["run"] = merged(out["run"], {"steps": steps})
    return out


def normal_section(train_normal: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The ``train_normal`` section of a variant's normal network: the config's, with the
    variant's ``masked_input``."""
    masked = variant(name).model.get("masked_input", True)
    return merged(train_normal, {"model": {"masked_input": masked}})


def oracle_fit(*, fit: Path, truth: Path, output: Path) -> dict[str, Any]:
    """Write a fit file whose body is the truth body (``oracle_body``).

    Keeps the fit's cameras, views and checks, and replaces the canonical vertices, the posed
    vertices and keypoints and the bone transforms by the synthetic truth's
    (``<truth>/canonical_body.ply``, ``<truth>/<action>/body.json``, posed by linear blend
    skinning with the fit's weights: the same body model).

    Raises:
        PipelineError: the truth lacks a file (a real data set has no truth body), or its
            body does not match the fit's body model (named).
    """
    import numpy as np

    from pipeline.cache import load_fit
    from pipeline.io import atomic_path, read_json
    from pipeline.meshio import read_ply

    arrays = load_fit(fit)
    canonical = truth / "canonical_body.ply"
    if not canonical.is_file():
        raise PipelineError(f"{canonical} is missing: the oracle_body variant needs the "
                            "synthetic truth body (a real data set has none)")
    mesh = read_ply(canonical)
    vertices, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces)
    if vertices.shape != arrays["canonical_vertices"].shape or not np.array_equal(
            faces, arrays["faces"]):
        raise PipelineError(f"{canonical}: {len(vertices)} vertices, {len(faces)} faces; the "
                            f"fit {fit} has {len(arrays['canonical_vertices'])} and "
                            f"{len(arrays['faces'])}: not the same body model")
    weights = arrays["skinning_weights"].astype(np.float64)
    out = dict(arrays)
    transforms, posed, keypoints = [], [], []
    for action in arrays["actions"].tolist():
        path = truth / action / "body.json"
        if not path.is_file():
            raise PipelineError(f"{path} is missing: the oracle_body variant needs the "
                                "synthetic truth body of every action")
        body = read_json(path)
        if list(body["bone_names"]) != arrays["bone_names"].tolist():
            raise PipelineError(f"{path}: its bones differ from the fit {fit}'s")
        bones = np.asarray(body["bone_transforms"], dtype=np.float64)
        blend = np.einsum("vb,bij->vij", weights, bones)
        posed.append(np.einsum("vij,vj->vi", blend[:, :3, :3], vertices) + blend[:, :3, 3])
        transforms.append(bones)
        keypoints.append(np.asarray(body["keypoints_coco17_3d"], dtype=np.float64))
    out.update(canonical_vertices=vertices.astype(np.float32),
               posed_vertices=np.asarray(posed, dtype=np.float32),
               bone_transforms=np.asarray(transforms, dtype=np.float32),
               posed_keypoints=np.asarray(keypoints, dtype=np.float32),
               body_source=np.array("synthetic truth (oracle_body ablation)"))
    with atomic_path(output) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **out)
    return {"actions": len(posed), "vertices": len(vertices)}


def parse_model(name: str) -> tuple[str, int]:
    """``ablation/<variant>/seed<seed>`` (an evaluation report's model) → (variant, seed)."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "ablation" or not parts[2].startswith("seed") \
            or not parts[2][4:].isdigit():
        raise PipelineError(f"evaluation of {name!r} is not an ablation run "
                            "(ablation/<variant>/seed<seed>)")
    variant(parts[1])
    return parts[1], int(parts[2][4:])


def sign_test_p(diffs: list[float]) -> float:
    """Two-sided exact sign test of paired differences (zeros dropped): the probability of
    a split at least this lopsided when either sign is equally likely."""
    signs = [d > 0 for d in diffs if d != 0]
    n = len(signs)
    if n == 0:
        return 1.0
    k = min(sum(signs), n - sum(signs))
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


SIGN_TEST_MIN_SEEDS = 6
"""The fewest paired seeds with which a two-sided sign test can reach p < 0.05 (2 / 2^6)."""


def seeds_needed(diffs: list[float]) -> int:
    """Seeds a paired comparison needs to detect a mean difference of the observed size at
    α 0.05 with 80 % power, from the differences' spread (normal approximation,
    ``(1.96 + 0.84)² (s / |mean|)²``), and never fewer than the sign test's minimum."""
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    if mean == 0:
        return 10 ** 6
    return max(SIGN_TEST_MIN_SEEDS, math.ceil(7.85 * (sd / abs(mean)) ** 2))


def paired(row: StudyRow, full: StudyRow) -> str:
    """`` (per seed: +1.51, +0.40; worse with all 2 seeds; sign test p = 0.50; ...)``: the
    Chamfer differences to the full model seed by seed (a seed fixes the initialisation and
    the draws of both runs), the sign test's p and the seeds a difference of this size
    would need."""
    seeds = sorted(set(row.per_seed) & set(full.per_seed))
    diffs = [row.per_seed[s].chamfer_cm - full.per_seed[s].chamfer_cm for s in seeds]
    if len(diffs) < 2 or any(math.isnan(d) for d in diffs):
        return ""
    shown = ", ".join(f"{d:+.2f}" for d in diffs)
    tests = (f"sign test p = {sign_test_p(diffs):.2f}; about {seeds_needed(diffs)} seeds "
             "to detect a difference of this size (α 0.05, power 0.8)")
    if all(d > 0 for d in diffs) or all(d < 0 for d in diffs):
        side = "worse" if diffs[0] > 0 else "better"
        return f" (per seed: {shown}; {side} with all {len(diffs)} seeds; {tests})"
    return f" (per seed: {shown}; the sign changes with the seed; {tests})"


def table(*, reports: list[Path], csv_output: Path, markdown: Path, html_output: Path,
          params: dict[str, Any]) -> dict[str, Any]:
    """The ablation table from every variant's evaluation reports (``ablation`` section as
    ``params``, with ``steps`` resolved): CSV (one line per variant and seed), Markdown and
    HTML with the mean ± half the spread over seeds, the report's Chamfer beside ours, the
    two body baselines, and which differences the seeds' spread cannot resolve."""
    from pipeline.evaluate import write_tables
    from pipeline.studies import COLUMNS, cell, per_seed_csv, score_cells, study_rows

    rows = sorted(study_rows(reports, parse_model), key=lambda r: list(VARIANTS).index(r.key))
    if not rows:
        raise PipelineError("ablation table: no evaluation report given")
    seeds = sorted({s for r in rows for s in r.per_seed})
    header = ("| variant | " + " | ".join(h for _, h in COLUMNS)
              + " | report's Chamfer (cm) |")
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        v = VARIANTS[row.key]
        report = "—" if v.report_chamfer is None else f"{v.report_chamfer:.4f}"
        lines.append("| " + " | ".join([v.label, *score_cells(row, True), report]) + " |")
    baselines = {"fitted_body": "baseline: fitted naked body (main fit)",
                 "truth_body": "baseline: truth naked body"}
    full_reports = [p for p in reports if "/full/" in Path(p).as_posix()] or reports
    for mesh, label in baselines.items():
        base = study_rows(full_reports, parse_model, mesh=mesh)[0]
        lines.append("| " + " | ".join([label, *score_cells(base, False), "—"]) + " |")
    full = next((r for r in rows if r.key == "full"), None)
    notes = []
    if len(seeds) < 2:
        notes.append("- One seed: the spread across seeds is not measured, so no difference "
                     "below can be told from training noise.")
    elif full is not None:
        notes.append("- A variant is told apart from the full model only when their Chamfer "
                     "ranges over the seeds (mean ± half the range) do not overlap.")
        for row in rows:
            if row.key == "full":
                continue
            diff = row.mean.chamfer_cm - full.mean.chamfer_cm
            margin = (row.spread["chamfer_cm"] + full.spread["chamfer_cm"]) / 2
            verdict = (f"within {margin:.2f} cm, the sum of the two half-ranges: the ranges "
                       "overlap, this run cannot separate it from the full model"
                       if not abs(diff) > margin else
                       ("worse" if diff > 0 else "better") + f" by more than {margin:.2f} cm, "
                       "the sum of the two half-ranges")
            notes.append(f"- {VARIANTS[row.key].label}: {cell(diff)} cm against the full "
                         f"model{paired(row, full)}; {verdict}.")
    subjects = ", ".join(rows[0].subjects)
    text = "\n\n".join([
        "# Ablation (the report's Table 1, plus oracle rows)",
        f"Test subjects {subjects}; training seeds {', '.join(map(str, seeds))}; "
        f"{params['steps']} training steps per run. Scores: the mean over the test subjects "
        "per seed, then the mean ± half the range over the seeds. Oracle rows read the "
        "synthetic truth: they show what better preprocessing would buy. The report's "
        "Chamfer is the MVP-Human challenge's (cm), on its data and at its scale: compare "
        "the ratios between rows, not the values (our MVP CD column is the same measure).",
        "\n".join(lines), "\n".join(notes)]) + "\n"
    write_tables(csv_output, markdown, html_output,
                 per_seed_csv(rows, ["variant"], lambda key: [key]), text, "Ablation")
    return {r.key: {"chamfer_cm": r.mean.chamfer_cm, "spread": r.spread["chamfer_cm"]}
            for r in rows}

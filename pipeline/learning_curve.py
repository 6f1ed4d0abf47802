"""The learning curve: the model's scores on each test set against its training-set size
(``snakemake --cores N learning_curve``; rules/learning_curve.smk).

Each curve point trains on the first n training subjects with a step budget proportional
to n, once per seed; every test subject is scored beside its fitted body. The table gives,
per test set (the in-distribution subjects and each ``synthesize`` population) and per n,
the mean ± SD over (seed, subject) pairs, the relative gain over the fitted body and the
pairs the mesh wins; then a power law fitted to the mesh's mean Chamfer,
``chamfer(n) = a · n^(-b)``, the gain of the last doubling and the law's extrapolation to
``predict_at`` subjects (an optimistic one: a power law never flattens). The test subjects
chose nothing: each run's checkpoint was kept on the validation subjects.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ablation import VARIANTS, variant
from pipeline.errors import PipelineError
from pipeline.evaluate import load_reports, metrics_of, write_tables
from pipeline.generalisation import MESHES, SCORES, _fmt, summarise
from pipeline.io import atomic_path

CURVE_PREFIX = "curve"


def parse_curve_model(name: str) -> tuple[str, int, int]:
    """``curve/n<size>/seed<seed>`` or ``curve/<variant>/n<size>/seed<seed>`` (an evaluation
    report's model) → (variant, size, seed); the curve itself is variant ``full``."""
    parts = name.split("/")
    if len(parts) == 4 and parts[0] == CURVE_PREFIX:
        variant(parts[1])
        parts = [parts[0], *parts[2:]]
        name_of_variant = name.split("/")[1]
    else:
        name_of_variant = "full"
    ok = (len(parts) == 3 and parts[0] == CURVE_PREFIX and parts[1][:1] == "n"
          and parts[1][1:].isdigit() and parts[2].startswith("seed") and parts[2][4:].isdigit())
    if not ok:
        raise PipelineError(f"evaluation of {name!r} is not a learning-curve run "
                            "(curve/[<variant>/]n<size>/seed<seed>)")
    return name_of_variant, int(parts[1][1:]), int(parts[2][4:])


def curve_rows(reports: list[Path], test_sets: dict[str, str]) -> list[dict[str, Any]]:
    """One row per report: variant, test set, size, seed, subject and each mesh's scores."""
    rows = []
    for report in load_reports(reports):
        name, size, seed = parse_curve_model(report["model"])
        subject = report["subject"]
        if report["split"] != "test":
            raise PipelineError(f"learning curve: {subject} is scored as "
                                f"{report['split']!r}; the curve reads test subjects only")
        if subject not in test_sets:
            raise PipelineError(f"learning curve: test subject {subject} has no test set "
                                f"(known: {sorted(test_sets)})")
        scores = {mesh: metrics_of(report["metrics"][mesh]) for mesh, _ in MESHES}
        rows.append({"variant": name, "test_set": test_sets[subject], "size": size,
                     "seed": seed, "subject": subject,
                     "components": report.get("components"),
                     **{f"{mesh}/{key}": getattr(scores[mesh], key)
                        for mesh, _ in MESHES for key, _, _ in SCORES}})
    if not rows:
        raise PipelineError("learning curve: no evaluation report given")
    return sorted(rows, key=lambda r: (r["variant"], r["test_set"], r["size"], r["seed"],
                                       r["subject"]))


def variant_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Each variant against the curve at the same size, seed and subject (paired)."""
    lines = []
    for name in sorted({r["variant"] for r in rows} - {"full"}):
        lines += [f"## Variant {name} ({VARIANTS[name].label}) against the curve", "",
                  "| test set | training subjects | pairs | Chamfer curve | Chamfer variant | "
                  "P2S curve | P2S variant | F@1cm curve | F@1cm variant | variant wins "
                  "(Chamfer) |", "|---|---|---|---|---|---|---|---|---|---|"]
        full = {(r["test_set"], r["size"], r["seed"], r["subject"]): r
                for r in rows if r["variant"] == "full"}
        mine = [r for r in rows if r["variant"] == name]
        for test_set, size in sorted({(r["test_set"], r["size"]) for r in mine}):
            pairs = [(full[k], r) for r in mine if r["test_set"] == test_set
                     and r["size"] == size
                     and (k := (test_set, size, r["seed"], r["subject"])) in full]
            if not pairs:
                continue

            def mean(key: str, i: int, pairs=pairs) -> float:
                return float(np.mean([p[i][f"model/{key}"] for p in pairs]))
            wins = sum(b["model/chamfer_cm"] < a["model/chamfer_cm"] for a, b in pairs)
            lines.append(f"| {test_set} | {size} | {len(pairs)} | "
                         f"{mean('chamfer_cm', 0):.2f} | {mean('chamfer_cm', 1):.2f} | "
                         f"{mean('p2s_cm', 0):.2f} | {mean('p2s_cm', 1):.2f} | "
                         f"{mean('fscore_1cm', 0):.3f} | {mean('fscore_1cm', 1):.3f} | "
                         f"{wins}/{len(pairs)} |")
        lines.append("")
    return lines


def power_law(sizes: list[int], values: list[float]) -> tuple[float, float]:
    """Least-squares fit of ``value = a · size^(-b)`` in log-log space → (a, b)."""
    x, y = np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(values, dtype=float))
    slope, intercept = np.polyfit(x, y, 1)
    return float(np.exp(intercept)), float(-slope)


def _set_section(name: str, rows: list[dict[str, Any]], steps: dict[int, int],
                 predict_at: int) -> tuple[list[str], dict[str, Any]]:
    sizes = sorted({r["size"] for r in rows})
    lines = [f"## Test set: {name} ({', '.join(sorted({r['subject'] for r in rows}))})", "",
             "| training subjects | steps | Chamfer mesh (cm) | Chamfer fitted body (cm) | "
             "gain | Chamfer wins | F@1cm mesh | F@1cm body | F@1cm wins | NC mesh | NC body |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    means = {}
    for size in sizes:
        s = summarise([r for r in rows if r["size"] == size])
        c, f, n = s["chamfer_cm"], s["fscore_1cm"], s["normal_consistency"]
        means[size] = c["mesh"]
        lines.append(
            f"| {size} | {steps.get(size, '—')} | {_fmt(c['mesh'], 2)} ± {_fmt(c['mesh_sd'], 2)}"
            f" | {_fmt(c['body'], 2)} ± {_fmt(c['body_sd'], 2)} | {100 * c['relative']:+.0f} % "
            f"| {c['wins']}/{c['pairs']} | {_fmt(f['mesh'], 3)} | {_fmt(f['body'], 3)} | "
            f"{f['wins']}/{f['pairs']} | {_fmt(n['mesh'], 3)} | {_fmt(n['body'], 3)} |")
    a, b = power_law(sizes, [means[s] for s in sizes])
    last = means[sizes[-1]] / means[sizes[-2]]
    doubling = last ** (math.log(2) / math.log(sizes[-1] / sizes[-2]))
    predicted = a * predict_at ** (-b)
    fit = {"a": a, "b": b, "predicted": predicted, "last_doubling_ratio": doubling,
           "means": means}
    lines += ["", f"Power law over the means: Chamfer ≈ {a:.2f} · n^(−{b:.3f}) cm; the last "
              f"step ({sizes[-2]} → {sizes[-1]} subjects) changes the mean Chamfer by "
              f"{100 * (doubling - 1):+.1f} % per doubling; the law predicts "
              f"{predicted:.2f} cm at {predict_at} subjects (optimistic: it never flattens)."]
    largest = [r for r in rows if r["size"] == sizes[-1]]
    lines += ["", f"Per subject at {sizes[-1]} training subjects (mean over seeds):", "",
              "| subject | Chamfer mesh | Chamfer body | mesh / body | F@1cm mesh | F@1cm body | "
              "components (most) |", "|---|---|---|---|---|---|---|"]
    for subject in sorted({r["subject"] for r in largest}):
        sub = [r for r in largest if r["subject"] == subject]
        cm, cb = (float(np.mean([r[f"{m}/chamfer_cm"] for r in sub])) for m, _ in MESHES)
        fm, fb = (float(np.mean([r[f"{m}/fscore_1cm"] for r in sub])) for m, _ in MESHES)
        parts = [r["components"] for r in sub if r["components"] is not None]
        lines.append(f"| {subject} | {cm:.2f} | {cb:.2f} | {cm / cb:.2f} | {fm:.3f} | "
                     f"{fb:.3f} | {max(parts) if parts else '—'} |")
    return lines, fit


def headline_text(fits: dict[str, Any], predict_at: int) -> str:
    """A few lines for the README: per test set, the mean Chamfer at the smallest and largest
    size, the last doubling's change and the law's value at ``predict_at``."""
    lines = ["| test set | " + " | ".join(f"n = {n}" for n in sorted(
        next(iter(fits.values()))["means"])) + f" | per doubling (last) | n = {predict_at} "
             "(power law) |"]
    lines.append("|---|" + "---|" * (len(next(iter(fits.values()))["means"]) + 2))
    for name, fit in sorted(fits.items()):
        means = fit["means"]
        lines.append(f"| {name} | " + " | ".join(f"{means[n]:.2f}" for n in sorted(means))
                     + f" | {100 * (fit['last_doubling_ratio'] - 1):+.1f} % | "
                     f"{fit['predicted']:.2f} |")
    return ("Mesh Chamfer (cm, mean over seeds × test subjects) against the number of "
            "training subjects:\n\n" + "\n".join(lines))


def table(*, reports: list[Path], test_sets: str, csv_output: Path, markdown: Path,
          html_output: Path, params: dict[str, Any],
          headline: Path | None = None) -> dict[str, Any]:
    """The learning curve's tables from every curve run's evaluation reports; ``test_sets``
    is JSON mapping each test subject to its test set; ``headline``: the short summary
    alone (Markdown). Returns the power-law fits."""
    every = curve_rows(reports, json.loads(test_sets))
    rows = [r for r in every if r["variant"] == "full"]
    missing = sorted(set(params["sizes"]) - {r["size"] for r in rows})
    if missing:
        raise PipelineError(f"learning curve: no report of size(s) {missing} "
                            "(learning_curve.sizes)")
    if len(params["sizes"]) < 2:
        raise PipelineError("learning curve: a curve needs two sizes at least")
    steps = {n: n * params["train_steps_per_subject"] for n in params["sizes"]}
    seeds = sorted({r["seed"] for r in rows})
    text = ["# Learning curve: the model against its training-set size", "",
            "Each point trains on the first n training subjects for "
            f"{params['train_steps_per_subject']} steps per subject at most (the normal "
            "network on the same subjects, "
            f"{params['train_normal_steps_per_subject']} steps each), the step kept chosen "
            f"on the validation subjects; seeds {', '.join(map(str, seeds))}. Mean ± SD over "
            "(seed, test subject) pairs; gain: the relative change of the mean Chamfer "
            "against the fitted body (positive: the mesh is better); wins: pairs where the "
            "mesh is better.", ""]
    fits = {}
    for name in sorted({r["test_set"] for r in rows}):
        lines, fits[name] = _set_section(name, [r for r in rows if r["test_set"] == name],
                                         steps, params["predict_at"])
        text += [*lines, ""]
    text += variant_lines(every)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    keys = [f"{mesh}/{key}" for key, _, _ in SCORES for mesh, _ in MESHES]
    writer.writerow(["variant", "test_set", "size", "seed", "subject", "components", *keys])
    for r in every:
        writer.writerow([r["variant"], r["test_set"], r["size"], r["seed"], r["subject"],
                         r["components"], *(f"{r[k]:.6g}" for k in keys)])
    write_tables(csv_output, markdown, html_output, out.getvalue(), "\n".join(text),
                 "Learning curve")
    if headline is not None:
        with atomic_path(headline) as tmp:
            Path(tmp).write_text(headline_text(fits, params["predict_at"]) + "\n",
                                 encoding="utf-8")
    return fits

"""The generalisation benchmark: the full model trained once per seed, scored on every test
subject, against the fitted body it starts from (``snakemake --cores N generalisation``).

Each (seed, test subject) pair is one paired comparison: the reconstruction and the fitted
naked body are scored against the same truth by the same code. The table gives every pair,
then the mean ± standard deviation over the pairs, the paired difference (fitted body minus
mesh; positive: the mesh is better), the relative improvement of the means, how many pairs
the mesh wins and the two-sided exact sign test over the pairs. The test subjects chose
nothing: the checkpoint of each seed was kept on the validation subjects.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ablation import parse_model, sign_test_p
from pipeline.errors import PipelineError
from pipeline.evaluate import load_reports, metrics_of, write_tables
from pipeline.io import atomic_path

SCORES = (("chamfer_cm", "Chamfer (cm)", "min"), ("p2s_cm", "P2S (cm)", "min"),
          ("normal_consistency", "NC", "max"), ("fscore_1cm", "F@1cm", "max"))
"""The scores of the benchmark: (key, header, which way is better)."""

MESHES = (("model", "mesh"), ("fitted_body", "fitted body"))


def _pairs(reports: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for report in load_reports(reports):
        variant, seed = parse_model(report["model"])
        if variant != "full":
            raise PipelineError(f"generalisation: {report['model']} is not a run of the full "
                                "model (ablation/full/seed<seed>)")
        if report["split"] != "test":
            raise PipelineError(f"generalisation: {report['subject']} is scored as "
                                f"{report['split']!r}; the benchmark reads test subjects only")
        scores = {mesh: metrics_of(report["metrics"][mesh]) for mesh, _ in MESHES}
        rows.append({"seed": seed, "subject": report["subject"],
                     **{f"{mesh}/{key}": getattr(scores[mesh], key)
                        for mesh, _ in MESHES for key, _, _ in SCORES}})
    if not rows:
        raise PipelineError("generalisation: no evaluation report given")
    return sorted(rows, key=lambda r: (r["seed"], r["subject"]))


def _mean_sd(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return float(np.mean(finite)), sd


def _fmt(value: float, digits: int) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per score: the mesh's and the fitted body's mean and SD over the pairs, the paired
    improvement (positive: the mesh is better) and its SD, the relative improvement of the
    means, the pairs the mesh wins and the sign test's p."""
    out = {}
    for key, _, better in SCORES:
        mesh = [r[f"model/{key}"] for r in rows]
        body = [r[f"fitted_body/{key}"] for r in rows]
        sign = 1.0 if better == "min" else -1.0
        gain = [sign * (b - m) for m, b in zip(mesh, body, strict=True)]
        m_mean, m_sd = _mean_sd(mesh)
        b_mean, b_sd = _mean_sd(body)
        g_mean, g_sd = _mean_sd(gain)
        valid = [g for g in gain if not math.isnan(g)]
        out[key] = {"mesh": m_mean, "mesh_sd": m_sd, "body": b_mean, "body_sd": b_sd,
                    "gain": g_mean, "gain_sd": g_sd,
                    "relative": sign * (b_mean - m_mean) / abs(b_mean) if b_mean else math.nan,
                    "wins": sum(g > 0 for g in valid), "pairs": len(rows),
                    "sign_p": sign_test_p(valid)}
    return out


def headline_text(summary: dict[str, dict[str, float]], seeds: list[int],
                  subjects: list[str]) -> str:
    """The short table (the README's): mean ± SD over seeds × test subjects."""
    lines = ["| score | mesh | fitted body | paired gain | mesh wins | sign test p |",
             "|---|---|---|---|---|---|"]
    for key, header, _ in SCORES:
        s = summary[key]
        digits = 2 if key.endswith("_cm") else 3
        rel = "" if math.isnan(s["relative"]) else f" ({100 * s['relative']:+.0f} %)"
        lines.append(f"| {header} | {_fmt(s['mesh'], digits)} ± {_fmt(s['mesh_sd'], digits)} | "
                     f"{_fmt(s['body'], digits)} ± {_fmt(s['body_sd'], digits)} | "
                     f"{_fmt(s['gain'], digits)} ± {_fmt(s['gain_sd'], digits)}{rel} | "
                     f"{s['wins']}/{s['pairs']} | {s['sign_p']:.3f} |")
    chamfer = summary["chamfer_cm"]
    verdict = ("beats the fitted body in Chamfer on every test subject with every seed"
               if chamfer["wins"] == chamfer["pairs"] else
               f"loses to the fitted body in Chamfer on {chamfer['pairs'] - chamfer['wins']} "
               f"of {chamfer['pairs']} (seed, subject) pairs")
    return "\n".join([
        f"Mean ± SD over {len(seeds)} training seeds ({', '.join(map(str, seeds))}) × "
        f"{len(subjects)} test subjects ({', '.join(subjects)}): {chamfer['pairs']} pairs. "
        "Paired gain: fitted body minus mesh for distances, mesh minus fitted body otherwise "
        "(positive: the mesh is better), with the relative change of the means. Sign test: "
        "two-sided, exact, over the pairs.", "", *lines, "",
        f"The mesh {verdict}."])


def table(*, reports: list[Path], csv_output: Path, markdown: Path, html_output: Path,
          headline: Path, steps: int, params: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's tables from the full model's evaluation reports (one per seed and
    test subject): CSV (one line per pair), Markdown and HTML (every pair, then the
    summary), and the short summary alone (``headline``, Markdown); ``steps`` is the runs'
    training budget, for the text."""
    rows = _pairs(reports)
    seeds = sorted({r["seed"] for r in rows})
    subjects = sorted({r["subject"] for r in rows})
    missing = sorted(set(params.get("seeds", seeds)) - set(seeds))
    if missing:
        raise PipelineError(f"generalisation: no report of seed(s) {missing} "
                            "(generalisation.seeds)")
    summary = summarise(rows)
    head = headline_text(summary, seeds, subjects)
    header = "| seed | subject | " + " | ".join(
        f"{h} {label}" for _, h, _ in SCORES for _, label in MESHES) + " |"
    lines = [header, "|---|---|" + "---|" * (2 * len(SCORES))]
    for r in rows:
        cells = [_fmt(r[f"{mesh}/{key}"], 2 if key.endswith("_cm") else 3)
                 for key, _, _ in SCORES for mesh, _ in MESHES]
        lines.append(f"| {r['seed']} | {r['subject']} | " + " | ".join(cells) + " |")
    text = "\n\n".join([
        "# Generalisation: the full model on the test subjects, against the fitted body",
        f"Each seed trains the full model once ({steps} steps at most; the step "
        "kept is chosen on the validation subjects); each test subject is reconstructed "
        "and scored against its truth, beside its fitted naked body.",
        "\n".join(lines), head]) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    keys = [f"{mesh}/{key}" for key, _, _ in SCORES for mesh, _ in MESHES]
    writer.writerow(["seed", "subject", *keys])
    for r in rows:
        writer.writerow([r["seed"], r["subject"], *(f"{r[k]:.6g}" for k in keys)])
    write_tables(csv_output, markdown, html_output, out.getvalue(), text, "Generalisation")
    with atomic_path(headline) as tmp:
        Path(tmp).write_text(head + "\n", encoding="utf-8")
    return summary

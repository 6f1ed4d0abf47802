"""What the ablation table and the views table share: the evaluation reports of many
reconstructions, grouped by row and seed, meaned over subjects, then over seeds with their
spread, and written as CSV, Markdown and HTML (:func:`pipeline.evaluate.write_tables`)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluate import METRIC_FIELDS, load_reports, mean_metrics, metrics_of
from pipeline.metrics import SurfaceMetrics

COLUMNS = (("chamfer_cm", "Chamfer (cm)"), ("p2s_cm", "P2S (cm)"), ("s2p_cm", "S2P (cm)"),
           ("normal_consistency", "NC"), ("fscore_2cm", "F@2cm"), ("iou", "IoU"),
           ("mvp_chamfer_cm", "MVP CD (cm)"))
"""The scores a study table shows, with their headers."""


@dataclass(frozen=True)
class StudyRow:
    """One row of a study: the mean over subjects per seed, then over seeds.

    Attributes:
        key: the row's key (variant name, or (selection, count)).
        per_seed: seed → the mean over the subjects of that seed's reconstructions.
        mean: the mean of ``per_seed`` (each score over the seeds with a surface).
        spread: per score, max − min over the seeds (0 with one seed).
        subjects: the subjects pooled.
        n_views: the views each reconstruction used (their set over subjects and seeds).
    """

    key: Any
    per_seed: dict[int, SurfaceMetrics]
    mean: SurfaceMetrics
    spread: dict[str, float]
    subjects: tuple[str, ...]
    n_views: tuple[int, ...]


def study_rows(reports: Sequence[Path], parse: Callable[[str], tuple[Any, int]],
               mesh: str = "model") -> list[StudyRow]:
    """Group evaluation reports into rows.

    Args:
        reports: ``eval/<model>/<subject>.json`` files.
        parse: the report's ``model`` name → ``(row key, seed)``.
        mesh: which mesh's scores (``model``, or a baseline ``fitted_body``/``truth_body``).

    Returns:
        One :class:`StudyRow` per key, in the order keys first appear.
    """
    grouped: dict[Any, dict[int, list[dict[str, Any]]]] = {}
    for report in load_reports(reports):
        key, seed = parse(report["model"])
        grouped.setdefault(key, {}).setdefault(seed, []).append(report)
    rows = []
    for key, seeds in grouped.items():
        per_seed = {seed: mean_metrics([metrics_of(r["metrics"][mesh]) for r in group])
                    for seed, group in sorted(seeds.items())}
        values = list(per_seed.values())
        spread = {}
        for name in METRIC_FIELDS:
            finite = [getattr(m, name) for m in values if not math.isnan(getattr(m, name))]
            spread[name] = float(np.ptp(finite)) if finite else math.nan
        everyone = [r for group in seeds.values() for r in group]
        rows.append(StudyRow(
            key=key, per_seed=per_seed, mean=mean_metrics(values), spread=spread,
            subjects=tuple(sorted({r["subject"] for r in everyone})),
            n_views=tuple(sorted({int(r["n_views"]) for r in everyone}))))
    return rows


def cell(value: float, spread: float | None = None, digits: int = 2) -> str:
    """``1.23`` or ``1.23 ± 0.05`` (half the spread); ``—`` for NaN."""
    if math.isnan(value):
        return "—"
    if spread is None or math.isnan(spread) or spread == 0:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {spread / 2:.{digits}f}"


def score_cells(row: StudyRow, with_spread: bool) -> list[str]:
    """The :data:`COLUMNS` cells of a row (mean ± half the seed spread when asked)."""
    return [cell(getattr(row.mean, name), row.spread[name] if with_spread else None,
                 2 if name.endswith("_cm") else 3) for name, _ in COLUMNS]


def per_seed_csv(rows: Sequence[StudyRow], key_columns: Sequence[str],
                 key_values: Callable[[Any], Sequence[Any]]) -> str:
    """One CSV line per row and seed (then the row's mean as seed ``mean``): the key
    columns, the seed, the subjects, every score."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*key_columns, "seed", "subjects", "n_views", "surface", *METRIC_FIELDS])
    for row in rows:
        entries = [*row.per_seed.items(), ("mean", row.mean)]
        for seed, m in entries:
            values = ["" if math.isnan(getattr(m, k)) else f"{getattr(m, k):.6g}"
                      for k in METRIC_FIELDS]
            writer.writerow([*key_values(row.key), seed, " ".join(row.subjects),
                             " ".join(map(str, row.n_views)), m.surface, *values])
    return out.getvalue()

"""The colour measures of every coloured subject as one table (the evaluation summary's
"Colour" section): held-out-view PSNR and SSIM, and where the truth has colours the CIEDE2000
error against it, each beside the fitted body's."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.io import read_json

COLUMNS = (("held-out PSNR (dB)", ("held_out", "psnr"), 2),
           ("held-out SSIM", ("held_out", "ssim"), 3),
           ("matte covered", ("held_out", "coverage"), 3),
           ("ΔE00 mean", ("truth_ciede2000", "mean"), 2),
           ("ΔE00 p95", ("truth_ciede2000", "p95"), 2))


def load_colours(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The colour reports (``eval/<model>/<subject>.colour.json``); PipelineError naming a
    file that is not one."""
    loaded = []
    for path in paths:
        data = read_json(path)
        missing = {"subject", "split", "model", "fitted_body"} - set(data)
        if missing:
            raise PipelineError(f"{path} is not a colour report (missing {sorted(missing)})")
        loaded.append(data)
    return loaded


def measure(report: Mapping[str, Any], mesh: str, key: tuple[str, str]) -> float | None:
    """One measure of one mesh (``model`` or ``fitted_body``), None where absent."""
    value = report.get(mesh, {}).get(key[0], {})
    return value.get(key[1]) if isinstance(value, Mapping) else None


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def colour_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one row per subject and one mean per split (test first as the reports come),
    each measure as "reconstruction / fitted body"; the rows that beat the fitted body's
    held-out PSNR counted per split."""
    header = "| subject | split | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    splits = list(dict.fromkeys(r["split"] for r in reports))
    verdicts = []
    for split in splits:
        group = [r for r in reports if r["split"] == split]
        for r in [*group, {"subject": "mean", "split": split}]:
            cells = []
            for _, key, digits in COLUMNS:
                pair = []
                for mesh in ("model", "fitted_body"):
                    if r["subject"] == "mean":
                        values = [v for g in group if (v := measure(g, mesh, key)) is not None]
                        pair.append(statistics.fmean(values) if values else None)
                    else:
                        pair.append(measure(r, mesh, key))
                cells.append(f"{_cell(pair[0], digits)} / {_cell(pair[1], digits)}")
            name = f"**mean of {len(group)}**" if r["subject"] == "mean" else r["subject"]
            lines.append(f"| {name} | {split} | " + " | ".join(cells) + " |")
        scored = [r for r in group if measure(r, "model", ("held_out", "psnr")) is not None
                  and measure(r, "fitted_body", ("held_out", "psnr")) is not None]
        above = sum(measure(r, "model", ("held_out", "psnr"))
                    > measure(r, "fitted_body", ("held_out", "psnr")) for r in scored)
        verdicts.append(f"{split}: the reconstruction's held-out PSNR is above the fitted "
                        f"body's on {above} of {len(scored)} subjects.")
    fallback = [f"{r['subject']}: {r['model']['fallback']}" for r in reports
                if "fallback" in r.get("model", {})]
    notes = ["", "Each cell: reconstruction / fitted body, both coloured from the same photos "
             "by the same code (docs/colour.md). Held-out: each view drawn from the colours "
             "of all the others, against its photo over the matte's pixels the mesh covers "
             "(higher is better); matte covered: the share of them. "
             "ΔE00: CIEDE2000 against the truth's albedo at the nearest truth vertex, the "
             "photos' shading not removed (lower is better); – where the truth has no "
             "colours.", "", *verdicts]
    if fallback:
        notes += ["", "Grey (no colour): " + "; ".join(fallback)]
    return "\n".join(lines + notes)

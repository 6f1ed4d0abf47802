"""The views study: how many photos a reconstruction needs.

The trained Pixel2ISDF reconstructs each test subject from 1, 2, 4, 8 … or all its views,
drawn from one action or across actions (:func:`models.data.select_views`); each mesh is
evaluated like the main one (``eval/views/<selection>-<count>/<subject>.json``), and
:func:`table` gathers them. No report has this table; it tells a user how many photos to
take, and whether to take them in one pose or in several.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.evaluate import write_tables
from pipeline.studies import COLUMNS, cell, per_seed_csv, score_cells, study_rows

SELECTION_LABELS = {"one_action": "one action", "across": "across actions"}


def count_name(count: int | None) -> str:
    """A view count as it appears in paths: ``4`` or ``all``."""
    return "all" if count is None else str(count)


def parse_model(name: str) -> tuple[tuple[str, str], int]:
    """``views/<selection>-<count>`` → ((selection, count), 0)."""
    parts = name.split("/")
    selection, _, count = parts[-1].rpartition("-") if len(parts) == 2 else ("", "", "")
    if parts[0] != "views" or selection not in SELECTION_LABELS or not (
            count == "all" or count.isdigit()):
        raise PipelineError(f"evaluation of {name!r} is not a views-study run "
                            "(views/<one_action|across>-<count|all>)")
    return (selection, count), 0


def _order(key: tuple[str, str]) -> tuple[int, int]:
    selection, count = key
    return (list(SELECTION_LABELS).index(selection),
            1 << 30 if count == "all" else int(count))


def table(*, reports: list[Path], csv_output: Path, markdown: Path, html_output: Path,
          params: dict[str, Any]) -> dict[str, Any]:
    """The views table: Chamfer per view count (rows) and selection (columns), then every
    score per run. ``params``: the ``views_study`` section (its ``seed`` drew the views)."""
    rows = sorted(study_rows(reports, parse_model), key=lambda r: _order(r.key))
    if not rows:
        raise PipelineError("views table: no evaluation report given")
    by_key = {r.key: r for r in rows}
    counts = sorted({count for _, count in by_key}, key=lambda c: _order(("one_action", c)))
    selections = [s for s in SELECTION_LABELS if any(k[0] == s for k in by_key)]
    grid = ["| views | " + " | ".join(f"Chamfer (cm), {SELECTION_LABELS[s]}"
                                      for s in selections) + " |",
            "|" + "---|" * (len(selections) + 1)]
    for count in counts:
        cells = []
        for s in selections:
            row = by_key.get((s, count))
            cells.append("—" if row is None else
                         f"{cell(row.mean.chamfer_cm)} ({'/'.join(map(str, row.n_views))} "
                         "views)")
        grid.append(f"| {count} | " + " | ".join(cells) + " |")
    detail = ["| selection | views | " + " | ".join(h for _, h in COLUMNS) + " |",
              "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        selection, count = row.key
        detail.append("| " + " | ".join([SELECTION_LABELS[selection], count,
                                         *score_cells(row, False)]) + " |")
    subjects = ", ".join(rows[0].subjects)
    text = "\n\n".join([
        "# Views study: Chamfer against the number of input views",
        f"One trained model; test subjects {subjects}; views drawn with seed "
        f"{params['seed']} (models.data.select_views). 'one action': views of the action "
        "with the most usable views; 'across actions': one view per action in turn. 'all' "
        "is every usable view (of that action, or of every action). Mean over the test "
        "subjects; the count of views used is in brackets.",
        "\n".join(grid), "## Every score", "\n".join(detail)]) + "\n"
    write_tables(csv_output, markdown, html_output,
                 per_seed_csv(rows, ["selection", "count"], list), text, "Views study")
    return {f"{s}-{c}": by_key[(s, c)].mean.chamfer_cm for s, c in by_key}

"""The ``evaluate`` stage: a reconstruction scored against the truth, beside two baselines.

Per subject (:func:`run`): the model's canonical mesh (``recon/<model>/<subject>.ply``), and
two baselines scored by the same code against the same truth
(``truth/<subject>/canonical_clothed.ply``):

- ``fitted_body``: the fitted naked canonical body from the subject's cache (what the body
  prior alone gives, with no network);
- ``truth_body``: the truth naked body (``truth/<subject>/canonical_body.ply``), the best a
  naked-body prior could do. Only our generator has one: where the file does not exist (a
  real data set) the row is left out and the log says so.

The truth may be a scan with holes (``data.scans``, pipeline/scans.py): its inside for the
volume IoU is then the winding number's, and a scan too broken to sign is refused, named.

Writes ``eval/<model>/<subject>.json``. The summary (:func:`summarize`) gathers every subject
into ``metrics.csv`` (one row per subject and mesh, then the means per split), a Markdown
table and the same table as HTML for the Snakemake report. A model that does not beat the
fitted naked body's Chamfer distance is reported as such. Metrics: :mod:`pipeline.metrics`,
definitions in docs/evaluation.md.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from models.cache_io import canonical_body
from pipeline.cache import REGISTERED_BODY, registered_truth
from pipeline.colouring.summary import colour_table, load_colours
from pipeline.components import count_components
from pipeline.errors import PipelineError
from pipeline.frames import read_rotation
from pipeline.io import atomic_path, read_json, write_json
from pipeline.meshio import read_ply
from pipeline.metrics import SurfaceMetrics, compare_meshes, load_truth, markdown_table
from pipeline.scans import ScanPolicy, read_mesh
from pipeline.selfcheck import load_selfchecks, selfcheck_table

log = logging.getLogger(__name__)

MESHES = ("model", "fitted_body", "truth_body")
"""Rows of every subject's table: the reconstruction, then the two baselines."""

MESH_LABELS = {"model": "{model}", "fitted_body": "baseline: fitted naked body",
               "truth_body": "baseline: truth naked body"}

METRIC_FIELDS = tuple(f.name for f in fields(SurfaceMetrics) if f.name not in
                      ("n_samples", "surface"))
"""The numeric scores, in table order."""


def prediction(mesh: Path, recon: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The reconstruction's arrays; empty when its report says it has no surface."""
    if not recon.get("surface", False):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    if not mesh.is_file():
        raise PipelineError(f"reconstruction {mesh} is missing (its report says it has a "
                            "surface); rerun the reconstruct rule")
    loaded = read_ply(mesh)
    return np.asarray(loaded.vertices, dtype=np.float64), np.asarray(loaded.faces, np.int64)


def _compare(pred: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray],
             params: Mapping[str, Any], truth_closed: bool = True) -> SurfaceMetrics:
    return compare_meshes(*pred, *truth, n_samples=params["n_samples"], n_iou=params["n_iou"],
                          iou_padding=params["iou_padding"], seed=params["seed"],
                          mvp_samples=params["mvp_samples"], truth_closed=truth_closed)


def dataset_frame_scores(*, mesh: Path, body: Path, scan: Path, rotation: Path | None,
                         unit_m: float, params: Mapping[str, Any]) -> dict[str, Any]:
    """The reconstruction and the fitted body written in the data set's frame
    (``submission/<model>/<subject>.obj``, ``submission/<model>/fitted_body/<subject>.obj``)
    scored against the
    data set's own canonical scan (its rotation file applied) as its benchmark does: no
    alignment, distances in the data set's units × ``unit_m`` (so still centimetres), the
    MVP-Human Chamfer (``mvp_chamfer_cm``) beside ours."""
    scan_v, scan_f = read_mesh(scan)
    if rotation is not None:
        scan_v = scan_v @ read_rotation(rotation).T
    truth = (unit_m * scan_v, scan_f)
    out: dict[str, Any] = {"scan": str(scan), "rotation_file": None if rotation is None
                           else str(rotation), "unit_m": unit_m}
    for name, path in (("model", mesh), ("fitted_body", body)):
        vertices, faces = read_mesh(path)
        out[name] = _compare((unit_m * vertices, faces), truth, params, False).to_dict()
    return out


def run(*, mesh: Path, recon: Path, truth: Path, cache: Path, output: Path,
        truth_body: Path | None = None, model: str = "pixel2isdf", scans: str | None = None,
        dataset_mesh: Path | None = None, dataset_body: Path | None = None,
        dataset_scan: Path | None = None, dataset_rotation: Path | None = None,
        unit_m: float = 1.0, params: dict[str, Any]) -> dict[str, Any]:
    """Score one subject's reconstruction and the baselines against its truth scan.

    ``truth_body``: the truth naked body, scored where the file exists. ``scans``:
    ``data.scans`` as JSON (which truth scans may have holes; None: the defaults).
    ``dataset_*``: the meshes in the data set's frame and its own scan (and rotation file),
    scored there too (:func:`dataset_frame_scores`; a registered data set).

    Raises:
        PipelineError: naming the file, when the truth is missing, not closed and not
            signable, or the reconstruction or cache cannot be read.
    """
    start = time.perf_counter()
    report = read_json(recon)
    policy = ScanPolicy.from_json(scans)
    if (Path(truth).parent / REGISTERED_BODY).is_file():
        # a registered scan: checked where it was captured; its unposed copy is folded where
        # limbs meet, so the IoU's inside (its winding number) is unsure there (docs)
        registered = registered_truth(Path(truth).parent, policy)[0]
        truth_v, truth_f, sign = registered.vertices, registered.faces, registered.sign
    else:
        truth_v, truth_f, sign = policy.read(truth, " (the evaluation's truth)")
    meshes = {"model": prediction(mesh, report), "fitted_body": canonical_body(cache)}
    if truth_body is not None and Path(truth_body).is_file():
        meshes["truth_body"] = load_truth(truth_body)
    else:
        log.info("%s: no truth naked body (%s): its baseline row is left out",
                 report.get("subject", mesh.stem), truth_body)
    metrics = {name: _compare(arrays, (truth_v, truth_f), params, sign.closed)
               for name, arrays in meshes.items()}
    ours, prior = metrics["model"], metrics["fitted_body"]
    beats = bool(ours.surface and ours.chamfer_cm < prior.chamfer_cm)
    summary = {
        "subject": report.get("subject", mesh.stem), "split": report.get("split", "test"),
        "model": model, "surface": ours.surface, "truth": str(truth),
        "truth_sign": sign.as_dict(),
        "metrics": {name: m.to_dict() for name, m in metrics.items()},
        "beats_fitted_body": beats, "n_views": report.get("n_views"),
        "components": count_components(*meshes["model"])}
    if dataset_mesh is not None and dataset_body is not None and dataset_scan is not None:
        summary["dataset_frame"] = dataset_frame_scores(
            mesh=dataset_mesh, body=dataset_body, scan=dataset_scan, rotation=dataset_rotation,
            unit_m=unit_m, params=params)
        log.info("%s: in the data set's frame, MVP-Human Chamfer %.2f cm (fitted body %.2f)",
                 summary["subject"], summary["dataset_frame"]["model"]["mvp_chamfer_cm"],
                 summary["dataset_frame"]["fitted_body"]["mvp_chamfer_cm"])
    summary["seconds"] = round(time.perf_counter() - start, 3)
    write_json(output, summary)
    verdict = "beats" if beats else "does NOT beat"
    log.info("%s (%s): Chamfer %.2f cm (%s the fitted naked body's %.2f cm), %.1f s",
             summary["subject"], summary["split"], ours.chamfer_cm, verdict, prior.chamfer_cm,
             summary["seconds"])
    return summary


def metrics_of(record: Mapping[str, Any]) -> SurfaceMetrics:
    """One mesh's scores of a report as :class:`SurfaceMetrics` (JSON null → NaN)."""
    values = {k: (math.nan if record.get(k) is None else float(record[k]))
              for k in METRIC_FIELDS}
    return SurfaceMetrics(**values, n_samples=int(record["n_samples"]),
                          surface=bool(record["surface"]))


def mean_metrics(rows: Sequence[SurfaceMetrics]) -> SurfaceMetrics:
    """The mean of each score over the rows that have a surface (IoU over all rows: a mesh
    with no surface has IoU 0); ``surface`` is False only when no row has one."""
    with_surface = [m for m in rows if m.surface]
    means = {}
    for name in METRIC_FIELDS:
        pool = rows if name == "iou" else with_surface
        means[name] = float(np.mean([getattr(m, name) for m in pool])) if pool else math.nan
    return SurfaceMetrics(**means, n_samples=rows[0].n_samples, surface=bool(with_surface))


def load_reports(reports: Sequence[Path]) -> list[dict[str, Any]]:
    """The evaluation reports (``eval/<model>/<subject>.json``), test subjects first;
    PipelineError naming a file that is not one."""
    loaded = []
    for path in reports:
        data = read_json(path)
        missing = {"subject", "split", "model", "metrics"} - set(data)
        meshes = set(data.get("metrics", {}))
        if missing or not {"model", "fitted_body"} <= meshes <= set(MESHES):
            raise PipelineError(f"{path} is not an evaluation report (missing "
                                f"{sorted(missing) or 'per-mesh metrics'})")
        loaded.append(data)
    return sorted(loaded, key=lambda d: (d["split"] != "test", d["subject"]))


def _csv_text(rows: Sequence[tuple[str, str, str, SurfaceMetrics]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["subject", "split", "mesh", "surface", *METRIC_FIELDS, "n_samples"])
    for subject, split, mesh, m in rows:
        values = ["" if math.isnan(getattr(m, k)) else f"{getattr(m, k):.6g}"
                  for k in METRIC_FIELDS]
        writer.writerow([subject, split, mesh, m.surface, *values, m.n_samples])
    return out.getvalue()


def _verdicts(model: str, means: Mapping[str, dict[str, SurfaceMetrics]],
              counts: Mapping[str, tuple[int, int, int]]) -> list[str]:
    lines = []
    for split, by_mesh in means.items():
        ours, prior = by_mesh["model"], by_mesh["fitted_body"]
        n, beaten, no_surface = counts[split]
        if not ours.surface:
            lines.append(f"- {split}: {model} has no surface on any of {n} subject(s).")
            continue
        verdict = ("beats" if ours.chamfer_cm < prior.chamfer_cm
                   else "**does not beat**")
        lines.append(f"- {split}: {model} {verdict} the fitted naked body on mean Chamfer "
                     f"({ours.chamfer_cm:.2f} cm against {prior.chamfer_cm:.2f} cm); it beats "
                     f"it on {beaten} of {n} subject(s)"
                     + (f"; {no_surface} had no surface" if no_surface else "") + ".")
    return lines


def html_page(markdown: str, title: str) -> str:
    """The Markdown this module writes (headings, pipe tables, bullet lists, paragraphs) as
    a standalone HTML page."""
    body = []
    for block in markdown.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if lines and lines[0].startswith("|"):
            cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines
                     if not set(ln) <= set("|-: ")]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row)
                           + "</tr>" for row in cells[1:])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif lines and lines[0].startswith("#"):
            body.append(f"<h2>{html.escape(lines[0].lstrip('# '))}</h2>")
            if lines[1:]:
                body.append(f"<p>{html.escape(' '.join(lines[1:]))}</p>")
        elif lines and lines[0].startswith("- "):
            items = "".join(f"<li>{html.escape(ln[2:].replace('**', ''))}</li>"
                            for ln in lines)
            body.append(f"<ul>{items}</ul>")
        elif lines:
            body.append(f"<p>{html.escape(' '.join(lines))}</p>")
    style = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;"
             "margin-bottom:1.5em}th,td{border:1px solid #bbb;padding:3px 8px;"
             "text-align:right}th:first-child,td:first-child{text-align:left}"
             "th{background:#eee}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            + "".join(body) + "</body></html>\n")


def write_tables(csv_output: Path, markdown: Path, html_output: Path, csv_text: str,
                 text: str, title: str) -> None:
    """Write a study's CSV, its Markdown and the Markdown as an HTML page, each atomically."""
    for path, content in ((csv_output, csv_text), (markdown, text),
                          (html_output, html_page(text, title))):
        with atomic_path(path) as tmp:
            tmp.write_text(content, encoding="utf-8")


def summarize(*, reports: list[Path] | None = None, selfchecks: list[Path] | None = None,
              colours: list[Path] | None = None, model: str | None = None, csv_output: Path,
              markdown: Path, html_output: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Gather per-subject reports into ``metrics.csv``, a Markdown and an HTML summary.

    The means are per split (test first); the Markdown holds one table of means per split,
    one table per subject, and a line per split saying whether the model beats the fitted
    naked body. ``selfchecks`` (the truth-free checks of every reconstructed subject) add a
    table where a subject without a truth (split ``predict``) reads "no truth";
    ``colours`` (the colour stage's reports) add the colour measures beside the fitted
    body's. ``model`` names the model when no subject has a truth to score against.
    """
    del params  # the summary has no parameters of its own; the rule passes the section
    loaded = load_reports(reports or [])
    checks = load_selfchecks(selfchecks or [])
    if not loaded and not checks:
        raise PipelineError("evaluate summary: no per-subject report given")
    coloured = load_colours(colours or [])
    names = {d["model"] for d in loaded} | ({model} if model else set())
    if len(names) != 1:
        raise PipelineError(f"evaluate summary: the reports are of models {sorted(names)}; "
                            "give one model's reports (and --model when none has a truth)")
    (model,) = names
    rows, means, counts = [], {}, {}
    sections = [f"# Evaluation of {model}", "Distances in cm, lower is better; NC, F-scores "
                "and IoU higher is better (docs/evaluation.md). MVP CD is the MVP-Human "
                "challenge's Chamfer: 10,000 area-uniform samples on each surface, each to "
                "the other mesh's nearest vertex, not squared, × 100, the mean of both "
                "directions, no alignment."]
    for split in dict.fromkeys(d["split"] for d in loaded):
        group = [d for d in loaded if d["split"] == split]
        shared = [m for m in MESHES if all(m in d["metrics"] for d in group)]
        per_mesh = {mesh: [metrics_of(d["metrics"][mesh]) for d in group] for mesh in shared}
        for d in group:
            for mesh in (m for m in MESHES if m in d["metrics"]):
                rows.append((d["subject"], split, mesh, metrics_of(d["metrics"][mesh])))
        means[split] = {mesh: mean_metrics(ms) for mesh, ms in per_mesh.items()}
        for mesh in shared:
            rows.append(("mean", split, mesh, means[split][mesh]))
        counts[split] = (len(group), sum(bool(d["beats_fitted_body"]) for d in group),
                         sum(not d["surface"] for d in group))
        subjects = ", ".join(d["subject"] for d in group)
        sections.append(f"## {split} subjects: mean over {len(group)} ({subjects})")
        sections.append(markdown_table([(MESH_LABELS[m].format(model=model),
                                         means[split][m]) for m in shared]).rstrip())
    if loaded:
        sections.append("\n".join(_verdicts(model, means, counts)))
    if checks:
        sections.append("## Quality without truth: every reconstructed subject")
        sections.append("Reprojection IoU: the reconstruction reposed into each input view "
                        "against that view's matte, mean over the views that passed the fit's "
                        "checks, beside the fitted body's from the same code (docs/evaluation.md)."
                        " Subjects without a scan (data.predict_subjects) read \"no truth\".")
        sections.append(selfcheck_table(checks, {d["subject"]: d["metrics"]["model"]
                                                 ["chamfer_cm"] for d in loaded}))
    if coloured:
        sections.append("## Colour: every coloured subject")
        sections.append(colour_table(coloured))
    for d in loaded:
        sections.append(f"## {d['subject']} ({d['split']}, {d['n_views']} views)")
        sections.append(markdown_table([(MESH_LABELS[m].format(model=model),
                                         metrics_of(d["metrics"][m])) for m in MESHES
                                        if m in d["metrics"]]).rstrip())
    text = "\n\n".join(sections) + "\n"
    write_tables(csv_output, markdown, html_output, _csv_text(rows), text,
                 f"Evaluation of {model}")
    return {split: {mesh: m.to_dict() for mesh, m in by.items()} for split, by in means.items()}

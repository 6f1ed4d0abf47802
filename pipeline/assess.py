"""Assess: everything after a reconstruction, in one process per subject (issue 29).

Five stages that each read the same reconstruction ran as five jobs a subject, each paying
the interpreter and its imports; here they run in turn in one, each writing its files as it
does when run alone::

    evaluate   eval/<model>/<subject>.json              scores against the truth scan
    render     report/render/<model>/<subject>.png      the mesh beside the truth
    selfcheck  eval/<model>/<subject>.selfcheck.json, recon/<model>/reposed/<subject>/,
               report/selfcheck/<model>/<subject>/      against its own inputs
    colour     recon/<model>/coloured/<subject>.ply, recon/<model>/fitted_body/<subject>.ply,
               eval/<model>/<subject>.colour.json, report/colour/<model>/<subject>.png
    export     recon/<model>/<subject>.glb              the skinned, textured avatar

A subject without a truth scan (``data.predict_subjects``) gets the last three only. The
stages that read the truth run first, so a truth the evaluation refuses fails the job before
the rest of its work. Each stage is still run alone by ``python -m pipeline evaluate|render|
selfcheck|colour|export``, and the rules' ``evaluate`` scores the experiments' meshes alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import colour as colour_stage
from pipeline import evaluate as evaluate_stage
from pipeline import export as export_stage
from pipeline import report as report_stage
from pipeline import selfcheck as selfcheck_stage
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

SECTIONS = ("colour", "fit", "export", "report", "evaluate")
"""The config sections the stage reads (``--params`` holds one object per section)."""

TRUTH_SCAN = "canonical_clothed.ply"
TRUTH_BODY = "canonical_body.ply"


def _timed(seconds: dict[str, float], name: str, call: Callable[[], Any]) -> None:
    start = time.perf_counter()
    call()
    seconds[name] = time.perf_counter() - start


def run(*, mesh: Path, recon: Path, cache: Path, fit: Path, fit_report: Path,
        selfcheck: Path, reposed: Path, overlays: Path, coloured: Path, body_coloured: Path,
        colour_report: Path, colour_figure: Path, avatar: Path,
        truth: Path | None = None, evaluation: Path | None = None, render: Path | None = None,
        model: str = "pixel2isdf", scans: str | None = None,
        dataset_mesh: Path | None = None, dataset_body: Path | None = None,
        dataset_scan: Path | None = None, dataset_rotation: Path | None = None,
        unit_m: float = 1.0, params: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Assess one subject's reconstruction (``mesh``, its report ``recon``).

    ``cache``: the subject's training cache (its views and fitted body); ``fit`` and
    ``fit_report``: the fit's npz (the bones) and JSON (the body's size). ``truth``: the
    subject's truth folder (its ``canonical_clothed.ply`` and, where present,
    ``canonical_body.ply``); with it, ``evaluation`` and ``render`` are written too, and the
    colour stage scores the truth's colours. ``scans``, ``dataset_*``, ``unit_m``: as the
    evaluate stage takes them. Returns each stage's seconds.

    Raises:
        PipelineError: when ``evaluation`` or ``render`` is asked for without a truth (or
            only one of them), and whatever a stage raises, naming its file.
    """
    truthed = evaluation is not None or render is not None
    if truthed and (truth is None or evaluation is None or render is None):
        raise PipelineError("assess: --evaluation and --render go together, with --truth "
                            f"(got truth={truth}, evaluation={evaluation}, render={render})")
    seconds: dict[str, float] = {}
    if truth is not None and evaluation is not None and render is not None:
        scan = truth / TRUTH_SCAN
        _timed(seconds, "evaluate", lambda: evaluate_stage.run(
            mesh=mesh, recon=recon, truth=scan, cache=cache, output=evaluation,
            truth_body=truth / TRUTH_BODY, model=model, scans=scans,
            dataset_mesh=dataset_mesh, dataset_body=dataset_body, dataset_scan=dataset_scan,
            dataset_rotation=dataset_rotation, unit_m=unit_m, params=params["evaluate"]))
        _timed(seconds, "render", lambda: report_stage.render(
            mesh=mesh, recon=recon, truth=scan, output=render, params=params["report"]))
    _timed(seconds, "selfcheck", lambda: selfcheck_stage.run(
        mesh=mesh, recon=recon, cache=cache, output=selfcheck, reposed=reposed,
        overlays=overlays, fit=fit_report))
    _timed(seconds, "colour", lambda: colour_stage.run(
        mesh=mesh, recon=recon, cache=cache, output=coloured, body_output=body_coloured,
        report=colour_report, params=params["colour"], truth=truth,
        figure_output=colour_figure))
    _timed(seconds, "export", lambda: export_stage.run(
        mesh=coloured, recon=recon, fit=fit, output=avatar,
        params={"fit": params["fit"], "export": params["export"]}))
    log.info("%s (%s): %s", mesh.stem, model,
             ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items()))
    return seconds

"""Fake evaluation reports (``eval/<model>/<subject>.json``) for the study tables' tests."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.evaluate import METRIC_FIELDS


def scores(chamfer: float, surface: bool = True) -> dict:
    """One mesh's scores: Chamfer ``chamfer`` cm, every other score derived from it."""
    values = {name: chamfer / 10 for name in METRIC_FIELDS}
    values.update(chamfer_cm=chamfer, p2s_cm=chamfer + 1, s2p_cm=chamfer - 1,
                  mvp_chamfer_cm=chamfer * 1.1)
    return {**values, "n_samples": 1000, "surface": surface}


def write_report(root: Path, model: str, subject: str, chamfer: float,
                 n_views: int = 8, fitted: float = 2.0) -> Path:
    """An evaluation report of ``model`` on ``subject`` under ``root``; returns its path."""
    path = root / "eval" / model / f"{subject}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "subject": subject, "split": "test", "model": model, "n_views": n_views,
        "surface": True, "beats_fitted_body": chamfer < fitted,
        "metrics": {"model": scores(chamfer), "fitted_body": scores(fitted),
                    "truth_body": scores(fitted + 0.5)}}))
    return path

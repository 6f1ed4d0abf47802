"""Report figures (pipeline/report.py): distance colours, renders beside the truth, curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from pipeline.meshio import write_ply
from pipeline.report import curves, distance_colours, render
from tests.cache_fakes import sphere

PARAMS = {"size": 64, "colour_max_cm": 5.0}


def test_distance_colours_span_the_colour_map_and_clip() -> None:
    colours = distance_colours(np.array([0.0, 2.5, 5.0, 50.0]), 5.0)
    viridis = matplotlib.colormaps["viridis"]
    assert colours.shape == (4, 3)
    np.testing.assert_allclose(colours[0], viridis(0.0)[:3])
    np.testing.assert_allclose(colours[1], viridis(0.5)[:3])
    np.testing.assert_allclose(colours[3], colours[2])  # beyond the top: the top colour


def _subject(tmp_path: Path, radius: float | None) -> dict[str, Path]:
    truth = tmp_path / "truth.ply"
    write_ply(truth, *sphere(0.4))
    mesh, recon = tmp_path / "r.ply", tmp_path / "r.json"
    arrays = sphere(radius) if radius else (np.zeros((0, 3)), np.zeros((0, 3), dtype=int))
    write_ply(mesh, *arrays)
    recon.write_text(json.dumps({"subject": "s", "split": "test", "surface": bool(radius),
                                 "n_views": 2}))
    return {"mesh": mesh, "recon": recon, "truth": truth}


def _mean_colour(path: Path) -> np.ndarray:
    image = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    top = image[: image.shape[0] // 2]  # the reconstruction row
    coloured = top[np.ptp(top, axis=-1) > 40]  # saturated pixels: the mesh and the colour bar
    return coloured.mean(axis=0)


def test_render_colours_by_distance(tmp_path: Path) -> None:
    near, far = tmp_path / "near", tmp_path / "far"
    near.mkdir(), far.mkdir()
    render(**_subject(near, 0.399), output=near / "out.png", params=PARAMS)
    render(**_subject(far, 0.5), output=far / "out.png", params=PARAMS)
    image = Image.open(near / "out.png")
    assert image.format == "PNG" and image.width > 3 * PARAMS["size"]
    # 0.1 cm away: dark purple (viridis low); 10 cm away: yellow (viridis top, clipped)
    purple, yellow = _mean_colour(near / "out.png"), _mean_colour(far / "out.png")
    assert yellow[1] - purple[1] > 40 and yellow[0] > purple[0]


def test_render_of_no_surface_draws_the_truth_only(tmp_path: Path) -> None:
    render(**_subject(tmp_path, None), output=tmp_path / "out.png", params=PARAMS)
    assert Image.open(tmp_path / "out.png").format == "PNG"


def test_curves_plot_every_run(tmp_path: Path) -> None:
    runs = []
    for name in ("normal_net", "pixel2isdf"):
        path = tmp_path / name / "train.json"
        path.parent.mkdir()
        history = [{"step": s, "loss/total": 1.0 / s, "loss/sdf": 0.5 / s} for s in (10, 20)]
        history.append({"step": 20, "val/total": 0.1})
        path.write_text(json.dumps({"history": history, "steps": 20, "seed": 1}))
        runs.append(path)
    output = tmp_path / "curves.png"
    curves(summaries=runs, output=output, params={})
    image = Image.open(output)
    assert image.height > image.width / 2  # two runs: two rows of panels


def test_curves_name_the_broken_summary(tmp_path: Path) -> None:
    broken = tmp_path / "train.json"
    broken.write_text("{")
    with pytest.raises(Exception, match=str(broken)):
        curves(summaries=[broken], output=tmp_path / "c.png", params={})
    assert not (tmp_path / "c.png").exists()

"""The fitted body's height without cameras: the shape prior's mean, and a given height.

    .venv/bin/python benchmarks/height.py --configfile config.yaml presets/learning_curve.yaml \
        --write docs/results.md

Refits each test subject from the run's own crops, masks and keypoints with the cameras
hidden (``fit.camera: weak_perspective``) under three settings, and reads the run's own
calibrated fit as the baseline of the same table:

* ``anny_mean``: the shape prior alone, centred on Anny's mean phenotype (all 0.5; age 0.5
  is an adolescent's): the fit before issue 27;
* ``population_shape``: the shape prior alone, centred on the training population's mean
  phenotype (the midpoints of ``synthesize.phenotype``);
* ``population``: the default: that prior, and the standing height pulled to its mean
  phenotype's (``fit.prior_height_spread``);
* ``given``: with the truth's standing height given (``fit.height_m``).

Heights are standing heights (rest pose, pipeline/fitting/scale.py) of the fitted shape and
of the truth's phenotype, both through Anny. Refits are kept under
``results/<dataset>/height/<variant>/`` and reused.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.bodymodel.anny_model import AnnyBodyModel
from pipeline.config import load_configs, stage_params
from pipeline.fit import fit_to_files
from pipeline.fitting.scale import standing_height
from pipeline.io import read_json
from pipeline.results_doc import publish

VARIANTS = ("calibrated", "anny_mean", "population_shape", "population", "given")


def population_phenotype(config: dict[str, Any]) -> dict[str, float]:
    """The midpoints of the synthetic training population's phenotype ranges."""
    return {k: round(0.5 * (lo + hi), 4)
            for k, (lo, hi) in config["synthesize"]["phenotype"].items()}


def truth_height(model: AnnyBodyModel, truth: Path) -> float:
    phenotype = read_json(truth / "subject.json")["phenotype"]
    with torch.no_grad():
        return float(standing_height(model, AnnyBodyModel.shape_from_phenotype(phenotype)))


def fitted_height(model: AnnyBodyModel, npz: Path) -> float:
    with np.load(npz, allow_pickle=False) as fit:
        shape = torch.as_tensor(fit["shape"].astype(np.float32))
    with torch.no_grad():
        return float(standing_height(model, shape))


def refit(config: dict[str, Any], variant: str, subject: str, height: float) -> Path:
    results = Path(config["results"]) / config["data"]["dataset"]
    if variant == "calibrated":
        return results / "fit" / f"{subject}.npz"
    folder = results / "height" / variant
    out = folder / f"{subject}.npz"
    if out.is_file():
        return out
    params = {k: v for k, v in stage_params(config, "fit").items() if k != "height_m"}
    params["camera"] = "weak_perspective"
    prior = {} if variant == "anny_mean" else population_phenotype(config)
    params["anny"] = {**params["anny"], "prior_phenotype": prior}
    if variant in ("anny_mean", "population_shape"):
        params["prior_height_spread"] = 0.0  # the shape prior alone
    fit_to_files(subject=subject, manifest=results / "manifest" / f"{subject}.json",
                 crops=results / "crop" / subject, masks=results / "mask" / subject,
                 keypoints=results / "keypoints" / subject, output=out,
                 report=folder / f"{subject}.json", overlays=folder / subject, params=params,
                 height_m=height if variant == "given" else None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", type=Path, default=[Path("config.yaml")])
    parser.add_argument("--subjects", nargs="*", help="default: the test subjects")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--write", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    variants = [v for v in VARIANTS if v in args.variants]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_configs(args.configfile)
    subjects = args.subjects or config["data"]["test_subjects"]
    truth_root = Path(config["data"]["root"]) / config["data"]["dataset"] / "truth"
    model = AnnyBodyModel()
    rows = []
    for subject in subjects:
        truth = truth_height(model, truth_root / subject)
        row = {"subject": subject, "truth": truth}
        for variant in variants:
            row[variant] = fitted_height(model, refit(config, variant, subject, truth))
        rows.append(row)
        print(subject, {k: round(v, 3) for k, v in row.items() if k != "subject"}, flush=True)
    lines = ["| subject | truth (m) | " + " | ".join(variants) + " |",
             "|---|---|" + "---|" * len(variants)]
    for r in rows:
        cells = [f"{r[v]:.3f} ({100 * (r[v] / r['truth'] - 1):+.1f} %)" for v in variants]
        lines.append(f"| {r['subject']} | {r['truth']:.3f} | " + " | ".join(cells) + " |")
    means = []
    for v in variants:
        err = [100 * (r[v] / r["truth"] - 1) for r in rows]
        means.append(f"{np.mean(err):+.1f} % (mean abs {np.mean(np.abs(err)):.1f} %)")
    lines.append("| mean error | | " + " | ".join(means) + " |")
    body = "\n".join([
        "Standing height of the fitted body against the truth's, per test subject "
        f"({len(rows)}). `calibrated`: the run's own fit; the others refit with the cameras "
        "hidden (weak perspective): `anny_mean` with the shape prior alone on Anny's mean "
        "phenotype (age 0.5; the fit before issue 27), `population_shape` with it on the "
        f"training population's mean ({population_phenotype(config)}), `population` (the "
        "default) with that prior and the standing height pulled to its mean phenotype's "
        "(fit.prior_height_spread), `given` with the truth's height as fit.height_m.",
        "", *lines])
    print(body)
    for doc in args.write:
        publish(doc, "height", body)


if __name__ == "__main__":
    main()

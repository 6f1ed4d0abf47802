"""Proof of capacity: train Pixel2ISDF on ONE subject and score it on that same subject, for
each SDF prior (same seed, steps and data), beside the fitted naked body.

A network that cannot fit the one subject it sees has a bug, whatever its generalisation.
Targets (issue: reconstructions that beat the body they start from): sign accuracy within
2 cm ≥ 0.95 and Chamfer ≤ 0.5 cm on that subject.

    .venv/bin/python benchmarks/overfit.py                        # after `make demo`
    .venv/bin/python benchmarks/overfit.py --steps 800 --priors body sphere
    .venv/bin/python benchmarks/overfit.py --set train.loss.sdf_units=metres   # an ablation
    .venv/bin/python benchmarks/overfit.py --subject s000 s001 s002 --score s003  # held out

``--subject`` may name several training subjects and ``--score`` other subjects to score
(default: the training subjects themselves), which turns the overfit into a quick
generalisation check on one held-out subject.

Uses the config's ``train`` section (``--set key=value`` overrides it, YAML values), the
demo's caches and normal network, and the pipeline's own train / reconstruct / evaluate code,
so the figures are the pipeline's. Writes everything under ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from models.data import Pixel2ISDFDataset
from models.pixel2isdf.losses import sign_accuracy
from pipeline import evaluate, reconstruct, train
from pipeline.config import load_config, stage_params, validate_config
from pipeline.training.checkpoint import load_checkpoint, model_config


def override(config: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """``section.key=value`` assignments (YAML values) applied to a copy of ``config``."""
    out = copy.deepcopy(config)
    for item in assignments:
        key, _, value = item.partition("=")
        node = out
        *parents, last = key.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = yaml.safe_load(value)
    return validate_config(out, source="--set")


def sign_accuracy_near(checkpoint: Path, cache: Path, band: float, draws: int = 4) -> float:
    """Sign accuracy over cache samples with |sdf| < band, over ``draws`` draws."""
    model = reconstruct.load_model(checkpoint, torch.device("cpu"))
    data = load_checkpoint(checkpoint, kind="pixel2isdf")
    cfg = model_config(data, checkpoint)["model"]
    dataset = Pixel2ISDFDataset([cache], n_views=4, n_points=10_000, seed=12345,
                                samples_per_subject=draws, uint8_images=True,
                                with_body_sdf=cfg.get("prior") == "body",
                                with_hull=bool(cfg.get("hull_feature")))
    correct = total = 0.0
    with torch.no_grad():
        for i in range(len(dataset)):
            batch = torch.utils.data.default_collate([dataset[i]])
            points, target = batch.pop("points"), batch.pop("sdf")
            pred = model(batch, points)
            n = int((target.abs() < band).sum())
            correct += float(sign_accuracy(pred, target, band)) * n
            total += n
    return correct / max(total, 1)


def table_row(label: str, m: dict[str, float], extra: str) -> str:
    """One Markdown row of a mesh's scores, then ``extra`` cells."""
    return (f"| {label} | {m['chamfer_cm']:.2f} | {m['p2s_cm']:.2f} | {m['s2p_cm']:.2f} | "
            f"{m['normal_consistency']:.3f} | {m['fscore_1cm']:.3f} | {m['fscore_2cm']:.3f} | "
            f"{m['iou']:.3f} | {extra} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--subject", nargs="+", default=["s000"])
    parser.add_argument("--score", nargs="+", default=None, help="default: --subject")
    parser.add_argument("--steps", type=int, default=None, help="default: train.run.steps")
    parser.add_argument("--priors", nargs="+", default=["body", "sphere"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("results/overfit"))
    args = parser.parse_args()
    config = override(load_config(args.config), args.set)
    results = Path(config["results"]) / config["data"]["dataset"]
    truth_root = Path(config["data"]["root"]) / config["data"]["dataset"] / "truth"
    caches = [results / "cache" / f"{s}.h5" for s in args.subject]
    scored = args.score or args.subject
    normal = results / "train" / "normal_net" / "checkpoint.pt"
    rows = []
    for prior in args.priors:
        params = stage_params(config, "train")
        params["model"] = {**params["model"], "prior": prior}
        if args.steps:
            params["run"] = {**params["run"], "steps": args.steps}
        # A capacity check trains to the end: no validation subject chooses a step here.
        params["run"] = {**params["run"], "keep": "last"}
        out = args.out / prior
        start = time.perf_counter()
        summary = train.run(train_caches=caches, val_caches=[], normal=normal,
                            output=out / "checkpoint.pt", summary=out / "train.json",
                            params=params)
        train_s = time.perf_counter() - start
        for subject in scored:
            cache, truth = results / "cache" / f"{subject}.h5", truth_root / subject
            recon = reconstruct.run(checkpoint=out / "checkpoint.pt", cache=cache,
                                    output=out / f"{subject}.ply",
                                    report=out / f"{subject}.json",
                                    split="train" if subject in args.subject else "test",
                                    params=stage_params(config, "reconstruct"))
            scores = evaluate.run(mesh=out / f"{subject}.ply", recon=out / f"{subject}.json",
                                  truth=truth / "canonical_clothed.ply",
                                  truth_body=truth / "canonical_body.ply", cache=cache,
                                  output=out / f"{subject}_eval.json",
                                  params=stage_params(config, "evaluate"))
            band = float(params["loss"]["sign_band"])
            acc = sign_accuracy_near(out / "checkpoint.pt", cache, band)
            rows.append((f"{subject}, prior {prior}", scores["metrics"], acc, train_s, summary,
                         recon))
    steps = rows[0][4].get("steps", params["run"]["steps"]) if rows else 0
    print(f"\nTrained on {args.subject}, scored on {scored}, {steps} steps, "
          f"seed {config['seed']}, overrides {args.set or 'none'}\n")
    print("| mesh | Chamfer cm | P2S cm | S2P cm | NC | F@1cm | F@2cm | IoU | sign acc. "
          "< 2 cm | train s | recon s |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for label, metrics, acc, train_s, _, recon in rows:
        print(table_row(label, metrics["model"],
                        f"{acc:.3f} | {train_s:.0f} | {recon['seconds']['total']:.0f}"))
    for label, metrics, *_ in rows[:len(scored)]:
        print(table_row(f"{label.split(',')[0]}, fitted naked body", metrics["fitted_body"],
                        "– | – | –"))
    print("\ntargets: sign acc. < 2 cm ≥ 0.95, Chamfer ≤ 0.5 cm")


if __name__ == "__main__":
    main()

"""What the demo's Pixel2ISDF training learnt: the trained checkpoint beside an untrained
network of the same config (same initialisation seed, same frozen normal net) on the same
draws, for the test subjects and the training subjects.

    .venv/bin/python benchmarks/train_quality.py            # after `make demo`
    .venv/bin/python benchmarks/train_quality.py --checkpoint <dir>/train/pixel2isdf/checkpoint.pt

Metrics per subject group, over ``--draws`` draws of K views and N points per subject:
sign accuracy near the surface (|sdf| < 2 cm, the metric docs/training.md logs), sign
accuracy over all samples, truncated-L2 loss and the mean |error| (cm) near the surface.
Also prints the training curve (train and test loss) from ``train.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from models.data import Pixel2ISDFDataset
from models.pixel2isdf import get_model
from models.pixel2isdf.losses import truncated_l2
from pipeline.training.checkpoint import load_checkpoint, model_config


def evaluate(model: torch.nn.Module, dataset: Pixel2ISDFDataset, band: float,
             delta: float) -> dict[str, float]:
    near_ok = near_n = all_ok = all_n = 0
    loss = err = 0.0
    model.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            batch = torch.utils.data.default_collate([dataset[i]])
            points, target = batch.pop("points"), batch.pop("sdf")
            pred = model(batch, points)
            near = target.abs() < band
            near_ok += int(((pred < 0) == (target < 0))[near].sum())
            near_n += int(near.sum())
            all_ok += int(((pred < 0) == (target < 0)).sum())
            all_n += target.numel()
            loss += float(truncated_l2(pred, target, delta))
            err += float((pred - target).abs()[near].sum())
    return {"sign_acc_near": near_ok / max(near_n, 1), "sign_acc_all": all_ok / all_n,
            "trunc_l2": loss / len(dataset), "abs_err_near_cm": 100 * err / max(near_n, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path,
                        default=Path("results/demo/train/pixel2isdf/checkpoint.pt"))
    parser.add_argument("--draws", type=int, default=4, help="draws per subject")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_checkpoint(args.checkpoint, kind="pixel2isdf")
    config = model_config(data, args.checkpoint)
    summary = json.loads((args.checkpoint.parent / "train.json").read_text())
    params = summary["run"]
    caches = args.checkpoint.parents[2] / "cache"
    train = {"val": summary["val_subjects"], "train": summary["train_subjects"]}
    torch.manual_seed(summary["seed"])
    untrained = get_model(config["model"], config["normal"])
    trained = get_model(config["model"], config["normal"])
    trained.load_state_dict(data["model"])
    if untrained.normal_net is not None:  # the same frozen normal network in both
        untrained.normal_net.load_state_dict(trained.normal_net.state_dict())
    band, delta = 0.02, 0.05
    print(f"checkpoint {args.checkpoint}: {data['step']} steps, batch {params['batch_size']}, "
          f"lr {params['lr']}, seed {summary['seed']}\n")
    print("| subjects | model | sign acc. near (|sdf| < 2 cm) | sign acc. all | truncated L2 "
          "| mean abs. error near (cm) |\n|---|---|---|---|---|---|")
    for group, subjects in train.items():
        if not subjects:
            continue
        dataset = Pixel2ISDFDataset([caches / f"{s}.h5" for s in subjects], n_views=4,
                                    n_points=10_000, seed=12345, samples_per_subject=args.draws,
                                    uint8_images=True,
                                    with_body_sdf=config["model"].get("prior") == "body",
                                    with_hull=bool(config["model"].get("hull_feature")))
        for name, model in (("untrained", untrained), ("trained", trained)):
            m = evaluate(model, dataset, band, delta)
            print(f"| {group} ({', '.join(subjects)}) | {name} | {m['sign_acc_near']:.3f} | "
                  f"{m['sign_acc_all']:.3f} | {m['trunc_l2']:.5f} | {m['abs_err_near_cm']:.2f} |")
    print("\ntraining curve (step: train loss, test loss, test sign acc. near):")
    for record in summary["history"]:
        if "val/total" in record:
            train_loss = next((r["loss/total"] for r in summary["history"]
                               if r["step"] == record["step"] and "loss/total" in r), None)
            print(f"  {record['step']}: {train_loss}, {record['val/total']}, "
                  f"{record.get('val/sign_acc_near')}")


if __name__ == "__main__":
    main()

"""Training speed of Pixel2ISDF: steps/s, samples/s and one step split by component.

    .venv/bin/python benchmarks/train_speed.py                      # demo preset, CPU
    .venv/bin/python benchmarks/train_speed.py --preset presets/paper.yaml --steps 1
    .venv/bin/python benchmarks/train_speed.py --steps 15 --threads 1   # against 2 threads

Reads the caches of the demo's data set (`--caches-of`; run `make demo` first; the demo's
crops are 512², so the paper sizes apply to them as they are). Components: normal net, geometry net,
projection + fusion, diffusion (voxelise + sparse convs + densify), SDF head + loss, backward.
The baseline in the same run is the data loader alone (samples/s of the cache reads), which
says whether a step is bound by its input. Prints one Markdown table per device.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from models.data import Pixel2ISDFDataset
from models.pixel2isdf import get_model
from models.pixel2isdf.losses import sdf_losses
from models.timing import SectionTimer
from pipeline.config import load_config

PARTS = ["normal_net", "geometry_net", "projection_fusion", "diffusion", "sdf_head_loss",
         "backward"]


def bench(config: dict, data: dict, device: torch.device, steps: int) -> dict:
    """Time ``steps`` steps of ``config``'s network on the caches of ``data``'s data set."""
    train = config["train"]
    results = Path(data["results"]) / data["data"]["dataset"] / "cache"
    test = set(data["data"]["test_subjects"])
    paths = [results / f"{s}.h5" for s in data["data"]["subjects"] if s not in test]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"missing caches {missing[:3]}: run the pipeline up to the cache first")
    run = train["run"]
    batch_size = run["batch_size"]
    dataset = Pixel2ISDFDataset(paths, n_views=train["n_views"], n_points=train["n_points"],
                                seed=0, samples_per_subject=steps + 2, uint8_images=True,
                                in_memory=True,
                                with_body_sdf=train["model"].get("prior", "body") == "body",
                                with_hull=bool(train["model"].get("hull_feature", False)))
    torch.manual_seed(0)
    model = get_model(train["model"], config["train_normal"]["model"]).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=run["lr"])
    timer = SectionTimer(cuda=device.type == "cuda")
    model.timer = timer
    collate = torch.utils.data.default_collate
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def batch_of(i: int) -> dict:
        return collate([dataset[(i * batch_size + j) % len(dataset)] for j in range(batch_size)])

    start = time.perf_counter()
    batches = [batch_of(i) for i in range(steps + 1)]
    load_seconds = (time.perf_counter() - start) / (steps + 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    totals = {p: 0.0 for p in PARTS}
    step_seconds = 0.0
    for i, batch in enumerate(batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        t0 = time.perf_counter()
        points = batch.pop("points").requires_grad_(True)
        target = batch.pop("sdf")
        with autocast:
            pred = model(batch, points)
            with timer("sdf_head_loss"):
                loss = sdf_losses(pred.float(), target, points, delta=0.05,
                                  eikonal_weight=0.1)["total"]
        with timer("backward"):
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = timer.pop()
        if i == 0:
            continue  # warm-up
        step_seconds += time.perf_counter() - t0
        for k, v in seconds.items():
            totals[k] += v
    step = step_seconds / steps
    return {
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "trainable_m": sum(p.numel() for p in params) / 1e6,
        "step_s": step, "steps_per_s": 1 / step, "samples_per_s": batch_size / step,
        "loader_samples_per_s": batch_size / load_seconds,
        "parts": {k: v / steps for k, v in totals.items()},
        "peak_gb": torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda" else None,
        "batch": batch_size, "views": train["n_views"], "points": train["n_points"],
        "input": train["model"]["input_size"], "volume": train["model"]["volume_resolution"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="config.yaml", help="config file (default demo)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after a warm-up")
    parser.add_argument("--caches-of", default="config.yaml",
                        help="config whose data set's caches to read (default: the demo's)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch CPU threads (default 2, the demo's train.threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config, data = load_config(args.preset), load_config(args.caches_of)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available()
                                       else [])
    for device in devices:
        r = bench(config, data, device, args.steps)
        print(f"\n{args.preset} on {device} ({torch.get_num_threads()} threads): batch "
              f"{r['batch']}, K={r['views']}, N={r['points']}, input {r['input']}², volume "
              f"{r['volume']}³, {r['params_m']:.2f} M parameters ({r['trainable_m']:.2f} M "
              "trainable)\n")
        print("| measure | value |\n|---|---|")
        print(f"| step (s) | {r['step_s']:.3f} |")
        print(f"| steps/s | {r['steps_per_s']:.2f} |")
        print(f"| samples/s | {r['samples_per_s']:.2f} |")
        print(f"| baseline: data loader alone, samples/s | {r['loader_samples_per_s']:.1f} |")
        if r["peak_gb"] is not None:
            print(f"| peak GPU memory (GiB) | {r['peak_gb']:.2f} |")
        for part, seconds in r["parts"].items():
            print(f"| {part} (s, {100 * seconds / r['step_s']:.0f} %) | {seconds:.4f} |")


if __name__ == "__main__":
    main()

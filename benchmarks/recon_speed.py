"""Reconstruction of one demo subject (pipeline/reconstruct.py): seconds and network queries
of the coarse-to-fine grid against the dense grid (the baseline, same run), with and without
the body band. Needs `make demo` first (its checkpoint and cache).

    .venv/bin/python benchmarks/recon_speed.py [--subject s003] [--resolution 256] [--no-dense]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import yaml

from pipeline.config import validate_config
from pipeline.reconstruct import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--subject", default="s003")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--no-dense", action="store_true", help="skip the dense baseline")
    args = parser.parse_args()
    with open(args.config) as fh:
        config = validate_config(yaml.safe_load(fh))
    results = Path(config["results"]) / config["data"]["dataset"]
    base = {"seed": config["seed"], **config["reconstruct"], "resolution": args.resolution,
            "device": "cpu"}
    band = base["body_band"]
    variants = [("coarse to fine, body band", {}),
                ("coarse to fine, network alone", {"body_band": None})]
    if not args.no_dense:
        variants.append(("dense (baseline), body band", {"init_resolution": args.resolution}))
    print(f"{args.subject}, {args.resolution}³, {torch.get_num_threads()} threads, "
          f"body band {band} m")
    print("| grid | queries | × fewer than dense | encode s | grid s | total s | faces |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, change in variants:
            out = Path(tmp) / f"{len(name)}.ply"
            r = run(checkpoint=results / "train" / "pixel2isdf" / "checkpoint.pt",
                    cache=results / "cache" / f"{args.subject}.h5", output=out,
                    report=out.with_suffix(".json"), params={**base, **change})
            s = r["seconds"]
            print(f"| {name} | {r['queries']:,} | {r['query_reduction']:.1f} | {s['encode']:.1f} "
                  f"| {s['grid']:.1f} | {s['total']:.1f} | {r['faces']:,} |")


if __name__ == "__main__":
    main()

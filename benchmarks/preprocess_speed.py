"""Seconds per image of the default preprocessing backends, on one core, medians.

    python benchmarks/preprocess_speed.py [--images 'data/demo/*/act*/cam*.jpg'] [--n 24]

Needs photos (``make demo`` makes them). The process is pinned to one core and every library
is told to use one thread. Each image goes through detect (MediaPipe pose on the photo), crop,
segment and keypoints (MediaPipe on the 512² crop), trimap and matte (pymatting). The baseline
in the same run is decoding + cropping alone (what the oracle path costs).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import glob  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402

import numpy as np  # noqa: E402

from pipeline.backends import make_backend  # noqa: E402
from pipeline.backends.matting import make_trimap  # noqa: E402
from pipeline.crop import square_box  # noqa: E402
from pipeline.detect import pick_person  # noqa: E402
from pipeline.imageio import read_rgb  # noqa: E402


def timed(times, key, fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    times[key].append(time.perf_counter() - start)
    return out


def run(paths, complexity, band, times):
    options = {"model_complexity": complexity}
    detector = make_backend("detect", "mediapipe", options)
    segmenter = make_backend("mask", "mediapipe", options)
    keypointer = make_backend("keypoints", "mediapipe", options)
    matter = make_backend("matte", "pymatting", {})
    tag = f"mp{complexity}"
    for path in paths:
        image = timed(times, "decode (baseline)", read_rgb, path)
        person, _ = pick_person(timed(times, f"detect [{tag}]", detector.detect, image), 0.3)
        if person is None:
            times["no person"].append(0.0)
            continue
        crop = timed(times, "crop (baseline)", square_box, person.box_xyxy, 0.1, 512)
        pixels = timed(times, "crop (baseline)", crop.cut, image)
        prob = timed(times, f"segment [{tag}]", segmenter.segment, pixels)
        trimap = timed(times, "trimap", make_trimap, prob > 0.5, band)
        timed(times, "matte (pymatting)", matter.matte, pixels, trimap)
        timed(times, f"keypoints [{tag}]", keypointer.keypoints, pixels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default="data/demo/*/act*/cam*.jpg")
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--band", type=int, default=6)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    paths = sorted(glob.glob(args.images))[: args.n]
    if not paths:
        raise SystemExit(f"no images match {args.images!r}: run `make demo` first")
    warm = paths[:1]
    run(warm, 1, args.band, defaultdict(list))  # first calls load models and compile numba
    times = defaultdict(list)
    run(paths, 1, args.band, times)
    def med(key):  # crop is timed in two parts per image: add them
        values = np.asarray(times[key])
        return float(np.median(values.reshape(-1, 2).sum(axis=1) if key.startswith("crop")
                               else values))

    print(f"{len(paths)} images, one core; median seconds per image")
    for key in sorted(times):
        if key != "no person":
            print(f"  {key:<28}{med(key):8.4f}")
    print(f"  views without a person: {len(times['no person'])}")
    baseline = med("decode (baseline)") + med("crop (baseline)")
    shared = baseline + med("trimap") + med("matte (pymatting)")
    for c in (1,):
        total = shared + sum(med(k) for k in times if k.endswith(f"[mp{c}]"))
        print(f"  total, model_complexity {c}:  {total:8.4f}   (target <= 0.6)")
    print(f"  baseline, decode + crop:     {baseline:8.4f}")

if __name__ == "__main__":
    main()

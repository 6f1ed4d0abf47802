#!/usr/bin/env bash
# Runs inside the densepose environment after Snakemake creates it from envs/densepose.yaml:
# installs detectron2 and DensePose from their git repository at a pinned commit.
# detectron2's setup.py imports torch, so build isolation is off (torch is already installed).
# Its C++ ops are built CPU-only (CUDA_VISIBLE_DEVICES=""): DensePose R-CNN does not use
# detectron2's own CUDA kernels (ROIAlign and NMS come from torchvision), so no CUDA toolkit
# is needed and the model still runs on the GPU.
set -euo pipefail
DETECTRON2_COMMIT=02b5c4e295e990042a714712c21dc79b731e8833
REPO="git+https://github.com/facebookresearch/detectron2.git@${DETECTRON2_COMMIT}"
CUDA_VISIBLE_DEVICES="" python -m pip install --no-build-isolation "detectron2 @ ${REPO}"
# DensePose's own requirement on detectron2 is an unpinned git URL: --no-deps keeps the pinned
# build (its other requirements, av, opencv-python-headless and scipy, are in the env file).
python -m pip install --no-build-isolation --no-deps \
    "detectron2-densepose @ ${REPO}#subdirectory=projects/DensePose"
python -c "import detectron2, densepose; print('detectron2', detectron2.__version__, 'densepose ok')"

"""``models/`` stands alone: importing every network and dataset pulls in no pipeline
module and none of the preprocessing stack, so training runs on a GPU node that has only
torch, numpy and h5py."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

MODULES = ["models.pixel2isdf", "models.pifu", "models.pifu.data", "models.data",
           "models.cache_io", "models.grid_eval", "models.sparse", "models.blocks.resunet",
           "models.blocks.projection", "models.timing"]
FORBIDDEN = ["pipeline", "scipy", "skimage", "trimesh", "igl", "cv2", "mediapipe", "snakemake",
             "matplotlib", "yaml", "jsonschema"]


def test_models_import_only_torch_numpy_h5py() -> None:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES)
            + f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))\n"
            + "print(','.join(bad))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "", f"models/ imports {result.stdout.strip()}"

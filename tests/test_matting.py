"""Trimaps, closed-form matting (pymatting) and the MatteFormer wrapper (errors, pre/post
processing, and loading a stand-in network from a code folder)."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from pipeline.backends import BackendUnavailable, make_backend
from pipeline.backends.matting import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Padding,
    crop_padding,
    make_matteformer,
    make_trimap,
    normalise_image,
    pad_for_network,
    progressive_refine,
    trimap_one_hot,
    uncertain_region,
)
from tests.conftest import require

# --- trimaps --------------------------------------------------------------------------------

@pytest.mark.parametrize("band", [0, 1, 3, 6])
def test_trimap_band_on_a_straight_edge(band):
    mask = np.zeros((20, 40), bool)
    mask[:, :20] = True
    trimap = make_trimap(mask, band)
    assert trimap.dtype == np.uint8 and trimap.shape == mask.shape
    row = trimap[10]
    assert (row[:20 - band] == 255).all()
    assert (row[20 - band:20 + band] == 128).all()
    assert (row[20 + band:] == 0).all()
    assert (trimap == row).all()          # the image border is not a boundary


def test_trimap_band_is_a_disk():
    mask = np.zeros((11, 11), bool)
    mask[5, 5] = True
    trimap = make_trimap(mask, 2)
    yy, xx = np.mgrid[:11, :11]
    np.testing.assert_array_equal(trimap == 128, np.hypot(yy - 5, xx - 5) <= 2)
    assert not (trimap == 255).any()


def test_trimap_edge_cases():
    assert (make_trimap(np.zeros((5, 6), bool), 3) == 0).all()
    assert (make_trimap(np.ones((5, 6), bool), 3) == 255).all()
    with pytest.raises(ValueError, match="band"):
        make_trimap(np.ones((5, 6), bool), -1)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        make_trimap(np.ones((5, 6, 3), bool), 1)


# --- closed-form matting --------------------------------------------------------------------

@pytest.fixture(scope="module")
def pymatting_backend():
    require("pymatting")  # a core package: fails, not skips, under CI=true
    return make_backend("matte", "pymatting", {})


def _composite(size=96):
    """An image composited from a known smooth foreground and background with a soft disk alpha."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    alpha = np.clip((30.0 - np.hypot(yy - size / 2, xx - size / 2)) / 3.0 + 0.5, 0.0, 1.0)
    fg = np.stack([np.full_like(xx, 0.9), 0.2 + 0.1 * np.sin(xx / 7), np.full_like(xx, 0.1)], -1)
    bg = np.stack([np.full_like(xx, 0.2), 0.5 + 0.1 * np.cos(yy / 5), np.full_like(xx, 0.8)], -1)
    image = alpha[..., None] * fg + (1.0 - alpha[..., None]) * bg
    return np.round(image * 255).astype(np.uint8), alpha


def test_pymatting_recovers_a_known_alpha(pymatting_backend):
    image, alpha = _composite()
    trimap = make_trimap(alpha > 0.5, 4)
    assert (trimap == 128).sum() > 0
    found = pymatting_backend.matte(image, trimap)
    assert found.dtype == np.float32 and found.shape == alpha.shape
    assert found.min() >= 0.0 and found.max() <= 1.0
    unknown = trimap == 128
    assert np.abs(found - alpha)[unknown].mean() < 0.01
    assert np.abs(found - alpha).max() < 0.05
    np.testing.assert_array_equal(found[trimap == 255], 1.0)
    np.testing.assert_array_equal(found[trimap == 0], 0.0)


def test_pymatting_without_unknown_pixels_returns_the_mask(pymatting_backend):
    image, alpha = _composite(32)
    trimap = make_trimap(alpha > 0.5, 0)
    found = pymatting_backend.matte(image, trimap)
    np.testing.assert_array_equal(found, (alpha > 0.5).astype(np.float32))
    with pytest.raises(ValueError, match="does not match"):
        pymatting_backend.matte(image, trimap[:10])


def test_pymatting_takes_no_options():
    with pytest.raises(ValueError, match="no options"):
        make_backend("matte", "pymatting", {"band": 3})


# --- MatteFormer ----------------------------------------------------------------------------

def test_matteformer_errors(tmp_path):
    with pytest.raises(BackendUnavailable, match="code_dir and checkpoint not set"):
        make_backend("matte", "matteformer", {})
    with pytest.raises(BackendUnavailable, match="checkpoint not set"):
        make_matteformer({"code_dir": str(tmp_path), "checkpoint": None})
    with pytest.raises(BackendUnavailable, match=r"networks/generators\.py"):
        make_matteformer({"code_dir": str(tmp_path), "checkpoint": str(tmp_path / "w.pth")})
    (tmp_path / "networks").mkdir()
    (tmp_path / "networks" / "generators.py").write_text("raise ImportError('no timm here')\n")
    with pytest.raises(BackendUnavailable, match="not found"):
        make_matteformer({"code_dir": str(tmp_path), "checkpoint": str(tmp_path / "w.pth")})
    (tmp_path / "w.pth").write_bytes(b"not a checkpoint")
    saved_path = list(sys.path)
    with pytest.raises(BackendUnavailable, match="no timm here"):
        make_matteformer({"code_dir": str(tmp_path), "checkpoint": str(tmp_path / "w.pth")})
    assert sys.path == saved_path
    with pytest.raises(ValueError, match="unknown"):
        make_matteformer({"code_dir": str(tmp_path), "weights": "x"})


def test_normalise_image():
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 1] = 255
    x = normalise_image(image)
    assert x.shape == (3, 4, 5) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], -IMAGENET_MEAN[0] / IMAGENET_STD[0], rtol=1e-6)
    np.testing.assert_allclose(x[1], (1 - IMAGENET_MEAN[1]) / IMAGENET_STD[1], rtol=1e-6)


def test_trimap_one_hot():
    trimap = np.array([[0, 84, 85], [128, 169, 170], [255, 0, 128]], np.uint8)
    one_hot = trimap_one_hot(trimap)
    assert one_hot.shape == (3, 3, 3) and one_hot.dtype == np.float32
    np.testing.assert_array_equal(one_hot.sum(axis=0), 1)
    np.testing.assert_array_equal(one_hot.argmax(axis=0), [[0, 0, 1], [1, 1, 2], [2, 0, 1]])


@pytest.mark.parametrize("shape", [(64, 96), (50, 70), (33, 40)])
def test_padding_round_trip(shape):
    rng = np.random.default_rng(1)
    array = rng.random((3, *shape)).astype(np.float32)
    padded, padding = pad_for_network(array)
    assert padded.shape[0] == 3
    assert padded.shape[1] % 32 == 0 and padded.shape[2] % 32 == 0
    assert padded.shape[1] - shape[0] >= 64 and padded.shape[2] - shape[1] >= 64
    assert padding == Padding(32, 32, *shape)
    np.testing.assert_array_equal(crop_padding(padded, padding), array)
    np.testing.assert_array_equal(padded[:, 31, 32:32 + shape[1]], array[:, 1])  # reflected
    with pytest.raises(ValueError, match="too small"):
        pad_for_network(np.zeros((3, 20, 20)))


def test_progressive_refine():
    os8 = np.zeros((40, 40), np.float32)
    os8[:, 20:] = 1.0
    os8[:, 20] = 0.5                      # uncertain column
    os4 = np.full_like(os8, 0.25)
    os1 = np.full_like(os8, 0.75)
    region = uncertain_region(os8, 30)    # dilated by an ellipse of side 15: ±7 columns
    assert region[:, 13:28].all() and not region[:, :13].any() and not region[:, 28:].any()
    fused = progressive_refine(os1, os4, os8)
    # os4 (0.25) filled columns 13-27, uncertain: they and ±3 columns (ellipse of side 7) → os1
    assert (fused[:, :10] == 0).all() and (fused[:, 31:] == 1).all()
    assert (fused[:, 10:31] == 0.75).all()


STAND_IN = textwrap.dedent('''
    import torch
    from utils import CONFIG   # the real code imports its generic top-level packages too


    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = torch.nn.Parameter(torch.zeros(1))

        def forward(self, image, trimap):
            alpha = (trimap[:, 2:3] + CONFIG * trimap[:, 1:2]) * self.gain
            return {"alpha_os1": alpha, "alpha_os4": alpha, "alpha_os8": alpha}


    def get_generator(is_train=True):
        return StandIn()
''')


def test_matteformer_runs_a_network_from_its_code_folder(tmp_path):
    torch = pytest.importorskip("torch")
    code = tmp_path / "code"
    (code / "networks").mkdir(parents=True)
    (code / "utils").mkdir()
    (code / "networks" / "__init__.py").write_text("")
    (code / "networks" / "generators.py").write_text(STAND_IN)
    (code / "utils" / "__init__.py").write_text("CONFIG = 0.5\n")
    weights = tmp_path / "best_model.pth"
    weights.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendUnavailable, match="cannot load MatteFormer weights"):
        make_matteformer({"code_dir": str(code), "checkpoint": str(weights)})
    torch.save({"state_dict": {"module.gain": torch.ones(1)}, "iteration": 7}, weights)

    saved_path, utils_before = list(sys.path), sys.modules.get("utils")
    matter = make_backend("matte", "matteformer", {"code_dir": str(code),
                                                   "checkpoint": str(weights)})
    assert sys.path == saved_path and sys.modules.get("utils") is utils_before
    assert "networks.generators" not in sys.modules

    trimap = make_trimap(np.pad(np.ones((20, 30), bool), 15), 3)
    image = np.zeros((*trimap.shape, 3), np.uint8)
    alpha = matter.matte(image, trimap)
    assert alpha.shape == trimap.shape and alpha.dtype == np.float32
    np.testing.assert_array_equal(alpha[trimap == 255], 1.0)
    np.testing.assert_array_equal(alpha[trimap == 0], 0.0)
    np.testing.assert_allclose(alpha[trimap == 128], 0.5)

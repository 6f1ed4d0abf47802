"""Coarse-to-fine grid evaluation (models/grid_eval.py) against the dense grid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from models.grid_eval import evaluate_grid

LO, HI = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])


def sphere_and_box(p: np.ndarray) -> np.ndarray:
    """An exact SDF: the union of a sphere and a thin box (a 'limb')."""
    s = np.linalg.norm(p - np.array([0.1, 0.0, 0.0]), axis=1) - 0.5
    q = np.abs(p - np.array([-0.3, 0.2, 0.1])) - np.array([0.3, 0.04, 0.4])
    b = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
    return np.minimum(s, b)


def _mesh(values: np.ndarray, level: float, spacing: float) -> np.ndarray:
    verts, _, _, _ = marching_cubes(values, level, spacing=(spacing,) * 3)
    return verts


@pytest.mark.parametrize("resolution", [65, 128])
def test_coarse_to_fine_mesh_equals_dense(resolution: int) -> None:
    fine = evaluate_grid(sphere_and_box, LO, HI, resolution=resolution, init_resolution=16)
    dense = evaluate_grid(sphere_and_box, LO, HI, resolution=resolution,
                          init_resolution=resolution)
    assert dense.queries == resolution ** 3
    assert fine.queries * 4 < dense.queries
    voxel = float(fine.spacing[0])
    a, b = _mesh(fine.values, 0.0, voxel), _mesh(dense.values, 0.0, voxel)
    assert abs(len(a) - len(b)) <= 0.01 * len(b)
    hausdorff = max(cKDTree(a).query(b)[0].max(), cKDTree(b).query(a)[0].max())
    assert hausdorff <= voxel


def test_values_near_the_surface_are_queried_not_interpolated() -> None:
    r = evaluate_grid(sphere_and_box, LO, HI, resolution=64, init_resolution=8)
    idx = np.stack(np.meshgrid(*[np.arange(64)] * 3, indexing="ij"), -1).reshape(-1, 3)
    truth = sphere_and_box(LO + idx * r.spacing).reshape((64,) * 3)
    near = np.abs(truth) < 2 * r.spacing[0]
    np.testing.assert_allclose(r.values[near], truth[near], atol=1e-6)
    assert ((r.values < 0) == (truth < 0)).all()


def test_occupancy_at_level_one_half_with_a_fixed_band() -> None:
    """PIFu's use: a 0/1-ish occupancy (sigmoid of the SDF) at level 0.5."""
    def occupancy(p: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(sphere_and_box(p) / 0.02))

    fine = evaluate_grid(occupancy, LO, HI, resolution=64, init_resolution=16, level=0.5,
                         band=0.49, lipschitz=None)
    dense = evaluate_grid(occupancy, LO, HI, resolution=64, init_resolution=64, level=0.5,
                          band=0.49, lipschitz=None)
    assert fine.queries < dense.queries
    assert ((fine.values > 0.5) == (dense.values > 0.5)).all()


def test_no_surface_gives_one_sign() -> None:
    r = evaluate_grid(lambda p: np.full(len(p), 0.7), LO, HI, resolution=33,
                      init_resolution=9)
    assert (r.values > 0).all() and r.queries < 33 ** 3
    with pytest.raises(ValueError):
        evaluate_grid(sphere_and_box, LO, HI, band=None, lipschitz=None)

"""Procedural garments: watertight clothed canonical mesh, labels, bridging skirts, posing."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from tests.conftest import require

require("anny")

from pipeline.synthesize import body as B  # noqa: E402
from pipeline.synthesize import clothing as C  # noqa: E402

VOXEL = 0.012  # coarse for speed; the default is 0.006

TROUSERS = C.Outfit(sleeves="long", bottom="trousers", hair="long", shoes=True,
                    top_thickness=0.012, bottom_thickness=0.015, fold_seed=5)
SKIRT = C.Outfit(sleeves="short", bottom="skirt", hair="bun", shoes=False, hem=1.0,
                 bottom_thickness=0.01, fold_seed=6)


@pytest.fixture(scope="module")
def model():
    return B.load_body_model()


@pytest.fixture(scope="module")
def body(model):
    return B.canonical_body(model, B.Phenotype(gender=0.8, weight=0.6))


@pytest.fixture(scope="module")
def trousers(body):
    return C.build_clothed_canonical(body, TROUSERS, voxel_size=VOXEL)


@pytest.fixture(scope="module")
def skirt(body):
    return C.build_clothed_canonical(body, SKIRT, voxel_size=VOXEL)


def _mesh(clothed: C.ClothedMesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(clothed.vertices, clothed.faces, process=False)


def _loops_at(clothed: C.ClothedMesh, z: float) -> int:
    """Number of closed outline loops of the horizontal cross-section at height ``z``."""
    section = _mesh(clothed).section(plane_origin=[0.0, 0.0, z], plane_normal=[0.0, 0.0, 1.0])
    return len(section.discrete)


@pytest.mark.parametrize("name", ["trousers", "skirt"])
def test_watertight_outward_and_contains_body(name, body, request):
    clothed = request.getfixturevalue(name)
    mesh = _mesh(clothed)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # outward normals
    inside = mesh.contains(body.vertices)
    assert inside.mean() >= 0.99
    assert mesh.volume > 1.3 * trimesh.Trimesh(body.vertices, body.faces).volume  # silhouette


@pytest.mark.parametrize("name", ["trousers", "skirt"])
def test_arrays_labels_thickness(name, body, request):
    clothed = request.getfixturevalue(name)
    n = len(clothed.vertices)
    assert clothed.vertices.dtype == np.float64 and clothed.faces.dtype == np.int64
    assert clothed.labels.shape == (n,) and clothed.labels.dtype == np.uint8
    assert {C.TOP, C.BOTTOM, C.HAIR, C.SKIN} <= set(np.unique(clothed.labels).tolist())
    assert clothed.skinning_weights.shape == (n, len(body.bone_names))
    assert clothed.skinning_weights.dtype == np.float32
    np.testing.assert_allclose(clothed.skinning_weights.sum(axis=1), 1.0, atol=1e-5)
    assert clothed.nearest_body_vertex.dtype == np.int64
    assert 0 <= clothed.nearest_body_vertex.min() <= clothed.nearest_body_vertex.max() < 13718
    assert 0.005 <= clothed.thickness_mean <= 0.05


def test_shoes_label(trousers, skirt):
    assert C.SHOES in trousers.labels and C.SHOES not in skirt.labels


def test_skirt_bridges_the_legs(body, trousers, skirt):
    names = list(body.bone_names)
    hip = np.mean([body.joints[names.index(f"upperleg01.{s}"), 2] for s in "LR"])
    knee = np.mean([body.joints[names.index(f"lowerleg01.{s}"), 2] for s in "LR"])
    mid_thigh = 0.5 * (hip + knee)
    assert _loops_at(trousers, mid_thigh) == 2
    assert _loops_at(skirt, mid_thigh) == 1


def test_posed_garment_follows_body(model, body, trousers):
    posed = B.posed_body(model, B.Phenotype(gender=0.8, weight=0.6), "walk_left", yaw=1.0)
    moved = C.skin_vertices(trousers.vertices, trousers.skinning_weights, posed.bone_transforms)
    mesh = trimesh.Trimesh(moved, trousers.faces, process=False)
    assert mesh.is_watertight
    assert mesh.contains(posed.vertices).mean() >= 0.97
    same = C.skin_vertices(trousers.vertices, trousers.skinning_weights, body.bone_transforms)
    np.testing.assert_allclose(same, trousers.vertices, atol=1e-6)


def test_deterministic(body):
    outfit = C.sample_outfit(np.random.default_rng(21))
    assert outfit == C.sample_outfit(np.random.default_rng(21))
    a = C.build_clothed_canonical(body, outfit, voxel_size=0.016)
    b = C.build_clothed_canonical(body, outfit, voxel_size=0.016)
    for field in ("vertices", "faces", "labels", "skinning_weights", "nearest_body_vertex"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.thickness_mean == b.thickness_mean


def test_sample_outfit_variety():
    rng = np.random.default_rng(0)
    outfits = [C.sample_outfit(rng) for _ in range(300)]
    bridged = np.mean([o.bottom in ("skirt", "dress") for o in outfits])
    assert 0.25 <= bridged <= 0.55
    for attr, options in (("sleeves", C.SLEEVES), ("bottom", C.BOTTOMS), ("hair", C.HAIRSTYLES)):
        assert {getattr(o, attr) for o in outfits} == set(options)
    none = [C.sample_outfit(rng, skirt_fraction=0.0).bottom for _ in range(50)]
    assert set(none) <= {"trousers", "shorts"}
    every = [C.sample_outfit(rng, skirt_fraction=1.0).bottom for _ in range(50)]
    assert set(every) <= {"skirt", "dress"}


def test_outfit_errors_name_the_value():
    with pytest.raises(ValueError, match="kilt"):
        C.Outfit(bottom="kilt")
    with pytest.raises(ValueError, match=r"top_thickness=0\.1"):
        C.Outfit(top_thickness=0.1)
    with pytest.raises(ValueError, match=r"voxel_size=0\.5"):
        C.build_clothed_canonical(None, C.Outfit(), voxel_size=0.5)  # type: ignore[arg-type]

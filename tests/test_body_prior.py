"""The body prior (models/pixel2isdf/body_prior.py): the body signed-distance volume against
exact distances, its extension outside the cube, the coverage check, and an untrained
body-prior network whose zero level set is the fitted body."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from models.errors import PipelineError
from models.grid_eval import evaluate_grid
from models.pixel2isdf.body_prior import BodySDF, check_covers, sample_body_sdf
from models.pixel2isdf.losses import eikonal, sdf_gradient
from pipeline.reconstruct import extract_mesh
from pipeline.sdf import sdf_volume, signed_distance
from tests.cache_fakes import BODY_R, SMALL, build

RADIUS = 0.3


def icosphere() -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def as_body(volume: dict[str, np.ndarray]) -> BodySDF:
    return BodySDF(torch.from_numpy(volume["values"])[None, None].double(),
                   torch.from_numpy(volume["lo"])[None], torch.from_numpy(volume["hi"])[None])


def near_surface(n: int, band: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return directions * (RADIUS + rng.uniform(-band, band, (n, 1)))


def test_volume_matches_exact_distance_near_the_surface() -> None:
    v, f = icosphere()
    volume = sdf_volume(v, f, resolution=33, padding=0.15, name="sphere")
    voxel = float(volume["hi"][0] - volume["lo"][0]) / 32
    assert volume["values"].shape == (33, 33, 33)
    np.testing.assert_allclose(volume["hi"] - volume["lo"], 2 * RADIUS * 1.3 * np.ones(3),
                               rtol=1e-3)  # the icosphere's extent is 2 r (vertices on it)
    points = near_surface(2000, 0.05)
    exact = signed_distance(v, f, points, name="sphere")
    got = sample_body_sdf(as_body(volume), torch.from_numpy(points)[None])[0].numpy()
    error = np.abs(got - exact)
    # Trilinear interpolation of a distance field of curvature 1/r: an error of order
    # voxel² / r; measured max 1.2 mm, mean 0.33 mm at a 24 mm voxel (0.05 and 0.014 voxel).
    assert error.max() < 0.1 * voxel and error.mean() < 0.03 * voxel
    # the sign agrees wherever the point is not within the error of the surface
    decided = np.abs(exact) > 0.15 * voxel
    assert (np.sign(got[decided]) == np.sign(exact[decided])).all()


def test_volume_layout_is_z_y_x() -> None:
    """A mesh off-centre and longer in x: values[k, j, i] is the SDF at (x_i, y_j, z_k)."""
    mesh = trimesh.creation.box(extents=(0.6, 0.2, 0.3))
    mesh.apply_translation((0.1, -0.2, 0.3))
    volume = sdf_volume(np.asarray(mesh.vertices), np.asarray(mesh.faces), 9, 0.0, name="box")
    lo, hi = volume["lo"], volume["hi"]
    axis = [np.linspace(lo[a], hi[a], 9) for a in range(3)]
    k, j, i = 2, 5, 7
    point = np.array([[axis[0][i], axis[1][j], axis[2][k]]])
    want = signed_distance(np.asarray(mesh.vertices), np.asarray(mesh.faces), point)[0]
    assert volume["values"][k, j, i] == pytest.approx(want, abs=1e-6)


def test_outside_the_cube_adds_the_distance_to_it() -> None:
    v, f = icosphere()
    volume = sdf_volume(v, f, resolution=17, padding=0.15, name="sphere")
    body = as_body(volume)
    hi = float(volume["hi"][0])
    border = torch.tensor([[[hi, 0.0, 0.0]]], dtype=torch.float64)
    beyond = torch.tensor([[[hi + 0.2, 0.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    value = sample_body_sdf(body, beyond)
    assert value.item() == pytest.approx(sample_body_sdf(body, border).item() + 0.2, abs=1e-9)
    (grad,) = torch.autograd.grad(value.sum(), beyond)
    assert grad[0, 0, 0].item() == pytest.approx(1.0, abs=1e-6)


def test_eikonal_of_the_volume_is_small_and_twice_differentiable() -> None:
    v, f = icosphere()
    values = torch.from_numpy(sdf_volume(v, f, 33, 0.15, name="sphere")["values"])
    volume = sdf_volume(v, f, 33, 0.15, name="sphere")
    body = BodySDF(values[None, None].double().requires_grad_(True),
                   torch.from_numpy(volume["lo"])[None], torch.from_numpy(volume["hi"])[None])
    points = torch.from_numpy(near_surface(500, 0.05, seed=1))[None].requires_grad_(True)
    loss = eikonal(sdf_gradient(sample_body_sdf(body, points), points))
    assert loss.item() < 0.01  # |∇d| ≈ 1 except across cells the interpolation bends
    loss.backward()  # through grid_sample's double backward, to the volume
    assert body.values.grad is not None and body.values.grad.abs().sum() > 0


def test_check_covers_names_both_boxes() -> None:
    body = BodySDF(torch.zeros(1, 1, 3, 3, 3), torch.full((1, 3), -1.0), torch.ones(1, 3))
    check_covers(body, torch.full((1, 3), -1.0), torch.ones(1, 3), "the cube")
    with pytest.raises(PipelineError, match=r"3\^3 over \[-1.000, -1.000, -1.000\] – "
                                            r"\[1.000, 1.000, 1.000\]\) does not cover the "
                                            r"cube \(\[-1.200.*body_sdf_padding"):
        check_covers(body, torch.full((1, 3), -1.2), torch.ones(1, 3), "the cube")


TINY = {"input": "image", "input_size": 64, "feature_channels": 4, "geometry_width": 0.125,
        "fusion_hidden": 8, "latent_dim": 4, "volume_resolution": 24, "diffusion_width": 0.25,
        "head_hidden": 64, "head_layers": 3, "head_skip": 2, "n_freqs": 2,
        "sparse_backend": "torch", "volume_padding": 0.5, "prior": "body"}


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from models.data import Pixel2ISDFDataset

    root = tmp_path_factory.mktemp("prior")
    path = build(root / "s", output=root / "s.h5",
                 params={**SMALL, "body_sdf_resolution": 65})
    dataset = Pixel2ISDFDataset([path], n_views=2, n_points=200, with_body_sdf=True)
    item = torch.utils.data.default_collate([dataset[0]])
    with __import__("h5py").File(path) as h5:
        body = (np.asarray(h5["canonical_vertices"]), np.asarray(h5["faces"]))
    return {"path": path, "batch": item, "body": body}


def _model(**overrides):
    from models.pixel2isdf import get_model

    torch.manual_seed(0)
    return get_model({**TINY, **overrides})


def test_untrained_body_prior_network_is_the_fitted_body(subject) -> None:
    """Zero residual: the reconstruction's surface lies within one grid voxel of the fitted
    body (the fake's icosphere of radius BODY_R)."""
    model = _model().eval()
    inputs = {k: v for k, v in subject["batch"].items() if k not in ("points", "sdf")}
    with torch.no_grad():
        volume = model.encode(inputs)
        centre, half = volume.centre[0].numpy(), float(volume.half[0])

        def sdf(points: np.ndarray) -> np.ndarray:
            p = torch.as_tensor(points, dtype=torch.float32)[None]
            return model.query(volume, p)[0].double().numpy()

        grid = evaluate_grid(sdf, centre - half, centre + half, resolution=48,
                             init_resolution=8)
    verts, faces = extract_mesh(grid)
    assert len(faces) > 0
    voxel = float(grid.spacing[0])
    distance = np.abs(signed_distance(*subject["body"], verts))
    assert distance.max() <= voxel
    assert np.abs(np.linalg.norm(verts - centre, axis=1) - BODY_R).max() < voxel + 0.01


def test_body_prior_residual_trains(subject) -> None:
    """The residual head starts at zero yet gets gradients: one step moves the SDF."""
    model = _model()
    batch = subject["batch"]
    inputs = {k: v for k, v in batch.items() if k not in ("points", "sdf")}
    points = batch["points"].float().requires_grad_(True)
    volume = model.encode(inputs)
    before = model.query(volume, points)
    d_body = volume.body(points)
    torch.testing.assert_close(before, d_body)
    loss = ((before - batch["sdf"]) ** 2).mean() + eikonal(sdf_gradient(before, points))
    loss.backward()
    assert model.head.layers[-1].weight.grad.abs().sum() > 0
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    after = model.query(model.encode(inputs), points.detach())
    assert (after - volume.body(points.detach())).abs().max() > 0


def test_fine_level_adds_the_full_resolution_level(subject) -> None:
    model = _model(fine_level=True).eval()
    inputs = {k: v for k, v in subject["batch"].items() if k not in ("points", "sdf")}
    with torch.no_grad():
        volume = model.encode(inputs)
    assert volume.strides == [1, 2, 4, 8, 16]
    assert volume.levels[0].shape[2:] == (24, 24, 24)
    assert model.head.in_dim == sum(model.diffusion.level_channels) + 3 + 12 + 1


def test_body_prior_without_the_volume_is_refused(tmp_path: Path) -> None:
    from models.data import Pixel2ISDFDataset

    path = build(tmp_path / "s", output=tmp_path / "s.h5",
                 params={**SMALL, "body_sdf_resolution": 0})
    with pytest.raises(PipelineError, match=r"s\.h5 has no body signed-distance volume.*"
                                            r"snakemake --forcerun cache"):
        Pixel2ISDFDataset([path], n_views=2, n_points=10, with_body_sdf=True)
    Pixel2ISDFDataset([path], n_views=2, n_points=10)  # the sphere prior does not need it
    with pytest.raises(PipelineError, match="lacks \\['body_sdf'"):
        BodySDF.from_batch({"body_sdf_lo": torch.zeros(1, 3), "body_sdf_hi": torch.ones(1, 3)})


def test_latent_cube_outside_the_volume_is_refused(subject) -> None:
    model = _model(volume_padding=0.9).eval()  # the fake's volume has padding 0.6
    inputs = {k: v for k, v in subject["batch"].items() if k not in ("points", "sdf")}
    with pytest.raises(PipelineError, match=r"does not cover the latent volume's cube "
                                            r"\(train.model.volume_padding 0.9\)"):
        model.encode(inputs)


# --- the silhouette (visual-hull) feature ---------------------------------------------------

def test_nearest_vertex_grid_finds_a_near_vertex() -> None:
    from models.pixel2isdf.hull import nearest_vertex

    v, f = icosphere()
    volume = sdf_volume(v, f, resolution=33, padding=0.15, name="sphere")
    points = torch.from_numpy(near_surface(500, 0.05, seed=2))[None]
    found = nearest_vertex(torch.from_numpy(volume["nearest"])[None],
                           torch.from_numpy(volume["lo"])[None],
                           torch.from_numpy(volume["hi"])[None], points)[0].numpy()
    distances = np.linalg.norm(points[0].numpy()[:, None] - v[None], axis=-1)
    best = distances.min(axis=1)
    voxel = float(volume["hi"][0] - volume["lo"][0]) / 32
    # the grid point's nearest vertex: within the rounding (half a voxel diagonal, twice)
    assert (distances[np.arange(len(found)), found] <= best + np.sqrt(3) * voxel).all()
    assert (found == distances.argmin(axis=1)).mean() > 0.3


def test_repose_applies_each_points_vertex_transform() -> None:
    from models.pixel2isdf.hull import repose

    gen = torch.Generator().manual_seed(0)
    transforms = torch.randn(1, 2, 5, 3, 4, generator=gen, dtype=torch.float64)  # A=2, N=5
    points = torch.randn(1, 3, 3, generator=gen, dtype=torch.float64)
    vertex = torch.tensor([[4, 0, 4]])
    action = torch.tensor([[1, 0, 1]])  # V=3 views
    posed = repose(points, vertex, action, transforms)
    assert posed.shape == (1, 3, 3, 3)
    for v in range(3):
        for p in range(3):
            t = transforms[0, action[0, v], vertex[0, p]]
            torch.testing.assert_close(posed[0, v, p], t[:, :3] @ points[0, p] + t[:, 3])


def disk_views():
    """Two views along +z and +x of a disk matte (radius 10 px of 64, f 60 px, 3 m away),
    plus a padding view that would see everything outside; identity skinning."""
    from models.pixel2isdf.hull import HullViews

    size = 64
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((yy - 31.5) ** 2 + (xx - 31.5) ** 2 < 10 ** 2).double()
    K = torch.tensor([[60.0, 0, 31.5], [0, 60.0, 31.5], [0, 0, 1]], dtype=torch.float64)
    looking_x = torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=torch.float64)
    R = torch.stack([torch.eye(3, dtype=torch.float64), looking_x])
    t = torch.tensor([[0.0, 0, 3], [0, 0, 3]], dtype=torch.float64)
    identity = torch.cat([torch.eye(3), torch.zeros(3, 1)], dim=1).double()
    alphas = torch.cat([disk.expand(2, 1, size, size), torch.zeros(1, 1, size, size,
                                                                   dtype=torch.float64)])
    return HullViews(alphas=alphas[None],
                     cameras={"K": K.expand(1, 3, 3, 3), "R": torch.cat([R, R[:1]])[None],
                              "t": torch.cat([t, t[:1]])[None]},
                     action=torch.zeros(1, 3, dtype=torch.long),
                     valid=torch.tensor([[True, True, False]]),
                     transforms=identity.expand(1, 1, 1, 3, 4),
                     nearest=torch.zeros(1, 4, 4, 4, dtype=torch.int32),
                     lo=-torch.ones(1, 3, dtype=torch.float64),
                     hi=torch.ones(1, 3, dtype=torch.float64), crop_size=size)


# (0, 0, 0) is inside both; (0, 0, 0.9) projects 0.9 m off-centre in the +x view only
DISK_POINTS = torch.tensor([[[0.0, 0, 0], [0, 0, 0.9], [0.9, 0.9, 0]]], dtype=torch.float64)


def test_hull_features_read_the_mattes() -> None:
    """A point both views see inside gets 1, a point one view sees outside gets mean 0.5,
    min 0; the padding view is ignored."""
    from models.pixel2isdf.hull import hull_features

    got = hull_features(disk_views(), DISK_POINTS.clone().requires_grad_(True))
    torch.testing.assert_close(got[0], torch.tensor([[1.0, 1.0], [0.5, 0.0], [0.0, 0.0]],
                                                    dtype=torch.float64))
    assert not got.requires_grad


def test_hull_carve_field_is_positive_where_the_photos_show_background() -> None:
    from pipeline.reconstruct import HULL_SLOPE, hull_carve_field

    got = hull_carve_field(disk_views(), 0.75)(DISK_POINTS)[0]
    torch.testing.assert_close(got, HULL_SLOPE * torch.tensor([-0.25, 0.25, 0.75],
                                                              dtype=torch.float64))


def test_hull_carve_field_stops_at_the_body() -> None:
    """With the body's signed distance the field is min(carve, d_body): the body's inside
    where the photos show the person, the body's distance where it is nearer than the carve
    (just outside the body), the carve beyond."""
    from pipeline.reconstruct import HULL_SLOPE, hull_carve_field

    def body(points: torch.Tensor) -> torch.Tensor:  # a ball of radius 0.88 at the origin
        return points.norm(dim=-1) - 0.88

    got = hull_carve_field(disk_views(), 0.75, body)(DISK_POINTS)[0]
    torch.testing.assert_close(got, torch.tensor([-0.88, 0.02, HULL_SLOPE * 0.75],
                                                 dtype=torch.float64))

def test_hull_feature_model_runs_and_trains(subject, tmp_path: Path) -> None:
    from models.data import Pixel2ISDFDataset

    dataset = Pixel2ISDFDataset([subject["path"]], n_views=2, n_points=100, with_hull=True)
    batch = torch.utils.data.default_collate([dataset[0]])
    n_actions, n_views = 2, 4  # the fake: 2 actions × 2 views, every view in the pool
    assert batch["action_transforms"].shape[1:3] == (n_actions, len(subject["body"][0]))
    assert batch["hull_alphas"].shape[1] == n_views and batch["hull_valid"].all()
    assert batch["hull_action"].tolist() == [[0, 0, 1, 1]]
    model = _model(hull_feature=True)
    assert model.head.in_dim == sum(model.diffusion.level_channels) + 3 + 12 + 3
    inputs = {k: v for k, v in batch.items() if k not in ("points", "sdf")}
    points = batch["points"].float().requires_grad_(True)
    volume = model.encode(inputs)
    sdf = model.query(volume, points)
    torch.testing.assert_close(sdf, volume.body(points))  # still the body before training
    (sdf.sum() + eikonal(sdf_gradient(sdf, points))).backward()
    assert model.head.layers[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"hull_feature needs model\.prior 'body'"):
        _model(hull_feature=True, prior="sphere")

"""The reposable avatar (pipeline/export.py): influences, joint hierarchy, and the .glb read
back and posed as a glTF viewer poses it, against the pipeline's own reposing; the rig read
from the fit file without torch, and the body model's for an older fit file."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from pipeline import export
from pipeline.bodymodel import make_body_model
from pipeline.errors import PipelineError
from pipeline.meshio import write_ply
from pipeline.selfcheck import nearest_body_vertex, repose, vertex_transforms


def _rigid(rotvec: np.ndarray, translation: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    out[:3, 3] = translation
    return out


def _matrix(node: pygltflib.Node) -> np.ndarray:
    return (np.eye(4) if node.matrix is None
            else np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T)


def viewer_pose(path: Path, posed_world: np.ndarray | None = None) -> np.ndarray:
    """The skinned mesh of a .glb as a glTF viewer computes it: joint globals down the node
    tree times the inverse bind matrices, blended by every JOINTS_n/WEIGHTS_n set. With
    ``posed_world`` (B, 4, 4), the joints are first moved to those global frames (as a user
    posing the rig would, by setting each node's local transform)."""
    gltf = pygltflib.GLTF2().load(str(path))
    skin = gltf.skins[0]
    joints = skin.joints
    local = {j: _matrix(gltf.nodes[j]) for j in joints}
    parent = {c: i for i, node in enumerate(gltf.nodes) for c in (node.children or [])}
    if posed_world is not None:
        for b, j in enumerate(joints):
            p = parent.get(j)
            above = posed_world[joints.index(p)] if p in joints else np.eye(4)
            local[j] = np.linalg.inv(above) @ posed_world[b]

    def world(node: int) -> np.ndarray:
        here = local.get(node, _matrix(gltf.nodes[node]))
        return here if node not in parent else world(parent[node]) @ here

    ibm = export.read_accessor(gltf, skin.inverseBindMatrices).reshape(-1, 4, 4)
    ibm = np.transpose(ibm, (0, 2, 1)).astype(np.float64)  # column-major on file
    skinning = np.stack([world(j) @ ibm[b] for b, j in enumerate(joints)])
    attributes = gltf.meshes[0].primitives[0].attributes
    positions = export.read_accessor(gltf, attributes.POSITION).astype(np.float64)
    out = np.zeros_like(positions)
    k = 0
    while getattr(attributes, f"JOINTS_{k}", None) is not None:
        index = export.read_accessor(gltf, getattr(attributes, f"JOINTS_{k}")).astype(int)
        weight = export.read_accessor(gltf, getattr(attributes, f"WEIGHTS_{k}"))
        for c in range(4):
            m = skinning[index[:, c]]
            out += weight[:, c:c + 1] * (np.einsum("vij,vj->vi", m[:, :3, :3], positions)
                                         + m[:, :3, 3])
        k += 1
    return out


def test_influence_sets_keep_every_weight_and_sum_to_one() -> None:
    weights = np.zeros((3, 10))
    weights[0, [1, 3, 5, 7, 8, 9]] = [0.1, 0.3, 0.2, 0.1, 0.2, 0.1]
    weights[1, 2] = 2.0
    weights[2, [0, 4]] = [0.25, 0.75]
    joints, values = export.influence_sets(weights)
    assert joints.shape == values.shape == (3, 8)  # 6 influences → two sets of four
    assert joints.dtype == np.uint16 and values.dtype == np.float32
    np.testing.assert_allclose(values.sum(1), 1.0, atol=1e-6)
    dense = np.zeros_like(weights)
    np.add.at(dense, (np.repeat(np.arange(3), 8), joints.ravel()), values.ravel())
    np.testing.assert_allclose(dense, weights / weights.sum(1, keepdims=True), atol=1e-6)
    assert joints[0, 0] == 3 and values[2, 0] == pytest.approx(0.75)
    with pytest.raises(PipelineError, match="no skinning weight"):
        export.influence_sets(np.zeros((1, 3)))


def test_local_matrices_compose_back_to_the_globals() -> None:
    rng = np.random.default_rng(0)
    parents = np.array([-1, 0, 1, 1, 0])
    world = np.stack([_rigid(rng.normal(size=3), rng.normal(size=3)) for _ in parents])
    local = export.local_matrices(parents, world)
    for b, p in enumerate(parents):
        composed = local[b] if p < 0 else world[p] @ local[b]
        np.testing.assert_allclose(composed, world[b], atol=1e-12)


@pytest.mark.parametrize("z_up", [True, False])
def test_glb_round_trip_rest_and_posed(tmp_path: Path, z_up: bool) -> None:
    """A three-bone chain: the file's joints, names and hierarchy; at rest the viewer shows
    the canonical mesh (turned to Y up); posed by the fit's bone transforms it shows the
    pipeline's reposed mesh."""
    rng = np.random.default_rng(1)
    parents = np.array([-1, 0, 1])
    bind = np.stack([_rigid(np.zeros(3), [0.0, 0.0, z]) for z in (0.0, 0.5, 1.0)])
    body = np.column_stack([rng.uniform(-0.2, 0.2, (60, 2)), np.linspace(0, 1.4, 60)])
    raw = np.exp(-((body[:, 2:3] - np.array([0.2, 0.7, 1.2])) / 0.25) ** 2)
    body_weights = raw / raw.sum(1, keepdims=True)
    vertices = body + rng.normal(scale=0.01, size=body.shape)
    faces = np.array([[0, 1, 2], [2, 3, 4]])
    weights = export.vertex_weights(vertices, body, body_weights)
    gltf = export.avatar_gltf(vertices, faces, weights, ["hips", "spine", "head"], parents,
                              bind, z_up=z_up)
    path = tmp_path / "avatar.glb"
    gltf.save_binary(str(path))

    loaded = pygltflib.GLTF2().load(str(path))
    names = [loaded.nodes[j].name for j in loaded.skins[0].joints]
    assert names == ["hips", "spine", "head"]
    assert loaded.nodes[0].children == [1] and loaded.nodes[1].children == [2]
    turn = export.Z_UP_TO_Y_UP if z_up else np.eye(4)
    expected_rest = vertices @ turn[:3, :3].T
    np.testing.assert_allclose(viewer_pose(path), expected_rest, atol=1e-5)

    bones = np.stack([np.stack([_rigid(rng.normal(scale=0.4, size=3), rng.normal(size=3))
                                for _ in parents])])  # (A=1, B, 4, 4) canonical → posed
    pipeline = repose(vertices, nearest_body_vertex(vertices, body),
                      vertex_transforms(body_weights, bones))[0]
    posed_world = turn @ bones[0] @ bind  # the joints' posed frames, in the file's frame
    np.testing.assert_allclose(viewer_pose(path, posed_world), pipeline @ turn[:3, :3].T,
                               atol=1e-5)


def anny_subject(tmp_path: Path, model, shape: torch.Tensor, canonical: np.ndarray,
                 skeleton: bool = True) -> tuple[Path, Path, Path]:
    """A fit file of an Anny body and its own canonical body as the reconstruction (with a
    report saying it has a surface): ``(fit, mesh, recon)``. ``skeleton``: the file holds
    the body's rig (``bone_parents``, ``bone_bind``) as the fit stage writes it; False: a
    fit file from before it did."""
    fit = tmp_path / "s.npz"
    rig = model.skeleton(shape) if skeleton else None
    np.savez(fit, body_model=np.array("anny"), bone_names=np.array(model.bone_names),
             shape=shape.numpy(), canonical_vertices=canonical.astype(np.float32),
             skinning_weights=model.skinning_weights,
             **({"bone_parents": rig.parents, "bone_bind": rig.bind} if rig else {}))
    mesh, recon = tmp_path / "s.ply", tmp_path / "s.json"
    write_ply(mesh, canonical, model.faces)
    recon.write_text(json.dumps({"subject": "s", "surface": True}))
    return fit, mesh, recon


def _anny_posed(tmp_path: Path, lift: float):
    """An Anny body's canonical vertices, a forward pass lifted by ``lift`` about X and its
    subject files: ``(model, shape, canonical, out, (fit, mesh, recon))``."""
    model = make_body_model("anny")
    shape = torch.zeros(model.shape_size)
    canonical = model.canonical(shape).vertices.detach().numpy().astype(np.float64)
    pose = model.neutral_pose()[None]
    out = model.forward(shape, pose, torch.tensor([[0.0, 0.0, 0.6]]),
                        torch.tensor([[lift, 0, 0]]))
    return model, shape, canonical, out, anny_subject(tmp_path, model, shape, canonical)


def test_run_on_an_anny_fit_reposes_like_the_fit(tmp_path: Path) -> None:
    """The stage on a real Anny body: its own canonical body exported and posed in the file
    by the fit's bone transforms lands on the fit's posed body."""
    model, shape, _, out, (fit, mesh, recon) = _anny_posed(tmp_path, 0.1)
    summary = export.run(mesh=mesh, recon=recon, fit=fit, output=tmp_path / "s.glb",
                         params={"fit": {"body_model": "anny"}, "export": {"faces": None}})
    assert not summary["textured"] and summary["faces"] == summary["faces_before"]
    assert summary["joints"] == len(model.bone_names) and summary["influence_sets"] >= 2
    skeleton = model.skeleton(shape)
    posed_world = (export.Z_UP_TO_Y_UP @ out.bone_transforms[0].detach().numpy().astype(
        np.float64) @ skeleton.bind)
    posed = viewer_pose(tmp_path / "s.glb", posed_world) @ export.Z_UP_TO_Y_UP[:3, :3]
    expected = out.vertices[0].detach().numpy()
    assert np.abs(posed - expected).max() < 1e-4  # float32 file, metres

    recon.write_text(json.dumps({"subject": "s", "surface": False}))
    with pytest.raises(PipelineError, match="no surface"):
        export.run(mesh=mesh, recon=recon, fit=fit, output=tmp_path / "t.glb",
                   params={"fit": {"body_model": "anny"}})
    assert not (tmp_path / "t.glb").exists()


def test_textured_glb_maps_back_to_the_mesh_colours(tmp_path: Path) -> None:
    """A coloured Anny body, decimated to 4,000 faces and textured: the file's texture,
    sampled at each triangle's centre through its UVs, gives the colour the coloured mesh has
    there (a smooth field: the mean of the face's corners)."""
    from PIL import Image

    from pipeline.colouring.texture import sample_texture

    model = make_body_model("anny")
    shape = torch.zeros(model.shape_size)
    canonical = model.canonical(shape).vertices.detach().numpy().astype(np.float64)
    fit, mesh, recon = anny_subject(tmp_path, model, shape, canonical)
    colours = 0.2 + 0.6 * (canonical - canonical.min(0)) / np.ptp(canonical, axis=0)
    write_ply(mesh, canonical, model.faces, colours)
    summary = export.run(mesh=mesh, recon=recon, fit=fit, output=tmp_path / "s.glb",
                         params={"fit": {"body_model": "anny"},
                                 "export": {"faces": 4000, "texture_size": 512}})
    assert summary["textured"] and abs(summary["faces"] - 4000) <= 40
    gltf = pygltflib.GLTF2().load(str(tmp_path / "s.glb"))
    primitive = gltf.meshes[0].primitives[0]
    uvs = export.read_accessor(gltf, primitive.attributes.TEXCOORD_0).astype(np.float64)
    faces = export.read_accessor(gltf, primitive.indices).reshape(-1, 3)
    view = gltf.bufferViews[gltf.images[0].bufferView]
    png = gltf.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape == (512, 512, 3)
    rest = export.read_accessor(gltf, primitive.attributes.POSITION) @ export.Z_UP_TO_Y_UP[:3, :3]
    centres = rest[faces].mean(axis=1)
    lo, span = canonical.min(0), np.ptp(canonical, axis=0)
    expected = 0.2 + 0.6 * (centres - lo) / span
    got = sample_texture(image, uvs[faces].mean(axis=1))
    error = np.abs(got - expected).max(axis=1)
    assert np.median(error) < 0.01 and np.percentile(error, 95) < 0.03
    # A second reader (trimesh, as viewers load glTF) finds the same texture and UVs.
    scene = trimesh.load(tmp_path / "s.glb")
    (loaded,) = scene.geometry.values()
    assert np.array_equal(np.asarray(loaded.visual.material.baseColorTexture.convert("RGB")),
                          image)
    assert len(loaded.visual.uv) == len(uvs)


@pytest.mark.parametrize("coloured", [False, True])
def test_decimated_avatar_keeps_a_valid_skin(tmp_path: Path, coloured: bool) -> None:
    """Decimated to 2,000 faces, untextured or textured (its vertices split along the
    atlas's seams, in bone groups): every vertex's influences sum to one and come from
    its nearest body vertex, and the rig posed in a viewer moves the decimated mesh as the
    pipeline's reposing moves it."""
    model, shape, canonical, out, (fit, mesh, recon) = _anny_posed(tmp_path, 0.2)
    if coloured:
        write_ply(mesh, canonical, model.faces, np.full((len(canonical), 3), 0.4))
    summary = export.run(mesh=mesh, recon=recon, fit=fit, output=tmp_path / "d.glb",
                         params={"fit": {"body_model": "anny"},
                                 "export": {"faces": 2000, "texture_size": 64}})
    assert summary["faces"] <= 2020 < summary["faces_before"]
    assert summary["textured"] == coloured
    gltf = pygltflib.GLTF2().load(str(tmp_path / "d.glb"))
    attributes = gltf.meshes[0].primitives[0].attributes
    weights = sum(export.read_accessor(gltf, getattr(attributes, f"WEIGHTS_{k}")).sum(1)
                  for k in range(8) if getattr(attributes, f"WEIGHTS_{k}", None) is not None)
    np.testing.assert_allclose(weights, 1.0, atol=1e-5)
    rest = export.read_accessor(gltf, attributes.POSITION).astype(np.float64)
    rest = rest @ export.Z_UP_TO_Y_UP[:3, :3]
    skeleton = model.skeleton(shape)
    posed_world = (export.Z_UP_TO_Y_UP @ out.bone_transforms[0].detach().numpy().astype(
        np.float64) @ skeleton.bind)
    posed = viewer_pose(tmp_path / "d.glb", posed_world) @ export.Z_UP_TO_Y_UP[:3, :3]
    transforms = vertex_transforms(model.skinning_weights,
                                   out.bone_transforms.detach().numpy())
    expected = repose(rest, nearest_body_vertex(rest, canonical), transforms)[0]
    assert np.abs(posed - expected).max() < 1e-4


def test_export_imports_no_torch() -> None:
    """``import pipeline.export`` (the avatar stage) loads neither torch nor a body model:
    the rig is the fit file's (a child interpreter, so this process's imports do not
    count)."""
    heavy = ("torch", "anny", "roma", "pipeline.bodymodel", "pipeline.registration")
    child = ("import sys, pipeline.export\n"
             f"print(sorted(set({heavy!r}) & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("coloured", [False, True])
def test_stored_skeleton_gives_the_glb_of_the_body_model(tmp_path: Path, coloured: bool,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    """The same fit file with its stored rig and without it (a fit from before it was
    stored: the body model's skeleton, one INFO line saying so) exports the same bytes;
    a file with half the rig is refused."""
    model = make_body_model("anny")
    shape = torch.zeros(model.shape_size)
    shape[:2] = torch.tensor([0.3, -0.2])
    canonical = model.canonical(shape).vertices.detach().numpy().astype(np.float64)
    params = {"fit": {"body_model": "anny"}, "export": {"faces": 1000, "texture_size": 32}}
    glbs = []
    for stored in (True, False):
        fit, mesh, recon = anny_subject(tmp_path, model, shape, canonical, skeleton=stored)
        if coloured:
            write_ply(mesh, canonical, model.faces, 0.2 + 0.6 * (canonical - canonical.min(0))
                      / np.ptp(canonical, axis=0))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pipeline.export"):
            export.run(mesh=mesh, recon=recon, fit=fit, output=tmp_path / f"{stored}.glb",
                       params=params)
        older = [r for r in caplog.records if "predates the stored skeleton" in r.message]
        assert len(older) == (0 if stored else 1)
        glbs.append((tmp_path / f"{stored}.glb").read_bytes())
    assert glbs[0] == glbs[1]

    with np.load(fit) as npz:
        half = {k: npz[k] for k in npz.files}
    half["bone_parents"] = model.skeleton(shape).parents
    np.savez(fit, **half)
    with pytest.raises(PipelineError, match="bone_parents but not all of"):
        export.run(mesh=mesh, recon=recon, fit=fit, output=tmp_path / "half.glb",
                   params=params)


def test_chart_groups_merge_small_bones_into_the_bone_above() -> None:
    """Faces grouped by their heaviest bone; a bone with few faces joins its parent, the
    deepest first (a toe into the foot, then a small foot into the leg), and the groups are
    numbered from 0."""
    from pipeline.colouring.texture import chart_groups

    # 0 root; 1 leg, 2 spine (under 0); 3 foot (under 1); 4 toe (under 3); 5 head (under 2)
    parents = np.array([-1, 0, 0, 1, 3, 2])
    bones = np.array([0] * 40 + [1] * 30 + [2] * 20 + [3] * 3 + [4] * 2 + [5] * 5)
    faces = np.arange(3 * len(bones)).reshape(-1, 3)
    weights = np.zeros((faces.size, len(parents)))
    weights[faces, bones[:, None]] = 1.0
    weights[faces[:, 0], 0] += 0.4  # a lighter second bone on one corner of every face
    groups = chart_groups(faces, weights, parents, min_share=0.06)
    assert groups.tolist() == [0] * 40 + [1] * 30 + [2] * 20 + [1] * 5 + [2] * 5
    groups = chart_groups(faces, weights, parents, min_share=0.05)  # the foot keeps its 5
    assert groups.tolist() == [0] * 40 + [1] * 30 + [2] * 20 + [3] * 5 + [4] * 5
    assert chart_groups(faces, weights, parents, min_share=0.0).tolist() == (
        [0] * 40 + [1] * 30 + [2] * 20 + [3] * 3 + [4] * 2 + [5] * 5)


def test_unwrap_keeps_each_group_in_its_own_charts() -> None:
    """A sphere unwrapped in two groups: every atlas face lies on the faces of one group,
    its corners are copies of the mesh's vertices, and its UVs are in [0, 1]."""
    from pipeline.colouring.texture import unwrap

    sphere = trimesh.creation.icosphere(subdivisions=3)
    vertices, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    groups = (vertices[faces].mean(axis=1)[:, 2] > 0).astype(int)
    atlas = unwrap(vertices, faces, groups)
    assert len(atlas.faces) == len(faces)
    np.testing.assert_array_equal(atlas.vertices, vertices[atlas.source])
    assert atlas.uvs.min() >= 0.0 and atlas.uvs.max() <= 1.0
    original = {tuple(sorted(f)): g for f, g in zip(faces.tolist(), groups, strict=True)}
    seen = [original[tuple(sorted(f))] for f in atlas.source[atlas.faces].tolist()]
    assert sorted(seen) == sorted(groups.tolist())
    # No atlas vertex is shared by faces of two groups: the groups meet only at seams.
    owner = np.full(len(atlas.vertices), -1)
    for face, group in zip(atlas.faces, seen, strict=True):
        assert np.all((owner[face] == -1) | (owner[face] == group))
        owner[face] = group


def test_barycentric_known_points_and_a_degenerate_triangle() -> None:
    """Corners, the centroid and a point off the plane (3D: its projection), a point outside
    (clipped), and a degenerate triangle (its centroid's coordinates)."""
    from pipeline.colouring.texture import barycentric

    corners = np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]],
                        [[0.0, 0, 0], [1, 1, 1], [2, 2, 2]]])
    points = np.array([[1.0, 0, 0], [1 / 3, 1 / 3, 5.0], [0.25, 0.5, 0], [2.0, 0, 0],
                       [0.5, 0.5, 0.5]])
    got = barycentric(points, corners, np.array([0, 0, 0, 0, 1]))
    np.testing.assert_allclose(got, [[0, 1, 0], [1 / 3, 1 / 3, 1 / 3], [0.25, 0.25, 0.5],
                                     [0, 1, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-12)

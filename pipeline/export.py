"""The reposable avatar: a canonical reconstruction as glTF 2.0 binary (``.glb``) with a skin.

``recon/<model>/<subject>.glb`` holds the reconstruction's triangles, the fitted body's bone
tree (one glTF joint node per bone, named as the body model names it, at its canonical
frame) and each vertex's skinning weights, carried from its nearest fitted-body vertex: the
same weights and bones as the pipeline's own reposing (:mod:`pipeline.selfcheck`), so a
joint moved in Blender (or any glTF viewer) moves the clothed surface as the pipeline would.

Conventions (glTF 2.0): metres, Y up. A Z-up body model (Anny) is turned by a rotation of
-90° about X, applied to the positions and the bind matrices alike, so the file's rest pose
is the canonical reconstruction upright. Influences are written in sets of four
(``JOINTS_n``/``WEIGHTS_n``), as many sets as the most-influenced vertex needs, so no weight
is dropped. Inverse bind matrices are the inverses of the joints' rest global transforms.

The rig comes from the fit file alone (``bone_names``, ``bone_parents``, ``bone_bind``,
``skinning_weights``: :func:`read_rig`), so this module imports neither torch nor a body
model; a fit file written before the rig was stored falls back to building the body model.
The data set's OBJ export (``export-dataset``) is :mod:`pipeline.submission`.

Reading back: :func:`read_accessor` (the round-trip test, ``tests/test_export.py``).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.colouring.texture import (
    MAX_TEXTURE_SIZE,
    Atlas,
    bake,
    chart_groups,
    decimate,
    unwrap,
)
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, read_json
from pipeline.meshio import read_ply
from pipeline.selfcheck import nearest_body_vertex

log = logging.getLogger(__name__)

UP_AXIS = {"anny": 2, "smplx": 1}
"""The canonical frame's up axis of each body model (2: Z, turned to glTF's Y)."""

Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0],
                         [0.0, 0.0, 0.0, 1.0]])
"""-90° about X: (x, y, z) → (x, z, -y), Z up becomes Y up."""

FLOAT, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963


def vertex_weights(vertices: np.ndarray, body: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(V, B)`` skinning weights of the ``(V, 3)`` vertices: those of each one's nearest
    ``(N, 3)`` body vertex (``weights`` ``(N, B)``)."""
    return np.asarray(weights)[nearest_body_vertex(vertices, body)]


def influence_sets(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``(V, B)`` weights → ``(V, 4k)`` joint indices (uint16) and weights (float32,
    rows summing to 1), the nonzero influences first in decreasing weight, k sets of four
    (enough for the vertex with the most influences)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape[1] > np.iinfo(np.uint16).max:
        raise PipelineError(f"{weights.shape[1]} bones: more than a glTF skin can index")
    count = int((weights > 0).sum(1).max()) if len(weights) else 1
    width = 4 * max(1, math.ceil(count / 4))
    if weights.shape[1] < width:  # fewer bones than one set: zero-weight columns
        weights = np.pad(weights, ((0, 0), (0, width - weights.shape[1])))
    order = np.argsort(-weights, axis=1, kind="stable")[:, :width]
    picked = np.take_along_axis(weights, order, axis=1)
    total = picked.sum(1, keepdims=True)
    if (total <= 0).any():
        raise PipelineError("a vertex has no skinning weight")
    picked = picked / total
    joints = np.where(picked > 0, order, 0).astype(np.uint16)
    return joints, picked.astype(np.float32)


def local_matrices(parents: np.ndarray, world: np.ndarray) -> np.ndarray:
    """``(B, 4, 4)`` each joint's transform relative to its parent, from the ``(B, 4, 4)``
    global ones (a root's is its global one)."""
    inverse = np.linalg.inv(world)
    return np.stack([world[b] if p < 0 else inverse[p] @ world[b]
                     for b, p in enumerate(np.asarray(parents))])


def _column_major(matrix: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(matrix, dtype=np.float64).T.reshape(-1)]


class _Blob:
    """The binary chunk of a .glb: buffer views appended 4-byte aligned, one accessor each."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[Any] = []
        self.accessors: list[Any] = []

    def add(self, array: np.ndarray, component: int, kind: str, target: int | None = None,
            bounds: bool = False) -> int:
        import pygltflib as gl

        raw = np.ascontiguousarray(array).tobytes()
        self.data.extend(b"\0" * (-len(self.data) % 4))
        self.views.append(gl.BufferView(buffer=0, byteOffset=len(self.data), byteLength=len(raw),
                                        target=target))
        self.data.extend(raw)
        array = np.asarray(array)
        extra = {"min": array.min(0).tolist(), "max": array.max(0).tolist()} if bounds else {}
        self.accessors.append(gl.Accessor(bufferView=len(self.views) - 1, componentType=component,
                                          count=len(array), type=kind, **extra))
        return len(self.accessors) - 1


def avatar_gltf(vertices: np.ndarray, faces: np.ndarray, weights: np.ndarray,
                names: Sequence[str], parents: np.ndarray, bind: np.ndarray,
                z_up: bool, texture: tuple[np.ndarray, bytes] | None = None) -> Any:
    """The skinned avatar as a ``pygltflib.GLTF2`` with its binary blob set.

    Args:
        vertices: ``(V, 3)`` canonical mesh (model frame); faces ``(F, 3)``.
        weights: ``(V, B)`` skinning weights; names, parents ``(B,)``, bind ``(B, 4, 4)``:
            the bones (:class:`pipeline.bodymodel.Skeleton`).
        z_up: the model frame is Z up (turned to glTF's Y up).
        texture: ``(V, 2)`` UVs (glTF's: origin at the image's top left) and the PNG bytes
            of the base-colour texture they map; None: an untextured mesh.
    """
    import pygltflib as gl

    turn = Z_UP_TO_Y_UP if z_up else np.eye(4)
    world = turn @ np.asarray(bind, dtype=np.float64)  # joints' rest frames, glTF frame
    positions = (np.asarray(vertices, dtype=np.float64) @ turn[:3, :3].T).astype(np.float32)
    joints, values = influence_sets(weights)
    blob = _Blob()
    attributes: dict[str, int] = {"POSITION": blob.add(positions, FLOAT, "VEC3", ARRAY_BUFFER,
                                                      bounds=True)}
    for k in range(joints.shape[1] // 4):
        attributes[f"JOINTS_{k}"] = blob.add(joints[:, 4 * k:4 * k + 4], UNSIGNED_SHORT, "VEC4",
                                             ARRAY_BUFFER)
        attributes[f"WEIGHTS_{k}"] = blob.add(values[:, 4 * k:4 * k + 4], FLOAT, "VEC4",
                                              ARRAY_BUFFER)
    if texture is not None:
        attributes["TEXCOORD_0"] = blob.add(np.asarray(texture[0], dtype=np.float32), FLOAT,
                                            "VEC2", ARRAY_BUFFER)
    indices = blob.add(np.asarray(faces, dtype=np.uint32).reshape(-1, 1), UNSIGNED_INT, "SCALAR",
                       ELEMENT_ARRAY_BUFFER)
    inverse_bind = np.linalg.inv(world)
    ibm = blob.add(np.stack([np.asarray(_column_major(m), dtype=np.float32)
                             for m in inverse_bind]), FLOAT, "MAT4")
    local = local_matrices(parents, world)
    n = len(names)
    nodes = [gl.Node(name=str(names[b]), matrix=_column_major(local[b]),
                     children=[int(c) for c in np.flatnonzero(np.asarray(parents) == b)] or None)
             for b in range(n)]
    roots = [int(b) for b in np.flatnonzero(np.asarray(parents) < 0)]
    nodes.append(gl.Node(name="skeleton", children=roots))
    nodes.append(gl.Node(name="reconstruction", mesh=0, skin=0))
    material: dict[str, Any] = {}
    if texture is not None:
        blob.data.extend(b"\0" * (-len(blob.data) % 4))
        blob.views.append(gl.BufferView(buffer=0, byteOffset=len(blob.data),
                                        byteLength=len(texture[1])))
        blob.data.extend(texture[1])
        material = {
            "images": [gl.Image(bufferView=len(blob.views) - 1, mimeType="image/png")],
            "samplers": [gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR,
                                    wrapS=gl.CLAMP_TO_EDGE, wrapT=gl.CLAMP_TO_EDGE)],
            "textures": [gl.Texture(sampler=0, source=0)],
            "materials": [gl.Material(name="photos", doubleSided=False,
                                      pbrMetallicRoughness=gl.PbrMetallicRoughness(
                                          baseColorTexture=gl.TextureInfo(index=0),
                                          metallicFactor=0.0, roughnessFactor=1.0))]}
    gltf = gl.GLTF2(
        asset=gl.Asset(version="2.0", generator="pixel2isdf pipeline.export"),
        scene=0, scenes=[gl.Scene(nodes=[n, n + 1])], nodes=nodes,
        meshes=[gl.Mesh(name="reconstruction", primitives=[gl.Primitive(
            attributes=gl.Attributes(**attributes), indices=indices, mode=gl.TRIANGLES,
            material=0 if texture is not None else None)])],
        **material,
        skins=[gl.Skin(name="body", joints=list(range(n)), inverseBindMatrices=ibm,
                       skeleton=n)],
        accessors=blob.accessors, bufferViews=blob.views,
        buffers=[gl.Buffer(byteLength=len(blob.data))])
    gltf.set_binary_blob(bytes(blob.data))
    return gltf


_DTYPES = {FLOAT: np.float32, UNSIGNED_SHORT: np.uint16, UNSIGNED_INT: np.uint32, 5121: np.uint8}
_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def read_accessor(gltf: Any, index: int) -> np.ndarray:
    """Accessor ``index`` of a loaded .glb as a ``(count, width)`` array (tightly packed
    views, as :func:`avatar_gltf` writes them)."""
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    blob = gltf.binary_blob()
    start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    dtype = np.dtype(_DTYPES[accessor.componentType])
    width = _WIDTHS[accessor.type]
    return np.frombuffer(blob, dtype=dtype, count=accessor.count * width,
                         offset=start).reshape(accessor.count, width)


def with_surface(mesh: Path, recon: Path) -> dict[str, Any]:
    """The reconstruction's report; PipelineError when it has no surface to export."""
    summary = read_json(recon)
    if not summary.get("surface", False):
        raise PipelineError(f"{mesh}: the reconstruction has no surface ({recon}); there is "
                            "nothing to export")
    return summary


@dataclass(frozen=True)
class Rig:
    """A fitted body's skin, as the fit file holds it: the body model's ``name``, the B
    bones' ``names``, ``parents`` ``(B,)`` int64 (-1: a root) and canonical frames ``bind``
    ``(B, 4, 4)`` float64 (:class:`pipeline.bodymodel.Skeleton`), the canonical body
    ``vertices`` ``(N, 3)`` and its skinning ``weights`` ``(N, B)``."""

    name: str
    names: list[str]
    parents: np.ndarray
    bind: np.ndarray
    vertices: np.ndarray
    weights: np.ndarray


RIG_KEYS = ("body_model", "bone_names", "shape", "canonical_vertices", "skinning_weights")
"""The fit file's arrays every export reads."""
SKELETON_KEYS = ("bone_parents", "bone_bind")
"""The fit file's stored skeleton (written by :func:`pipeline.fit.fit_arrays`)."""


def model_skeleton(fit: Path, arrays: Mapping[str, np.ndarray],
                   params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(B,)`` parents and ``(B, 4, 4)`` bind frames of the fitted shape, from the body
    model (built with ``params``, the ``fit`` section): for a fit file without a stored
    skeleton. The only place this module imports torch and the body model."""
    import torch

    from pipeline.bodymodel import make_body_model

    name = str(arrays["body_model"])
    model = make_body_model(name, params.get(name, {}))
    if list(model.bone_names) != arrays["bone_names"].tolist():
        raise PipelineError(f"{fit}: its bones are not those of the body model {name!r} here "
                            "(another model version?); rerun the fit")
    skeleton = model.skeleton(torch.from_numpy(arrays["shape"]))
    return skeleton.parents, skeleton.bind


def read_rig(fit: Path, params: Mapping[str, Any]) -> Rig:
    """The fitted body's rig from the fit file ``fit``; for a file that predates the stored
    skeleton (no ``bone_parents`` / ``bone_bind``), the skeleton from the body model
    (:func:`model_skeleton`, ``params``: the ``fit`` section)."""
    try:
        with np.load(fit, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in RIG_KEYS}
            stored = {k: npz[k] for k in SKELETON_KEYS if k in npz.files}
    except (OSError, ValueError, KeyError) as exc:
        raise PipelineError(f"cannot read the fit file {fit}: {exc}; rerun the fit") from exc
    if len(stored) == len(SKELETON_KEYS):
        parents, bind = stored["bone_parents"], stored["bone_bind"]
    elif stored:
        raise PipelineError(f"cannot read the fit file {fit}: it has {', '.join(stored)} but "
                            f"not all of {', '.join(SKELETON_KEYS)}; rerun the fit")
    else:
        log.info("%s: the fit predates the stored skeleton (no %s): building the body model "
                 "for the bones", fit, " / ".join(SKELETON_KEYS))
        parents, bind = model_skeleton(fit, arrays, params)
    return Rig(name=str(arrays["body_model"]), names=arrays["bone_names"].tolist(),
               parents=np.asarray(parents, dtype=np.int64),
               bind=np.asarray(bind, dtype=np.float64),
               vertices=arrays["canonical_vertices"], weights=arrays["skinning_weights"])


def textured(full: np.ndarray, full_faces: np.ndarray, colours: np.ndarray,
             vertices: np.ndarray, faces: np.ndarray, weights: np.ndarray,
             parents: np.ndarray, size: int) -> tuple[Atlas, np.ndarray]:
    """The avatar's mesh (``vertices``, ``faces``: the decimated one, with its ``(V, B)``
    skinning ``weights``) unwrapped, one group of charts per bone segment
    (:func:`pipeline.colouring.texture.chart_groups`), and its ``(size, size, 3)`` texture
    baked from the full-resolution coloured mesh (``full``, ``full_faces``, ``colours``
    ``(N, 3)`` sRGB [0, 1]). The atlas's vertex ``i`` is the mesh's vertex ``source[i]``."""
    if size > MAX_TEXTURE_SIZE:
        raise PipelineError(f"export.texture_size {size} is over the largest texture "
                            f"written, {MAX_TEXTURE_SIZE}: lower it")
    atlas = unwrap(vertices, faces, chart_groups(faces, weights, parents))
    return atlas, bake(atlas, full, full_faces, colours, size)


def run(*, mesh: Path, recon: Path, fit: Path, output: Path, params: dict[str, Any]) -> dict:
    """Export one subject's canonical reconstruction as a skinned ``.glb`` (``output``).

    ``mesh``: the reconstruction, coloured (the colour stage's) or not; ``fit``: the fit
    file, whose rig the avatar gets (:func:`read_rig`). ``params``: the ``fit`` section (the
    body model and its options, read only for a fit file without a stored skeleton) and the
    ``export`` section: ``faces`` (decimate to about this many faces first; null: keep them
    all), ``texture_size`` (the side of the baked texture of a coloured mesh).
    """
    fit_params, settings = params["fit"], params.get("export", {})
    summary = with_surface(mesh, recon)
    rig = read_rig(fit, fit_params)
    loaded = read_ply(mesh)
    full, full_faces = np.asarray(loaded.vertices), np.asarray(loaded.faces)
    target = settings.get("faces")
    vertices, faces = decimate(full, full_faces, int(target)) if target else (full, full_faces)
    weights = vertex_weights(vertices, rig.vertices, rig.weights)
    texture = None
    if loaded.visual.kind == "vertex":
        size = int(settings.get("texture_size", 1024))
        atlas, image = textured(full, full_faces, np.asarray(loaded.visual.vertex_colors)[:, :3]
                                / 255.0, vertices, faces, weights, rig.parents, size)
        png = io.BytesIO()
        Image.fromarray(image).save(png, format="PNG", optimize=False)
        vertices, faces, texture = atlas.vertices, atlas.faces, (atlas.uvs, png.getvalue())
        weights = weights[atlas.source]
    gltf = avatar_gltf(vertices, faces, weights, rig.names, rig.parents, rig.bind,
                       z_up=UP_AXIS.get(rig.name, 1) == 2, texture=texture)
    with atomic_path(output) as tmp:
        gltf.save_binary(str(tmp))
    out = {"subject": summary.get("subject", mesh.stem), "vertices": len(vertices),
           "faces": len(faces), "faces_before": len(full_faces),
           "joints": len(rig.names), "textured": texture is not None,
           "influence_sets": math.ceil(int((weights > 0).sum(1).max()) / 4)}
    log.info("%s: wrote %s: %d vertices, %d faces (of %d), %d joints, %d influence set(s), %s",
             out["subject"], output, out["vertices"], out["faces"], out["faces_before"],
             out["joints"], out["influence_sets"],
             "textured" if texture is not None else "untextured (no vertex colours)")
    return out

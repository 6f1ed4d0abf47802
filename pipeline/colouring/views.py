"""A mesh seen by the pipeline's crop cameras: which vertices a view sees, their colour in
its photo, each view's weight, and the mesh drawn back into a view.

Cameras are the cache's ``camera/`` arrays of one view: ``K, R, t`` (calibrated pinhole,
OpenCV axes, metres) or ``R, scale, trans`` (the report's weak perspective, ``u = s · (R X)[:2]
+ trans``), both in the pixels of the ``S × S`` crop, pixel centres at integer coordinates
(:func:`models.blocks.projection.project`). Rays are cast with embree
(:mod:`pipeline.synthesize.raycast`). Colours are sRGB in [0, 1] unless named linear.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from trimesh.ray.ray_pyembree import RayMeshIntersector

from pipeline.synthesize.raycast import interpolate, trace
from pipeline.synthesize.render import compute_vertex_normals, linear_to_srgb, srgb_to_linear

Camera = Mapping[str, np.ndarray]

SELF_HIT_OFFSET = 2e-3
"""Metres a visibility ray starts off the surface, so that it does not hit its own faces."""


@dataclass(frozen=True)
class Weights:
    """How much a view counts at a vertex it sees: ``cos^cos_power`` of the angle between the
    normal and the direction to the camera (frontal views) × the vertex's footprint in the
    photo, (pixels per metre)^footprint_power (close views; every crop has the same size, so
    the footprint is also the sharpness). Vertices seen at more than ``acos(min_cos)`` are
    left out (their colour smears), and so are those within ``erode_px`` pixels of the
    matte's edge (their colour mixes with the background). ``robust_scale``: see
    :func:`blend` (0: the plain weighted mean)."""

    cos_power: float = 0.0
    footprint_power: float = 0.0
    min_cos: float = 0.2
    erode_px: int = 2
    robust_scale: float = 0.2

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Weights:
        """The ``colour`` config section's weights (defaults where a key is absent)."""
        return cls(**{k: type(getattr(cls(), k))(params[k])
                      for k in cls.__dataclass_fields__ if k in params})


def project_points(vertices: np.ndarray, camera: Camera
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(V, 3)`` world points → ``(V, 2)`` crop pixels, ``(V,)`` depth and ``(V,)`` in front
    of the camera: :func:`models.blocks.projection.project` in numpy, term for term (so
    without torch)."""
    x = np.asarray(vertices, dtype=np.float64)
    R = np.asarray(camera["R"], dtype=np.float64)
    if "K" in camera:
        K = np.asarray(camera["K"], dtype=np.float64)
        cam = x @ R.T + np.asarray(camera["t"], dtype=np.float64)
        depth = cam[:, 2]
        safe = np.where(np.abs(depth) > 1e-8, depth, 1e-8)
        xy = cam[:, :2] / safe[:, None]
        u = K[0, 0] * xy[:, 0] + K[0, 1] * xy[:, 1] + K[0, 2]
        v = K[1, 1] * xy[:, 1] + K[1, 2]
        return np.stack([u, v], axis=1), depth, depth > 1e-6
    rotated = x @ R.T
    uv = float(np.asarray(camera["scale"])) * rotated[:, :2] + np.asarray(camera["trans"],
                                                                          dtype=np.float64)
    return uv, rotated[:, 2], np.ones(len(x), dtype=bool)


def project(vertices: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """``(V, 3)`` world points → ``(V, 2)`` crop pixels and ``(V,)`` pixels per metre there
    (focal length / depth; the weak-perspective scale)."""
    uv, depth, _ = project_points(vertices, camera)
    if "K" in camera:
        return uv, float(np.asarray(camera["K"])[0, 0]) / np.maximum(depth, 1e-9)
    return uv, np.full(len(uv), abs(float(np.asarray(camera["scale"]))))


def towards_camera(vertices: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Unit ``(V, 3)`` directions from each point to the camera and ``(V,)`` distances to it
    (infinite for the weak-perspective camera, whose rays are parallel)."""
    x = np.asarray(vertices, dtype=np.float64)
    R = np.asarray(camera["R"], dtype=np.float64)
    if "K" in camera:
        centre = -R.T @ np.asarray(camera["t"], dtype=np.float64)
        d = centre - x
        dist = np.linalg.norm(d, axis=1)
        return d / np.maximum(dist, 1e-12)[:, None], dist
    return np.broadcast_to(-R[2], x.shape).copy(), np.full(len(x), np.inf)


def visible(vertices: np.ndarray, faces: np.ndarray, camera: Camera,
            intersector: RayMeshIntersector, normals: np.ndarray | None = None,
            min_cos: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Which vertices the camera sees: facing it (cosine of the normal with the direction
    to the camera above ``min_cos``) and with nothing of the mesh between them and it (a
    ray to the camera, started ``SELF_HIT_OFFSET`` off the surface, that hits no face before
    the camera).

    Args:
        vertices: ``(V, 3)``, faces: ``(F, 3)`` the mesh ``intersector`` was built on.
        normals: ``(V, 3)`` unit vertex normals (None: area-weighted from the mesh).

    Returns:
        ``(V,)`` bool seen and ``(V,)`` float cosines.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    n = compute_vertex_normals(v, f) if normals is None else normals
    d, dist = towards_camera(v, camera)
    cos = np.einsum("ij,ij->i", n, d)
    seen = cos > min_cos
    rows = np.flatnonzero(seen)
    if len(rows):
        hits = trace(intersector, v, f, v[rows] + SELF_HIT_OFFSET * d[rows], d[rows])
        blocked = (hits.face >= 0) & (hits.t < dist[rows] - SELF_HIT_OFFSET)
        seen[rows[blocked]] = False
    return seen, cos


def inner_matte(alpha: np.ndarray, erode_px: int) -> np.ndarray:
    """``(S, S)`` bool: alpha ≥ 128, shrunk by ``erode_px`` pixels."""
    inside = np.asarray(alpha) >= 128
    return ndimage.binary_erosion(inside, iterations=erode_px) if erode_px > 0 else inside


def sample(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear ``(V, 3)`` sRGB [0, 1] colours of an ``(S, S, 3)`` uint8 image at ``(V, 2)``
    pixel coordinates (clamped to the image)."""
    coords = np.stack([uv[:, 1], uv[:, 0]])
    return np.stack([ndimage.map_coordinates(image[..., c].astype(np.float64), coords,
                                             order=1, mode="nearest")
                     for c in range(3)], axis=1) / 255.0


@dataclass(frozen=True)
class ViewSample:
    """One view's say on every vertex: ``colour (V, 3)`` linear RGB, ``weight (V,)`` (0
    where the view does not see the vertex inside its matte)."""

    colour: np.ndarray
    weight: np.ndarray


def sample_view(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, camera: Camera,
                image: np.ndarray, alpha: np.ndarray, intersector: RayMeshIntersector,
                weights: Weights) -> ViewSample:
    """The colour and weight one photo gives each vertex of the mesh posed as in it."""
    seen, cos = visible(vertices, faces, camera, intersector, normals, weights.min_cos)
    uv, per_metre = project(vertices, camera)
    size = image.shape[0]
    pix = np.rint(uv).astype(np.int64)
    inside = seen & np.all((pix >= 0) & (pix < size), axis=1)
    matte = inner_matte(alpha, weights.erode_px)
    inside[inside] = matte[pix[inside, 1], pix[inside, 0]]
    weight = np.zeros(len(vertices))
    weight[inside] = (np.clip(cos[inside], 0.0, 1.0) ** weights.cos_power
                      * per_metre[inside] ** weights.footprint_power)
    colour = np.zeros((len(vertices), 3))
    colour[inside] = srgb_to_linear(sample(image, uv[inside]))
    return ViewSample(colour, weight)


ROBUST_ITERATIONS = 3
"""Reweighting rounds of the robust blend (each a weighted mean)."""


@dataclass(frozen=True)
class Stacked:
    """Views' samples as one list of (view, vertex) pairs with a weight: ``view (M,)``
    (the view's key), ``vertex (M,)``, ``weight (M,)``, ``colour (M, 3)`` linear RGB, in
    the views' order; ``n`` vertices. A view sees about a third of the vertices, so the
    blend sums only these pairs."""

    view: np.ndarray
    vertex: np.ndarray
    weight: np.ndarray
    colour: np.ndarray
    n: int

    @classmethod
    def of(cls, samples: Mapping[int, ViewSample]) -> Stacked:
        """The pairs of ``samples`` (view key → sample; one or more views)."""
        if not samples:
            raise ValueError("blend: no view to blend")
        pairs = {k: np.flatnonzero(s.weight > 0) for k, s in samples.items()}
        return cls(np.concatenate([np.full(len(i), k) for k, i in pairs.items()]),
                   np.concatenate(list(pairs.values())),
                   np.concatenate([samples[k].weight[i] for k, i in pairs.items()]),
                   np.concatenate([samples[k].colour[i] for k, i in pairs.items()]),
                   len(next(iter(samples.values())).weight))

    def blend(self, robust_scale: float = 0.0, keep: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`blend` of the pairs (those where ``keep`` ``(M,)`` bool, when given)."""
        vertex, weight, colour = ((self.vertex, self.weight, self.colour) if keep is None
                                  else (self.vertex[keep], self.weight[keep],
                                        self.colour[keep]))

        def weighted_mean(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            total = np.bincount(vertex, w, self.n)
            acc = np.stack([np.bincount(vertex, w * colour[:, c], self.n) for c in range(3)],
                           axis=1)
            return acc, total

        acc, total = weighted_mean(weight)
        seen = total > 0
        out = np.zeros((self.n, 3))
        out[seen] = acc[seen] / total[seen, None]
        for _ in range(ROBUST_ITERATIONS if robust_scale > 0 else 0):
            diff = colour - out[vertex]
            d2 = np.einsum("ij,ij->i", diff, diff) / robust_scale ** 2
            acc, total = weighted_mean(weight / (1.0 + d2))
            out[seen] = acc[seen] / total[seen, None]
        return out, seen

    def blend_without(self, view: int, blended: tuple[np.ndarray, np.ndarray],
                      robust_scale: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """The blend of every view but ``view``, from ``blended`` (the blend of all, with
        the same ``robust_scale``): only the vertices that view sees change, so only their
        pairs are blended again (each vertex's blend is its own)."""
        touched = np.zeros(self.n, dtype=bool)
        touched[self.vertex[self.view == view]] = True
        out, seen = self.blend(robust_scale, touched[self.vertex] & (self.view != view))
        out = np.where(touched[:, None], out, blended[0])
        return out, np.where(touched, seen, blended[1])


def blend(samples: list[ViewSample], robust_scale: float = 0.0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of the views' linear colours: ``(V, 3)`` linear RGB and ``(V,)`` bool
    seen by some view (zero colour where not). ``samples``: one or more views.

    ``robust_scale`` > 0: an M-estimate instead of the plain mean. Each view's weight at a
    vertex is multiplied by ``1 / (1 + (d / robust_scale)²)`` (Cauchy), d its colour's
    distance to the current estimate in linear RGB, over ``ROBUST_ITERATIONS`` rounds. A
    view that disagrees with the others is turned down: the surface seen there is not the
    mesh's (an occluder the mesh lacks, a misplaced limb, the background past a
    misregistered edge).
    """
    return Stacked.of(dict(enumerate(samples))).blend(robust_scale)


def pixel_rays(camera: Camera, pixels: np.ndarray, near: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """World ray origins and unit directions through ``(P, 2)`` crop pixels; a
    weak-perspective ray starts ``near`` metres in front of the camera plane's origin
    along the viewing axis (far enough to be outside the mesh)."""
    R = np.asarray(camera["R"], dtype=np.float64)
    uv1 = np.concatenate([pixels, np.ones((len(pixels), 1))], axis=1)
    if "K" in camera:
        centre = -R.T @ np.asarray(camera["t"], dtype=np.float64)
        d = np.linalg.solve(np.asarray(camera["K"], dtype=np.float64), uv1.T).T @ R
        return np.broadcast_to(centre, d.shape).copy(), d / np.linalg.norm(d, axis=1,
                                                                           keepdims=True)
    scale = float(np.asarray(camera["scale"]))
    xy = (pixels - np.asarray(camera["trans"], dtype=np.float64)) / scale
    local = np.concatenate([xy, np.full((len(xy), 1), -near)], axis=1)
    return local @ R, np.broadcast_to(R[2], local.shape).copy()


def draw(vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray, camera: Camera,
         intersector: RayMeshIntersector, pixels: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    """The mesh's vertex colours (sRGB [0, 1], interpolated in linear RGB, unlit: a colour
    taken from the photos already carries their light) seen through ``(P, 2)`` integer crop
    pixels: ``(P, 3)`` sRGB [0, 1] and ``(P,)`` bool hit."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    near = 10.0 * float(np.ptp(v, axis=0).max() + np.abs(v).max())
    origins, dirs = pixel_rays(camera, np.asarray(pixels, dtype=np.float64), near)
    hits = trace(intersector, v, f, origins, dirs)
    hit = hits.face >= 0
    out = np.zeros((len(pixels), 3))
    if hit.any():
        lin = interpolate(srgb_to_linear(colours), f, hits.face[hit], hits.bary[hit])
        out[hit] = linear_to_srgb(lin)
    return out, hit

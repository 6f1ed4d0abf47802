"""Ray-cast renderer for the synthetic data set (trimesh + embree, CPU).

One ray per pixel centre (see ``pipeline.camera`` for the conventions), cast
by ``pipeline.synthesize.raycast`` (embree nearest hit, float64 refinement,
deterministic face choice on edges): same inputs give bit-identical outputs.
Shading is Lambertian + ambient, computed in linear RGB
(vertex albedos are sRGB values in [0, 1]), with optional ray-cast shadows and
supersampled anti-aliasing of silhouette pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from trimesh.ray.ray_pyembree import RayMeshIntersector

from pipeline.camera import Camera, intrinsics_from_fov, look_at
from pipeline.synthesize.raycast import (
    Hits,
    check_mesh,
    empty_buffers,
    interpolate,
    make_intersector,
    primary_hits,
    trace,
)

__all__ = [
    "Light", "RenderResult", "compute_vertex_normals", "linear_to_srgb", "make_intersector",
    "orbit_views", "render", "render_mask_depth", "srgb_to_linear", "turntable",
]

# Rotated-grid sub-pixel offsets used to anti-alias silhouette pixels.
_AA_OFFSETS = np.array([[-0.375, -0.125], [0.125, -0.375], [0.375, 0.125], [-0.125, 0.375]])
_AA_DEPTH_JUMP = 0.03  # relative depth jump between neighbours treated as an edge


def _unit3(name: str, value: tuple[float, ...] | np.ndarray) -> tuple[float, float, float]:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be 3 finite numbers, got {value!r}")
    n = float(np.linalg.norm(v))
    if n == 0.0:
        raise ValueError(f"{name} must be non-zero")
    return (float(v[0] / n), float(v[1] / n), float(v[2] / n))


@dataclass(frozen=True)
class Light:
    """Directional light.

    Attributes:
        direction: (3,) world unit vector pointing FROM the scene TOWARDS the
            light (normalised on construction); e.g. (0, 0, 1) = from above.
        intensity: scale of the Lambertian term ``max(0, n . direction)``.
        ambient: constant (sky-tinted) term added to the Lambertian term.
        colour: (3,) linear RGB multiplier of the light.
    """

    direction: tuple[float, float, float] = (0.3, -0.5, 0.8)
    intensity: float = 0.9
    ambient: float = 0.35
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", _unit3("Light.direction", self.direction))
        col = tuple(float(c) for c in np.asarray(self.colour, dtype=np.float64).reshape(-1))
        if len(col) != 3 or not all(np.isfinite(c) and c >= 0 for c in col):
            raise ValueError(f"Light.colour must be 3 non-negative numbers, got {self.colour!r}")
        object.__setattr__(self, "colour", col)
        for name in ("intensity", "ambient"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"Light.{name} must be finite and >= 0, got {v}")
            object.__setattr__(self, name, v)


@dataclass(frozen=True, eq=False)
class RenderResult:
    """Output of ``render`` for an image of H x W pixels.

    Attributes:
        rgb: (H, W, 3) uint8 shaded image composited over the background.
        mask: (H, W) bool, True exactly where the pixel-centre ray hit the mesh.
        depth: (H, W) float32 camera z in metres, +inf where no hit.
        normal: (H, W, 3) float32 camera-frame unit normals facing the camera
            (n . view_ray <= 0), zero where no hit.
        face_index: (H, W) int32 index of the hit triangle, -1 where no hit.
    """

    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    face_index: np.ndarray


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """Elementwise sRGB [0, 1] -> linear [0, 1]."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Elementwise linear [0, inf) -> sRGB [0, 1] (clipped)."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055)


def compute_vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals.

    Args:
        vertices: (N, 3) float; faces: (M, 3) int (counter-clockwise = outward).
    Returns:
        (N, 3) float64 unit normals (zero for unreferenced vertices).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # |fn| = 2 * area
    idx = f.ravel()
    out = np.empty((len(v), 3))
    for k in range(3):
        out[:, k] = np.bincount(idx, weights=np.repeat(fn[:, k], 3), minlength=len(v))
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, n, out=np.zeros_like(out), where=n > 0)


def _shade(isect: RayMeshIntersector, v: np.ndarray, f: np.ndarray, vn: np.ndarray,
           albedo: np.ndarray, light: Light, origins: np.ndarray, dirs: np.ndarray,
           hits: Hits, shadows: bool) -> tuple[np.ndarray, np.ndarray]:
    """Shade the hit rays.

    Returns:
        colour: (K, 3) linear RGB of the K hit rays (in order of ``hits.face >= 0``).
        normal: (K, 3) world unit normals facing the ray origin.
    """
    hit = hits.face >= 0
    face, bary, d = hits.face[hit], hits.bary[hit], dirs[hit]
    tri = f[face]
    ng = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
    ng_len = np.linalg.norm(ng, axis=1, keepdims=True)
    ng = np.divide(ng, ng_len, out=np.zeros_like(ng), where=ng_len > 0)
    back = np.einsum("ij,ij->i", ng, d) > 0  # hit the back side of the triangle
    ng[back] *= -1.0
    n = interpolate(vn, f, face, bary)
    n[back] *= -1.0
    # remove any remaining component pointing away from the viewer
    away = np.maximum(np.einsum("ij,ij->i", n, d), 0.0)
    n -= away[:, None] * d
    n_len = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(n_len > 1e-12, n / np.maximum(n_len, 1e-300), ng)

    L = np.asarray(light.direction)
    ndotl = np.maximum(n @ L, 0.0)
    if shadows and light.intensity > 0:
        lit = (ng @ L > 0) & (ndotl > 0)
        if np.any(lit):
            scale = float(np.ptp(v, axis=0).max()) if len(v) else 1.0
            pts = origins[hit][lit] + d[lit] * hits.t[hit][lit, None] + ng[lit] * (1e-4 * scale)
            occluded = np.asarray(isect.intersects_first(pts, np.broadcast_to(L, pts.shape))) >= 0
            idx = np.flatnonzero(lit)[occluded]
            ndotl[idx] = 0.0
    ambient = light.ambient * (0.8 + 0.2 * n[:, 2])  # slightly brighter from the sky
    a = srgb_to_linear(np.clip(interpolate(albedo, f, face, bary), 0.0, 1.0))
    colour = a * (ambient + light.intensity * ndotl)[:, None] * np.asarray(light.colour)
    return colour, n


def _edge_pixels(mask: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose 4-neighbourhood changes hit status or jumps in depth."""
    edge = np.zeros_like(mask)
    with np.errstate(invalid="ignore"):
        for axis in (0, 1):
            a = [slice(None)] * 2
            b = [slice(None)] * 2
            a[axis], b[axis] = slice(1, None), slice(None, -1)
            ma, mb = mask[tuple(a)], mask[tuple(b)]
            da, db = depth[tuple(a)], depth[tuple(b)]
            jump = (ma != mb) | (ma & mb & (np.abs(da - db) > _AA_DEPTH_JUMP * np.minimum(da, db)))
            edge[tuple(a)] |= jump
            edge[tuple(b)] |= jump
    return edge


def render(
    vertices: np.ndarray,
    faces: np.ndarray,
    vertex_albedo: np.ndarray,
    camera: Camera,
    background: np.ndarray,
    light: Light,
    vertex_normals: np.ndarray | None = None,
    shadows: bool = True,
    antialias: bool = True,
    intersector: RayMeshIntersector | None = None,
) -> RenderResult:
    """Render a triangle mesh with per-vertex colours.

    Args:
        vertices: (N, 3) world coordinates.
        faces: (M, 3) int vertex indices (counter-clockwise seen from outside).
        vertex_albedo: (N, 3) sRGB albedo in [0, 1].
        camera: the camera; the image is camera.height x camera.width.
        background: (H, W, 3) uint8.
        light: directional light.
        vertex_normals: (N, 3) normals; None = area-weighted from the mesh.
        shadows: cast shadow rays towards the light.
        antialias: 5-sample supersampling of silhouette / depth-edge pixels.
            Then the colour (only) of pixels within one pixel of an edge is
            blended; every other non-hit pixel is exactly the background.
        intersector: ``make_intersector(vertices, faces)`` of these very arrays, built once
            for several views of one mesh (building it is most of a view's time); None
            builds one.
    Returns:
        RenderResult (mask, depth, normal, face_index come from the single
        pixel-centre ray and are not anti-aliased).
    """
    v, f = check_mesh(vertices, faces)
    H, W = camera.height, camera.width
    bg = np.asarray(background)
    if bg.shape != (H, W, 3) or bg.dtype != np.uint8:
        raise ValueError(f"background must be uint8 {(H, W, 3)}, got {bg.dtype} {bg.shape}")
    alb = np.asarray(vertex_albedo, dtype=np.float64)
    if alb.shape != (len(v), 3):
        raise ValueError(f"vertex_albedo must have shape {(len(v), 3)}, got {alb.shape}")
    vn = (compute_vertex_normals(v, f) if vertex_normals is None
          else np.asarray(vertex_normals, dtype=np.float64))
    if vn.shape != v.shape:
        raise ValueError(f"vertex_normals must have shape {v.shape}, got {vn.shape}")

    rgb = bg.copy()
    normal = np.zeros((H, W, 3), dtype=np.float32)
    if len(f) == 0:
        mask, depth, face_index = empty_buffers(H, W)
        return RenderResult(rgb, mask, depth, normal, face_index)
    isect = make_intersector(v, f) if intersector is None else intersector
    pix, origins, dirs, hits, (mask, depth, face_index) = primary_hits(isect, v, f, camera)
    hit = hits.face >= 0
    colour, n_world = _shade(isect, v, f, vn, alb, light, origins, dirs, hits, shadows)
    hit_pix = pix[hit]
    normal.reshape(-1, 3)[hit_pix] = n_world @ camera.R.T

    out = rgb.reshape(-1, 3)
    lin = np.zeros((H * W, 3))
    lin[hit_pix] = colour
    changed = mask.ravel().copy()
    if antialias:
        idx = np.flatnonzero(_edge_pixels(mask, depth))
        if len(idx):
            bg_lin = srgb_to_linear(out[idx] / 255.0)
            acc = np.where(mask.ravel()[idx, None], lin[idx], bg_lin)
            base_uv = np.stack([idx % W, idx // W], axis=1).astype(np.float64)
            for off in _AA_OFFSETS:
                o_s, d_s = camera.rays(base_uv + off)
                h_s = trace(isect, v, f, o_s, d_s)
                c_s = bg_lin.copy()
                if np.any(h_s.face >= 0):
                    c_s[h_s.face >= 0] = _shade(isect, v, f, vn, alb, light, o_s, d_s, h_s,
                                                shadows)[0]
                acc += c_s
            lin[idx] = acc / (1 + len(_AA_OFFSETS))
            changed[idx] = True
    out[changed] = np.round(linear_to_srgb(lin[changed]) * 255.0).astype(np.uint8)
    return RenderResult(rgb=out.reshape(H, W, 3), mask=mask, depth=depth, normal=normal,
                        face_index=face_index)


def render_mask_depth(vertices: np.ndarray, faces: np.ndarray,
                      camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fast path without shading.

    Returns:
        mask (H, W) bool, depth (H, W) float32 (camera z, inf = miss),
        face_index (H, W) int32 (-1 = miss); identical to ``render``'s.
    """
    v, f = check_mesh(vertices, faces)
    if len(f) == 0:
        return empty_buffers(camera.height, camera.width)
    return primary_hits(make_intersector(v, f), v, f, camera)[4]


def turntable(
    vertices: np.ndarray,
    faces: np.ndarray,
    n: int = 8,
    size: int = 512,
    elevation_deg: float = 10.0,
    start_deg: float = -90.0,
    fov_deg: float = 20.0,
    albedo: tuple[float, float, float] = (0.72, 0.72, 0.72),
    background: tuple[int, int, int] = (255, 255, 255),
    up: tuple[float, float, float] = (0.0, 0.0, 1.0),
) -> list[np.ndarray]:
    """Grey-shaded views of a mesh from ``n`` azimuths around its bounding box
    centre (narrow-FOV perspective, nearly orthographic), for contact sheets.

    View i is at azimuth ``start_deg + 360 i / n`` about the ``up`` = +Z axis
    (0 deg = +X; the default -90 deg looks from -Y).  The mesh's bounding
    sphere fills the square image; a head-light from the camera, raised, lights it.

    Returns:
        list of n (size, size, 3) uint8 images.
    """
    v, f = check_mesh(vertices, faces)
    if len(v) == 0:
        raise ValueError("turntable: empty mesh")
    if tuple(up) != (0.0, 0.0, 1.0):
        raise ValueError("turntable: only up = +Z is supported")
    lo, hi = v.min(axis=0), v.max(axis=0)
    centre = 0.5 * (lo + hi)
    radius = max(0.5 * float(np.linalg.norm(hi - lo)), 1e-6)
    alb = np.broadcast_to(np.asarray(albedo, dtype=np.float64), v.shape)
    azimuths = [start_deg + 360.0 * i / n for i in range(n)]
    return orbit_views(v, f, alb, azimuths, centre, radius, size=size,
                       elevation_deg=elevation_deg, fov_deg=fov_deg, background=background)


def orbit_views(
    vertices: np.ndarray,
    faces: np.ndarray,
    vertex_albedo: np.ndarray,
    azimuths_deg: Sequence[float],
    centre: np.ndarray,
    radius: float,
    size: int = 512,
    elevation_deg: float = 10.0,
    fov_deg: float = 20.0,
    background: tuple[int, int, int] = (255, 255, 255),
) -> list[np.ndarray]:
    """Views of a mesh with per-vertex colours from cameras on a circle about +Z.

    Every camera looks at ``centre`` from the distance at which a sphere of ``radius`` fills
    the image, so meshes drawn with the same ``centre`` and ``radius`` line up pixel for
    pixel. Azimuth 0 deg = +X; the canonical body faces -Y (-90 deg is its front). A
    head-light from each camera, raised, lights it; no shadows.

    Args:
        vertex_albedo: ``(V, 3)`` sRGB in [0, 1]. centre: ``(3,)`` metres.

    Returns:
        one ``(size, size, 3)`` uint8 image per azimuth (the background alone when the mesh
        has no faces).
    """
    v, f = check_mesh(vertices, faces)
    dist = 1.05 * radius / np.sin(np.deg2rad(fov_deg) / 2.0)
    K = intrinsics_from_fov(fov_deg, size, size)
    alb = np.asarray(vertex_albedo, dtype=np.float64)
    vn = compute_vertex_normals(v, f) if len(f) else np.zeros_like(v)
    bg = np.broadcast_to(np.asarray(background, dtype=np.uint8), (size, size, 3)).copy()
    images = []
    isect = make_intersector(v, f) if len(f) else None
    el = np.deg2rad(elevation_deg)
    for azimuth in azimuths_deg:
        az = np.deg2rad(azimuth)
        offset = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        cam = look_at(np.asarray(centre) + dist * offset, np.asarray(centre), K=K, width=size,
                      height=size)
        light = Light(direction=offset + np.array([0.0, 0.0, 0.8]), intensity=0.85, ambient=0.3)
        images.append(render(v, f, alb, cam, bg, light, vertex_normals=vn, shadows=False,
                             intersector=isect).rgb)
    return images

"""The project's one camera type: an OpenCV pinhole camera.

Project-wide conventions
------------------------
* World frame: metres, Z up.  The person stands with the feet near z = 0,
  centred around x = y = 0, roughly 1.5-1.9 m tall.
* Camera frame (OpenCV): x right, y down, z forward (the viewing direction).
  A world point ``X`` maps to ``x_cam = R @ X + t``.  The camera centre in the
  world is ``C = -R.T @ t``.
* Pixels: ``u = fx * x/z + skew * y/z + cx``, ``v = fy * y/z + cy`` (i.e.
  ``[u, v, 1] ~ K @ x_cam``).  Pixel CENTRES sit at integer coordinates;
  ``(0, 0)`` is the centre of the top-left pixel, so pixel ``(i, j)`` covers
  ``[j - 0.5, j + 0.5) x [i - 0.5, i + 0.5)`` in (u, v).  The image centre is
  ``((W - 1) / 2, (H - 1) / 2)``.
* Images are numpy arrays of shape (H, W[, C]), row-major (row = v,
  column = u).  Geometry is float64.
* Randomness only through a ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RING_JITTER_KEYS", "Camera", "intrinsics_from_fov", "look_at", "ring_cameras"]

_ORTHO_TOL = 1e-6

#: Keys accepted by ``ring_cameras(jitter=...)``; all default to 0.
RING_JITTER_KEYS = (
    "distance_frac",  # distance *= 1 + U(-a, a)
    "elevation_deg",  # elevation += U(-a, a) degrees
    "azimuth_deg",  # azimuth += U(-a, a) degrees
    "target_m",  # look-at target += U(-a, a) metres per axis
    "focal_frac",  # fx, fy *= 1 + U(-a, a) (same factor for both)
    "roll_deg",  # rotation about the optical axis, U(-a, a) degrees
)


def _as_matrix(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.array(value, dtype=np.float64, copy=True)
    if arr.shape != shape:
        raise ValueError(f"Camera.{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Camera.{name} contains non-finite values: {arr.tolist()}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Camera:
    """OpenCV pinhole camera (see module docstring for conventions).

    Attributes:
        K: (3, 3) intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``.
        R: (3, 3) world-to-camera rotation (orthonormal, det +1).
        t: (3,) world-to-camera translation.
        width, height: image size in pixels.

    Arrays are stored as read-only float64 copies.  Equality is exact
    element-wise equality of all fields.
    """

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        K = _as_matrix("K", self.K, (3, 3))
        R = _as_matrix("R", self.R, (3, 3))
        t = _as_matrix("t", self.t, (3,))
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"Camera focal lengths must be positive: fx={K[0, 0]}, fy={K[1, 1]}")
        if K[1, 0] != 0 or K[2, 0] != 0 or K[2, 1] != 0 or K[2, 2] != 1:
            raise ValueError(f"Camera.K must be upper triangular with K[2,2] = 1, got {K.tolist()}")
        ortho_err = float(np.abs(R @ R.T - np.eye(3)).max())
        if ortho_err > _ORTHO_TOL:
            raise ValueError(f"Camera.R is not orthonormal (max |R R^T - I| = {ortho_err:.3g})")
        det = float(np.linalg.det(R))
        if det < 0:
            raise ValueError(f"Camera.R must be a rotation (det +1), got det = {det:.6f}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"Camera.{name} must be a positive int, got {v!r}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return (
            self.width == other.width
            and self.height == other.height
            and bool(np.array_equal(self.K, other.K))
            and bool(np.array_equal(self.R, other.R))
            and bool(np.array_equal(self.t, other.t))
        )

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ basics
    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, ``-R.T @ t``."""
        return -self.R.T @ self.t

    @property
    def forward(self) -> np.ndarray:
        """(3,) unit viewing direction (camera +z) in world coordinates."""
        return self.R[2].copy()

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 3) camera-frame points."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return p @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points.

        Args:
            points: (N, 3) world coordinates.
        Returns:
            uv: (N, 2) pixel coordinates (meaningless where depth <= 0).
            depth: (N,) camera z in metres.
        """
        pc = self.world_to_camera(points)
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xn = pc[:, 0] / z
            yn = pc[:, 1] / z
        K = self.K
        uv = np.stack([K[0, 0] * xn + K[0, 1] * yn + K[0, 2], K[1, 1] * yn + K[1, 2]], axis=1)
        return uv, z.copy()

    def pixel_directions_cam(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates -> (N, 3) camera-frame rays with z = 1."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        K = self.K
        yn = (uv[:, 1] - K[1, 2]) / K[1, 1]
        xn = (uv[:, 0] - K[0, 2] - K[0, 1] * yn) / K[0, 0]
        return np.stack([xn, yn, np.ones_like(xn)], axis=1)

    def pixel_grid(self) -> np.ndarray:
        """(H*W, 2) (u, v) of all pixel centres, row-major (v outer, u inner)."""
        v, u = np.meshgrid(
            np.arange(self.height, dtype=np.float64),
            np.arange(self.width, dtype=np.float64),
            indexing="ij",
        )
        return np.stack([u.ravel(), v.ravel()], axis=1)

    def rays(self, uv: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """World-space rays through pixel positions.

        Args:
            uv: (N, 2) pixel coordinates; None = all pixel centres, row-major,
                N = H * W (reshape results to (H, W, 3)).
        Returns:
            origins: (N, 3) (all equal to ``center``).
            directions: (N, 3) unit vectors in world coordinates.
        """
        if uv is None:
            uv = self.pixel_grid()
        d_cam = self.pixel_directions_cam(uv)
        d_cam /= np.linalg.norm(d_cam, axis=1, keepdims=True)
        directions = d_cam @ self.R  # == (R.T @ d.T).T
        origins = np.broadcast_to(self.center, directions.shape).copy()
        return origins, directions

    def backproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """(N, 2) pixels with (N,) camera z depths -> (N, 3) world points."""
        pc = self.pixel_directions_cam(uv) * np.asarray(depth, dtype=np.float64).reshape(-1, 1)
        return (pc - self.t) @ self.R

    # ------------------------------------------------------------ derivations
    def with_intrinsics(self, K: np.ndarray, width: int, height: int) -> Camera:
        """Same pose, new intrinsics and image size."""
        return Camera(K=K, R=self.R, t=self.t, width=width, height=height)

    def with_crop(self, x0: float, y0: float, size: float, out_size: int) -> Camera:
        """Camera of the square crop of pixels [x0, x0+size) x [y0, y0+size)
        resized to out_size x out_size.

        Pixel (x0, y0) is the top-left pixel of the crop; the crop's outer
        edge ``x0 - 0.5`` maps to the new edge ``-0.5`` and the scale is
        ``s = out_size / size`` (area-aligned resize, as PIL / cv2.INTER_AREA
        do), so ``u' = s * (u - x0 + 0.5) - 0.5``.  The crop may extend beyond
        the image (x0, y0 negative or x0 + size > width): those pixels are
        padding and the mapping stays the same.
        """
        if not (size > 0) or not np.isfinite(size):
            raise ValueError(f"with_crop: size must be positive, got {size}")
        if int(out_size) <= 0:
            raise ValueError(f"with_crop: out_size must be positive, got {out_size}")
        s = float(out_size) / float(size)
        A = np.array(
            [
                [s, 0.0, s * (0.5 - float(x0)) - 0.5],
                [0.0, s, s * (0.5 - float(y0)) - 0.5],
                [0.0, 0.0, 1.0],
            ]
        )
        return self.with_intrinsics(A @ self.K, int(out_size), int(out_size))

    def scaled(self, factor: float) -> Camera:
        """Camera of the whole image resized by ``factor`` (area-aligned);
        the new size is round(W * factor) x round(H * factor)."""
        w = round(self.width * factor)
        h = round(self.height * factor)
        sx, sy = w / self.width, h / self.height
        A = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        return self.with_intrinsics(A @ self.K, w, h)

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (nested lists of Python floats / ints)."""
        return {
            "K": [[float(x) for x in row] for row in self.K],
            "R": [[float(x) for x in row] for row in self.R],
            "t": [float(x) for x in self.t],
            "width": int(self.width),
            "height": int(self.height),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Camera:
        """Inverse of ``to_dict`` (exact round trip)."""
        missing = {"K", "R", "t", "width", "height"} - set(d)
        if missing:
            raise ValueError(f"Camera.from_dict: missing keys {sorted(missing)}")
        return cls(K=np.array(d["K"]), R=np.array(d["R"]), t=np.array(d["t"]),
                   width=int(d["width"]), height=int(d["height"]))


def intrinsics_from_fov(fov_deg: float, width: int, height: int) -> np.ndarray:
    """(3, 3) K with the given HORIZONTAL field of view, square pixels and the
    principal point at the image centre ((W-1)/2, (H-1)/2)."""
    if not (0.0 < fov_deg < 180.0):
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    f = 0.5 * width / np.tan(np.deg2rad(fov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _rot_z(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def look_at(
    eye: np.ndarray,
    target: np.ndarray,
    up: np.ndarray = (0.0, 0.0, 1.0),
    *,
    K: np.ndarray,
    width: int,
    height: int,
    roll_deg: float = 0.0,
) -> Camera:
    """Camera at ``eye`` (3,) looking at ``target`` (3,), with world ``up``
    appearing upwards in the image (then rotated by ``roll_deg`` about the
    optical axis).  ``target`` projects exactly to the principal point."""
    eye = np.asarray(eye, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    z = target - eye
    nz = np.linalg.norm(z)
    if not nz > 0:
        raise ValueError("look_at: eye and target coincide")
    z = z / nz
    x = np.cross(z, up)
    nx = np.linalg.norm(x)
    if nx < 1e-9 * max(1.0, float(np.linalg.norm(up))):
        raise ValueError("look_at: viewing direction is parallel to up")
    x = x / nx
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    if roll_deg != 0.0:
        R = _rot_z(np.deg2rad(roll_deg)) @ R
    t = -R @ eye
    return Camera(K=K, R=R, t=t, width=width, height=height)


def ring_cameras(
    rng: np.random.Generator,
    n_views: int = 8,
    distance: float = 3.0,
    elevation_deg: float = 5.0,
    focal_px: float = 1000.0,
    width: int = 1280,
    height: int = 720,
    target: np.ndarray = (0.0, 0.0, 0.9),
    start_deg: float = 0.0,
    jitter: Mapping[str, float] | None = None,
) -> list[Camera]:
    """``n_views`` cameras evenly spaced on a horizontal circle around target.

    View i sits at azimuth ``start_deg + 360 * i / n_views`` (degrees,
    counter-clockwise seen from above, 0 = +X axis), i.e. at
    ``target + distance * (cos(el) cos(az), cos(el) sin(az), sin(el))``, and
    looks at ``target`` (the jittered look-at point moves the person off the
    image centre; the camera position stays on the jittered ring).
    ``jitter`` (keys in ``RING_JITTER_KEYS``, uniform half-ranges) perturbs each
    view independently; with no jitter the ring is exact and ``rng`` is unused.
    """
    jitter = dict(jitter or {})
    unknown = set(jitter) - set(RING_JITTER_KEYS)
    if unknown:
        raise ValueError(f"ring_cameras: unknown jitter keys {sorted(unknown)}; "
                         f"allowed {RING_JITTER_KEYS}")
    if n_views <= 0:
        raise ValueError(f"ring_cameras: n_views must be positive, got {n_views}")
    amp = {k: float(jitter.get(k, 0.0)) for k in RING_JITTER_KEYS}
    target = np.asarray(target, dtype=np.float64)

    def u(key: str, size: int | None = None) -> Any:
        a = amp[key]
        if a == 0.0:
            return 0.0 if size is None else np.zeros(size)
        return rng.uniform(-a, a, size=size)

    cams = []
    for i in range(n_views):
        az = np.deg2rad(start_deg + 360.0 * i / n_views + u("azimuth_deg"))
        el = np.deg2rad(elevation_deg + u("elevation_deg"))
        dist = distance * (1.0 + u("distance_frac"))
        tgt = target + u("target_m", 3)
        f = focal_px * (1.0 + u("focal_frac"))
        roll = u("roll_deg")
        offset = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        eye = target + dist * offset
        K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
        cams.append(look_at(eye, tgt, K=K, width=width, height=height, roll_deg=roll))
    return cams

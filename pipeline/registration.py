"""The body model registered to a canonical scan in 3D, and the scan unposed by it.

A data set's scan, once its stated axes and unit are undone (:mod:`pipeline.frames`), lies
in metres with Z up and the person facing −Y, but in the data set's pose and at its origin.
:func:`register_body` finds the body that explains it::

    points ≈ R · (body(shape, pose₀ + δ) + lift) + t

``body`` is the body model posed by its own skinning (``BodyModel.forward``, no global
motion), ``lift`` the canonical pose's (its soles at z = 0), ``pose₀`` the stated pose.
Free: the rotation ``R`` (from four headings about the up axis), the translation ``t``, the
shape and a pose change ``δ`` held near zero. The scale is not free: a body's height and a
global scale are nearly the same change, so it is the stated unit's, checked afterwards by
the registered body's height. The loss is robust both ways (Geman-McClure on scan → body
point-to-plane and body → scan point-to-point distances, correspondences found afresh
each step), with its scale annealed from coarse to fine so that holes, hair and loose
clothes stop pulling once the body is in place.

:func:`unpose` then takes scan points into the pipeline's canonical frame (each point by
the inverse skinning transform of its nearest registered body vertex), and :func:`repose`
takes canonical points back into the pose (the forward transform of their nearest canonical
vertex): the round trip is exact away from where limbs meet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import igl
import numpy as np
import torch
from scipy.spatial import cKDTree

from pipeline.bodymodel import BodyModel, axis_angle_to_matrix
from pipeline.synthesize.poses import CANONICAL_POSE

COARSE_SIGMA_M = 0.15
"""The robust loss's scale while the rigid motion alone is fitted, and where it anneals from."""
SHAPE_LR = 0.05
"""Adam's step on the shape's logits (the rigid motion's and the pose's: 0.01)."""
HEADING_MARGIN = 0.8
"""Another heading about the up axis replaces the stated one only when its rigid fit's loss
is below this share of the stated one's (then the rotation check names the frame)."""
POSE_WEIGHT = 0.05
"""Weight of the squared pose change (radians²) from the stated pose."""


@dataclass(frozen=True)
class Registration:
    """A body registered to scan points (pipeline axes, metres).

    rotation ``(3, 3)`` and translation ``(3,)``: ``points ≈ rotation @ y + translation``
    for ``y`` on the posed, lifted body. shape ``(S,)``; pose ``(J, 3)`` radians (the
    stated pose plus the change). canonical ``(V, 3)``: the registered body in the
    pipeline's canonical pose (lifted). posed ``(V, 3)``: in the fitted pose (lifted, before
    the rigid motion). transforms ``(V, 4, 4)``: each vertex's blended skinning transform,
    canonical → posed (both lifted). residual_mm: median and 95th percentile of the scan
    points' distance to the registered body (millimetres).
    """

    rotation: np.ndarray
    translation: np.ndarray
    shape: np.ndarray
    pose: np.ndarray
    canonical: np.ndarray
    posed: np.ndarray
    transforms: np.ndarray
    residual_mm: tuple[float, float]

    def to_posed(self, points: np.ndarray) -> np.ndarray:
        """Scan points ``(N, 3)`` → the posed, lifted body's frame (the rigid motion undone)."""
        return (np.asarray(points) - self.translation) @ self.rotation

    def from_posed(self, points: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_posed`."""
        return np.asarray(points) @ self.rotation.T + self.translation


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``(V, 3)`` unit normals, the area-weighted mean of the faces' (differentiable)."""
    tri = vertices[faces]
    cross = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
    normals = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1),
                                                    cross.repeat_interleave(3, dim=0))
    return normals / normals.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _robust(sq: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure of squared distances at scale ``sigma``: ~d² near, ~1 far."""
    return (sq / (sq + sigma ** 2)).mean()


class _Problem:
    """The scan's points, the body model and the loss of one registration."""

    def __init__(self, model: BodyModel, points: np.ndarray, pose: torch.Tensor,
                 n_points: int, rng: np.random.Generator) -> None:
        pick = rng.choice(len(points), size=min(4 * n_points, len(points)), replace=False)
        self.target = torch.as_tensor(points[pick], dtype=torch.float32)
        self.queries = self.target[:n_points]
        self.tree = cKDTree(self.target.numpy())
        n_vertices = len(model.skinning_weights)
        self.subset = torch.as_tensor(rng.choice(n_vertices, size=min(n_points, n_vertices),
                                                 replace=False))
        self.faces = torch.as_tensor(model.faces, dtype=torch.int64)
        self.model = model
        self.pose = pose
        self.canonical_pose = model.pose_from_degrees(CANONICAL_POSE.as_dict())
        self.zeros = torch.zeros(1, 3)

    def body(self, shape: torch.Tensor, delta: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The body posed by ``pose + delta`` and lifted like its canonical pose (soles at
        z = 0), its bone transforms ``(B, 4, 4)`` (lifted canonical → unlifted posed) and
        the lift ``(3,)``."""
        poses = torch.stack([self.canonical_pose, self.pose + delta])
        out = self.model.forward(shape, poses, self.zeros.expand(2, 3), self.zeros.expand(2, 3))
        lift = torch.stack([torch.zeros(()), torch.zeros(()), -out.vertices[0, :, 2].min()])
        return out.vertices[1] + lift, out.bone_transforms[1], lift

    def loss(self, rotvec: torch.Tensor, t: torch.Tensor, body: torch.Tensor,
             sigma: float) -> torch.Tensor:
        """Robust point-to-plane (scan → body) plus point-to-point (body → scan)."""
        placed = body @ axis_angle_to_matrix(rotvec).T + t
        near = torch.as_tensor(cKDTree(placed.detach().numpy()).query(self.queries.numpy())[1])
        normals = vertex_normals(placed, self.faces)[near]
        to_body = (((self.queries - placed[near]) * normals).sum(dim=1)) ** 2
        mine = placed[self.subset]
        match = torch.as_tensor(self.tree.query(mine.detach().numpy())[1])
        to_scan = ((mine - self.target[match]) ** 2).sum(dim=1)
        return _robust(to_body, sigma) + _robust(to_scan, sigma)


def register_body(model: BodyModel, points: np.ndarray, pose: torch.Tensor, *,
                  pose_freedom_deg: float = 10.0, n_points: int = 3000,
                  iterations: tuple[int, int] = (80, 300), sigma_m: float = 0.02,
                  seed: int = 0) -> Registration:
    """Fit the body model to ``points (N, 3)`` of a canonical scan (pipeline axes, metres).

    Args:
        model: the body model. pose: ``(J, 3)`` the stated pose (radians).
        pose_freedom_deg: how far each angle may move from the stated pose (a soft bound).
        n_points: scan points and body vertices each distance term uses.
        iterations: Adam steps of the rigid motion alone (per heading), then of everything.
        sigma_m: the robust loss's final scale (metres).
        seed: the subsampling's seed.
    """
    problem = _Problem(model, points, pose, n_points, np.random.default_rng(seed))
    shape = model.initial_shape().clone()
    delta0 = torch.zeros_like(pose)
    with torch.no_grad():
        start = problem.body(shape, delta0)[0]
    up = torch.tensor([0.0, 0.0, 1.0])
    fits = []
    for heading in (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi):
        rotvec = (up * heading).clone().requires_grad_(True)
        with torch.no_grad():
            turned = start @ axis_angle_to_matrix(rotvec).T
        t = (problem.target.mean(0) - turned.mean(0)).clone().requires_grad_(True)
        optimiser = torch.optim.Adam([rotvec, t], lr=0.02)
        for _ in range(iterations[0]):
            optimiser.zero_grad()
            value = problem.loss(rotvec, t, start, COARSE_SIGMA_M)
            value.backward()
            optimiser.step()
        fits.append((float(value.detach()), rotvec.detach().clone(), t.detach().clone()))
    # The stated frame's heading is kept unless another fits clearly better: a body's front
    # and back fit about as well, so a near tie is no evidence against the stated forward.
    best = min(fits, key=lambda fit: fit[0])
    if best[0] > HEADING_MARGIN * fits[0][0]:
        best = fits[0]
    rotvec = best[1].requires_grad_(True)
    t = best[2].requires_grad_(True)
    shape = shape.requires_grad_(True)
    delta = torch.zeros_like(pose, requires_grad=True)
    optimiser = torch.optim.Adam([{"params": [rotvec, t, delta], "lr": 0.01},
                                  {"params": [shape], "lr": SHAPE_LR}])
    # Adam's steps are about its rate whatever the gradient: the rate decays (cosine, to 2 %)
    # so that the last steps settle instead of jittering by a centimetre.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda k: 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * k / iterations[1])))
    bound = math.radians(pose_freedom_deg)
    steps = iterations[1]
    for k in range(steps):
        sigma = COARSE_SIGMA_M * (sigma_m / COARSE_SIGMA_M) ** (k / max(1, steps - 1))
        optimiser.zero_grad()
        # The pose moves in the second half only: a global tilt is the rotation's to
        # explain, not the spine's and the legs'.
        moved = delta if k >= steps // 2 else delta.detach()
        body = problem.body(shape, moved)[0]
        value = (problem.loss(rotvec, t, body, sigma) + 1e-3 * model.shape_prior(shape)
                 + POSE_WEIGHT * (moved ** 2).sum()
                 + (torch.relu(moved.abs() - bound) ** 2).sum())
        value.backward()
        optimiser.step()
        schedule.step()
    with torch.no_grad():
        posed, bones, lift = problem.body(shape, delta)
        canonical = model.canonical(shape).vertices
        weights = torch.as_tensor(model.skinning_weights, dtype=torch.float32)
        transforms = torch.einsum("vb,bij->vij", weights, bones).double()
        transforms[:, :3, 3] += lift.double()  # to the lifted posed body
        rotation = axis_angle_to_matrix(rotvec).double().numpy()
        translation = t.double().numpy()
    registration = Registration(rotation=rotation, translation=translation,
                                shape=shape.detach().numpy().astype(np.float64),
                                pose=(pose + delta).detach().numpy().astype(np.float64),
                                canonical=canonical.double().numpy(),
                                posed=posed.double().numpy(), transforms=transforms.numpy(),
                                residual_mm=(0.0, 0.0))
    distance = surface_distance(points, registration.from_posed(registration.posed), model.faces)
    return Registration(**{**registration.__dict__,
                           "residual_mm": (float(np.median(distance) * 1000.0),
                                           float(np.percentile(distance, 95) * 1000.0))})


def surface_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(N,)`` each point's distance to the nearest point of the triangle mesh."""
    squared = igl.point_mesh_squared_distance(
        np.ascontiguousarray(points, dtype=np.float64),
        np.ascontiguousarray(vertices, dtype=np.float64),
        np.ascontiguousarray(faces, dtype=np.int64))[0]
    return np.sqrt(squared)


def unpose(points: np.ndarray, posed: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Points ``(N, 3)`` near a posed body ``posed (V, 3)`` → its canonical pose: each by the
    inverse of its nearest vertex's skinning transform ``transforms (V, 4, 4)``."""
    inverse = np.linalg.inv(transforms[cKDTree(posed).query(points)[1]])
    return np.einsum("nij,nj->ni", inverse[:, :3, :3], points) + inverse[:, :3, 3]


def repose(points: np.ndarray, canonical: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Points ``(N, 3)`` near a canonical body ``canonical (V, 3)`` → the pose: each by its
    nearest canonical vertex's skinning transform (the inverse of :func:`unpose`)."""
    forward = transforms[cKDTree(canonical).query(points)[1]]
    return np.einsum("nij,nj->ni", forward[:, :3, :3], points) + forward[:, :3, 3]


@dataclass(frozen=True)
class PosedBody:
    """A body of known shape in a stated pose, with no registration (a test subject's
    fitted body): canonical ``(V, 3)`` and posed ``(V, 3)`` vertices (both lifted like the
    canonical pose), transforms ``(V, 4, 4)`` canonical → posed, and the pelvis ``(3,)``
    (the root bone's head) of the posed body."""

    canonical: np.ndarray
    posed: np.ndarray
    transforms: np.ndarray
    pelvis: np.ndarray


def pose_body(model: BodyModel, shape: torch.Tensor, pose: torch.Tensor) -> PosedBody:
    """The body of ``shape (S,)`` moved from the canonical pose to ``pose (J, 3)`` by the
    body model's skinning (no global motion)."""
    canonical_pose = model.pose_from_degrees(CANONICAL_POSE.as_dict())
    zeros = torch.zeros(2, 3)
    with torch.no_grad():
        out = model.forward(shape, torch.stack([canonical_pose, pose]), zeros, zeros)
        lift = -out.vertices[0, :, 2].min().double()
        bones = out.bone_transforms[1].double()
        weights = torch.as_tensor(model.skinning_weights, dtype=torch.float64)
        transforms = torch.einsum("vb,bij->vij", weights, bones)
        transforms[:, 2, 3] += lift
        root = model.bone_names.index("root")
        bind = torch.as_tensor(model.skeleton(shape).bind[root], dtype=torch.float64)
        pelvis = (bones[root] @ bind)[:3, 3] + torch.stack(
            [torch.zeros((), dtype=torch.float64)] * 2 + [lift])
        canonical = model.canonical(shape).vertices.double()
        posed = out.vertices[1].double() + torch.stack(
            [torch.zeros((), dtype=torch.float64)] * 2 + [lift])
    return PosedBody(canonical=canonical.numpy(), posed=posed.numpy(),
                     transforms=transforms.numpy(), pelvis=pelvis.numpy())

"""Scans as real data sets ship them: OBJ or PLY, textured or not, closed or with holes.

A scan from a capture stage has holes (the soles, the crown, the armpits) and comes as a
textured OBJ whose vertices are split along the texture's seams. The SDF targets, the volume
IoU and every other inside/outside test of the project use the generalised winding number
(``pipeline.sdf``), which stays a good sign for a surface with holes: a point well inside a
body still sees it wrap around it almost fully (w near 1), a point outside sees it wrap
nowhere (w near 0). Only close to a hole, or on a surface too broken to enclose anything,
does w sit near 0.5 and the sign become a guess.

:func:`read_scan` reads a scan, welds its seams, and lets a closed one through unchanged (the
exact sign). An open one is probed: points a few millimetres inside and outside the surface
along its normals, whose winding numbers should be near 1 and 0. The share of the surface
where they are not (the sign unsure) is measured, and a scan whose share passes the stated
limit is refused, naming it: a scan too broken to sign is never trained on or scored against.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import igl
import numpy as np
import trimesh

from pipeline.errors import PipelineError
from pipeline.sdf import check_watertight, surface_samples

MESH_SUFFIXES = (".ply", ".obj")
PROBE_SAMPLES = 20_000
"""Surface points probed per scan (each one inside and one outside)."""
UNSURE_BAND = 0.25
"""A winding number within this of 0.5 is a guess, not a sign."""


@dataclass(frozen=True)
class ScanPolicy:
    """``data.scans``: whether scans may have holes, and how unsure a sign may be.

    open: accept a scan that is not closed when the winding number signs it.
    max_unsure: the largest share of its surface where the sign is unsure (see ScanSign).
    probe_mm: the probes' distance from the surface, millimetres.
    """

    open: bool = True
    max_unsure: float = 0.05
    probe_mm: float = 3.0

    @classmethod
    def from_json(cls, text: str | None) -> ScanPolicy:
        """The policy of a ``data.scans`` mapping given as JSON (None: the defaults)."""
        return cls() if text is None else cls(**json.loads(text))

    def read(self, path: str | Path, hint: str = "") -> tuple[np.ndarray, np.ndarray, ScanSign]:
        """:func:`read_scan` under this policy."""
        return read_scan(path, open_scans=self.open, max_unsure=self.max_unsure,
                         probe_m=self.probe_mm / 1000.0, hint=hint)


@dataclass(frozen=True)
class ScanSign:
    """How well a scan's winding number signs space (``read_scan``'s report).

    closed: the scan is a closed, outward surface (the sign is exact).
    boundary_edges: edges used by one face only (the holes' rims).
    unsure_share: share of the probed surface where the inner probe's winding number is
        not near 1 or the outer one's not near 0 (within ``UNSURE_BAND``).
    flipped_share: share where they are near 0 and −1: the surface winds the wrong way
        round its inside (inside out).
    probe_m: the probes' distance from the surface (metres).
    """

    closed: bool
    boundary_edges: int
    unsure_share: float
    flipped_share: float
    probe_m: float

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return asdict(self)


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(V, 3)`` float64 vertices and ``(F, 3)`` int64 faces of a PLY or OBJ file.

    Texture coordinates, normals and materials are ignored; vertices the texture's seams split
    are welded (merged by position), so the rims of real holes are the only boundary left.

    Raises:
        PipelineError: naming the file when it is missing, of another format, unreadable or
            without triangles.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"scan {path} is missing")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise PipelineError(f"scan {path}: unknown format {path.suffix!r}; give "
                            f"{' or '.join(MESH_SUFFIXES)}")
    try:
        mesh = trimesh.load(path, file_type=path.suffix.lower()[1:], process=False,
                            force="mesh", skip_materials=True)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise PipelineError(f"cannot read scan {path}: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise PipelineError(f"scan {path} holds no triangle mesh")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    return weld(vertices, faces)


def weld(vertices: np.ndarray, faces: np.ndarray, decimals: int = 7
         ) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices at the same position (to ``decimals`` of a metre) and drop faces that
    collapse; unused vertices are removed. Order of first appearance is kept."""
    key = np.round(vertices, decimals)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    merged = rank[inverse.ravel()][faces]
    keep = ((merged[:, 0] != merged[:, 1]) & (merged[:, 1] != merged[:, 2])
            & (merged[:, 2] != merged[:, 0]))
    merged = merged[keep]
    used = np.unique(merged)
    remap = np.full(len(order), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[first[order]][used], remap[merged]


def boundary_edge_count(faces: np.ndarray, n_vertices: int) -> int:
    """Undirected edges that belong to exactly one face."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]),
                    axis=1)
    _, counts = np.unique(edges[:, 0] * n_vertices + edges[:, 1], return_counts=True)
    return int(np.sum(counts == 1))


def probe_sign(vertices: np.ndarray, faces: np.ndarray, *, probe_m: float = 0.003,
               n: int = PROBE_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """``(unsure_share, flipped_share)`` of the surface (see :class:`ScanSign`): ``n``
    area-uniform points moved ``probe_m`` along their face's normal, in and out."""
    points, normals = surface_samples(vertices, faces, n, np.random.default_rng(seed))
    probes = np.concatenate([points - probe_m * normals, points + probe_m * normals])
    w = igl.fast_winding_number(np.ascontiguousarray(vertices), np.ascontiguousarray(faces),
                                probes)
    w_in, w_out = w[:n], w[n:]
    # Across a surface w steps by 1: a sure sign has w near 1 inside and near 0 outside.
    unsure = (w_in < 0.5 + UNSURE_BAND) | (np.abs(w_out) > 0.5 - UNSURE_BAND)
    flipped = (w_in < 0.5 - UNSURE_BAND) & (w_out < -0.5 - UNSURE_BAND)  # near 0 and −1
    return float(unsure.mean()), float(flipped.mean())


def scan_sign(vertices: np.ndarray, faces: np.ndarray, *, probe_m: float = 0.003,
              seed: int = 0) -> ScanSign:
    """Measure how well the winding number signs space around the mesh (no error raised)."""
    boundary = boundary_edge_count(faces, len(vertices))
    try:
        check_watertight(vertices, faces, "scan")
        closed = True
    except PipelineError:
        closed = False
    unsure, flipped = probe_sign(vertices, faces, probe_m=probe_m, seed=seed)
    return ScanSign(closed=closed, boundary_edges=boundary, unsure_share=unsure,
                    flipped_share=flipped, probe_m=probe_m)


def read_scan(path: str | Path, *, open_scans: bool = True, max_unsure: float = 0.05,
              probe_m: float = 0.003, hint: str = ""
              ) -> tuple[np.ndarray, np.ndarray, ScanSign]:
    """A scan to sign: ``vertices (V, 3)``, ``faces (F, 3)`` and its :class:`ScanSign`.

    A closed, outward scan passes as it is. An open one passes when ``open_scans`` is set
    and the share of its surface that the winding number cannot sign is at most
    ``max_unsure`` (and no more than half of it is inside out).

    Raises:
        PipelineError: naming the file (and ``hint``: what needs it) when it is missing or
            unreadable, open while ``open_scans`` is off (with the watertight check's list of
            problems), inside out, or too broken to sign (with the measured share).
    """
    vertices, faces = read_mesh(path)
    boundary = boundary_edge_count(faces, len(vertices))
    if boundary == 0 or not open_scans:
        check_watertight(vertices, faces, f"{path}{hint}")
        return vertices, faces, ScanSign(closed=True, boundary_edges=0, unsure_share=0.0,
                                         flipped_share=0.0, probe_m=probe_m)
    sign = scan_sign(vertices, faces, probe_m=probe_m)
    if sign.flipped_share > 0.5:
        raise PipelineError(
            f"scan {path}{hint}: inside out ({sign.flipped_share:.0%} of its surface has the "
            "outside on the side its faces' winding calls inside); flip its faces")
    if sign.unsure_share > max_unsure:
        raise PipelineError(
            f"scan {path}{hint}: too broken to sign: inside/outside is unsure on "
            f"{sign.unsure_share:.1%} of its surface ({boundary} open edges), more than "
            f"data.scans.max_unsure ({max_unsure:.1%}); close its holes or leave it out")
    return vertices, faces, sign


def punch_holes(vertices: np.ndarray, faces: np.ndarray, *, n_random: int = 3,
                radius: float = 0.04, rng: np.random.Generator, up: int = 2) -> np.ndarray:
    """The faces of a canonical scan (Z up) with holes where real scans have them: the soles
    (faces within ``radius`` of the lowest point of each foot), the crown (of the top) and
    ``n_random`` patches of that radius at random surface points. ``(F', 3)``.

    ``up``: the index of the up axis (2: Z up, the pipeline's frame; 1: Y up, SMPL's). The
    feet are told apart by the sign of x (the person's left is +X in both frames)."""
    centroids = vertices[faces].mean(axis=1)
    z = centroids[:, up]
    low = z < z.min() + radius
    soles = [centroids[low & (centroids[:, 0] < 0)], centroids[low & (centroids[:, 0] >= 0)]]
    centres = [part[np.argmin(part[:, up])] for part in soles if len(part)]
    centres.append(centroids[np.argmax(z)])
    if n_random:
        centres.extend(centroids[rng.choice(len(faces), size=n_random, replace=False)])
    gone = np.zeros(len(faces), dtype=bool)
    for centre in centres:
        gone |= np.linalg.norm(centroids - centre, axis=1) < radius
    return faces[~gone]

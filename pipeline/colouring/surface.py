"""Colour over a mesh's surface: the vertices no photo sees filled by diffusion, and the two
colour measures (against photos held out of the colouring, against the truth's albedo)."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve
from scipy.spatial import cKDTree
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import structural_similarity

GREY = 0.5
"""sRGB grey that a part of the mesh no photo sees, and no seen part reaches, is left with."""

PULL_TO_GREY = 1e-6
"""Weight of the pull towards grey in the diffusion: negligible against a seen neighbour,
it only decides the colour of a piece with no seen vertex at all."""


def adjacency(faces: np.ndarray, n_vertices: int) -> sparse.csr_matrix:
    """``(V, V)`` symmetric 0/1 matrix of the mesh's edges."""
    f = np.asarray(faces, dtype=np.int64)
    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    a = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n_vertices, n_vertices)).tocsr()
    a.data[:] = 1.0
    return a


def fill_unseen(faces: np.ndarray, colours: np.ndarray, seen: np.ndarray,
                edges: sparse.csr_matrix | None = None) -> np.ndarray:
    """Colours of the unseen vertices by diffusion from the seen ones: each unseen vertex the
    mean of its neighbours (a harmonic function of the mesh graph, the seen colours fixed).

    Args:
        faces: ``(F, 3)``. colours: ``(V, C)`` (any space; used where ``seen``). seen: ``(V,)``.
        edges: :func:`adjacency` of the mesh, when already made (None: made here).

    Returns:
        ``(V, C)``: the seen colours unchanged, the rest filled; a piece of the mesh that no
        seen vertex reaches is ``GREY`` (in the colours' own units: give sRGB).
    """
    colours = np.asarray(colours, dtype=np.float64)
    seen = np.asarray(seen, dtype=bool)
    out = colours.copy()
    unknown = np.flatnonzero(~seen)
    if len(unknown) == 0:
        return out
    a = adjacency(faces, len(colours)) if edges is None else edges
    a_uu = a[unknown][:, unknown]
    degree = np.asarray(a[unknown].sum(axis=1)).ravel()
    system = (sparse.diags(degree + PULL_TO_GREY) - a_uu).tocsc()
    rhs = a[unknown][:, np.flatnonzero(seen)] @ colours[seen] + PULL_TO_GREY * GREY
    solved = spsolve(system, rhs)
    out[unknown] = solved.reshape(len(unknown), -1)
    return out


def psnr_only(drawn: np.ndarray, photo: np.ndarray, inside: np.ndarray) -> float:
    """PSNR (dB) of sRGB values in [0, 1] over the pixels ``inside``: ``(S, S, 3)`` uint8
    images, ``(S, S)`` bool mask, not empty."""
    a = drawn[inside].astype(np.float64) / 255.0
    b = photo[inside].astype(np.float64) / 255.0
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


SSIM_WINDOW = 7
"""Side of SSIM's square window (scikit-image's default without Gaussian weights)."""


def psnr_ssim(drawn: np.ndarray, photo: np.ndarray, inside: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of a drawn view against the photo, over the pixels ``inside`` its
    matte. PSNR from the mean squared error of sRGB values in [0, 1] there; SSIM
    (scikit-image, 7 × 7 windows, per channel) averaged over the same pixels.

    SSIM is computed on the box around ``inside`` widened by a window (the image's border
    where it is nearer): a pixel's SSIM depends only on the window around it, so the map
    there is the whole image's.

    Args:
        drawn, photo: ``(S, S, 3)`` uint8. inside: ``(S, S)`` bool, not empty.
    """
    psnr = psnr_only(drawn, photo, inside)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    box = tuple(slice(max(int(lo) - SSIM_WINDOW, 0), int(hi) + SSIM_WINDOW + 1)
                for lo, hi in ((rows[0], rows[-1]), (cols[0], cols[-1])))
    a = drawn[box].astype(np.float64) / 255.0
    b = photo[box].astype(np.float64) / 255.0
    _, ssim_map = structural_similarity(a, b, data_range=1.0, channel_axis=2, full=True,
                                        win_size=SSIM_WINDOW)
    return psnr, float(ssim_map[inside[box]].mean())


def truth_colour_error(vertices: np.ndarray, colours: np.ndarray, truth_vertices: np.ndarray,
                       truth_colours: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference at each vertex against the truth's colour at its nearest
    truth vertex (scikit-image; sRGB [0, 1] → CIELAB, D65)."""
    nearest = cKDTree(np.asarray(truth_vertices, dtype=np.float64)).query(
        np.asarray(vertices, dtype=np.float64), workers=1)[1]
    ours = rgb2lab(np.clip(colours, 0, 1)[None])[0]
    theirs = rgb2lab(np.clip(np.asarray(truth_colours)[nearest], 0, 1)[None])[0]
    return deltaE_ciede2000(ours, theirs)

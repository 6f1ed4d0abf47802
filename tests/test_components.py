"""Connected components of a reconstruction: the person's pieces are kept, floaters go."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from pipeline.components import count_components, keep_components


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A big sphere (the body), a small one holding a body vertex (a detached hand) and a
    small one outside the body (a floater); the 'body' vertices lie in the first two."""
    body = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    hand = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    hand.apply_translation([0.8, 0.0, 0.0])
    floater = trimesh.creation.icosphere(subdivisions=2, radius=0.03)
    floater.apply_translation([0.0, 0.8, 0.0])
    mesh = trimesh.util.concatenate([body, hand, floater])
    body_vertices = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0], [0.8, 0.0, 0.01]])
    return np.asarray(mesh.vertices), np.asarray(mesh.faces), body_vertices


def test_body_keeps_the_pieces_holding_the_body_and_drops_floaters() -> None:
    vertices, faces, body = _scene()
    kept = keep_components(vertices, faces, "body", body)
    assert (kept.components, kept.kept) == (3, 2)
    assert count_components(kept.vertices, kept.faces) == 2
    assert np.linalg.norm(kept.vertices - [0.0, 0.8, 0.0], axis=1).min() > 0.25  # floater gone
    floater_area = 4 * np.pi * 0.03 ** 2 * 1e4
    assert kept.removed_area_cm2 == pytest.approx(floater_area, rel=0.05)


@pytest.mark.parametrize("mode, expected", [("largest", 1), ("all", 3)])
def test_largest_and_all(mode: str, expected: int) -> None:
    vertices, faces, body = _scene()
    kept = keep_components(vertices, faces, mode, body)
    assert kept.components == 3 and kept.kept == expected
    assert count_components(kept.vertices, kept.faces) == expected


def test_no_faces_and_bad_modes() -> None:
    empty = keep_components(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), "body", None)
    assert (empty.components, empty.kept) == (0, 0)
    vertices, faces, _ = _scene()
    with pytest.raises(ValueError, match="needs the fitted body"):
        keep_components(vertices, faces, "body", None)
    with pytest.raises(ValueError, match="components mode 'biggest'"):
        keep_components(vertices, faces, "biggest")

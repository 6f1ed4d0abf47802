"""A reconstruction as a submission to its data set's benchmark (rule ``submission``, CLI
``export-dataset``): the canonical reconstruction and its fitted body as OBJ in the data
set's frame, pose and unit (``data.frame``, :class:`pipeline.frames.DatasetFrame`).

No scan is read: the fitted body alone carries the mesh there, reposing it by the body's
skinning into the data set's stated pose (:func:`pipeline.registration.pose_body`,
:func:`pipeline.registration.repose`), then moving it to the data set's origin, axes and
unit (:func:`to_dataset_frame`, the inverse of the register stage's map). Unlike the avatar
export (:mod:`pipeline.export`) this needs the body model and torch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.bodymodel import make_body_model
from pipeline.errors import PipelineError
from pipeline.export import with_surface
from pipeline.frames import DatasetFrame
from pipeline.meshio import read_ply, write_obj
from pipeline.registration import PosedBody, pose_body, repose

log = logging.getLogger(__name__)


def read_fit(fit: Path, params: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], Any]:
    """The fit file's body arrays (``body_model``, ``bone_names`` ``(B,)``, ``shape``
    ``(S,)``, ``canonical_vertices`` ``(N, 3)``, ``skinning_weights`` ``(N, B)``) and its body
    model (``params``: the ``fit`` section); PipelineError when the model's bones are not the
    file's."""
    try:
        with np.load(fit, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("body_model", "bone_names", "shape",
                                          "canonical_vertices", "skinning_weights")}
    except (OSError, ValueError, KeyError) as exc:
        raise PipelineError(f"cannot read the fit file {fit}: {exc}; rerun the fit") from exc
    name = str(arrays["body_model"])
    model = make_body_model(name, params.get(name, {}))
    if list(model.bone_names) != arrays["bone_names"].tolist():
        raise PipelineError(f"{fit}: its bones are not those of the body model {name!r} here "
                            "(another model version?); rerun the fit")
    return arrays, model


def to_dataset_frame(points: np.ndarray, body: PosedBody, frame: DatasetFrame) -> np.ndarray:
    """Canonical points ``(N, 3)`` near a body → the data set's frame: reposed into its
    stated pose by the body's skinning, moved to its origin, turned to its axes and scaled
    to its unit (the inverse of the register stage's map, by the fitted body)."""
    posed = repose(points, body.canonical, body.transforms)
    if frame.origin == "pelvis":
        posed = posed - body.pelvis
    return posed @ frame.axes().T / frame.unit_m


def run_dataset(*, mesh: Path, recon: Path, fit: Path, frame: str, output: Path,
                body_output: Path, params: dict[str, Any]) -> None:
    """Write a reconstruction (``output``) and its fitted body (``body_output``) as OBJ in
    the data set's frame, pose and unit (``frame``: ``data.frame`` as JSON), as a submission
    to its benchmark needs them: by the subject's fitted body, no scan read.

    ``params``: the ``fit`` section (the body model and its options).
    """
    summary = with_surface(mesh, recon)
    arrays, model = read_fit(fit, params)
    stated = DatasetFrame.from_config(json.loads(frame))
    body = pose_body(model, torch.from_numpy(arrays["shape"]),
                     model.pose_from_degrees(stated.body_pose().as_dict()))
    loaded = read_ply(mesh)
    vertices = to_dataset_frame(np.asarray(loaded.vertices), body, stated)
    body_vertices = to_dataset_frame(body.canonical, body, stated)
    write_obj(output, vertices, np.asarray(loaded.faces))
    write_obj(body_output, body_vertices, model.faces)
    log.info("%s: wrote %s and %s in the data set's frame (%s up, %s pose, unit %g m)",
             summary.get("subject", mesh.stem), output, body_output, stated.up, stated.pose,
             stated.unit_m)

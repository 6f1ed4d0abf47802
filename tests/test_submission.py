"""The data set's OBJ export (pipeline/submission.py, ``export-dataset``): a reconstruction
and its fitted body in the data set's frame, pose and unit, by the fitted body alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pipeline import submission
from pipeline.bodymodel import make_body_model
from tests.test_export import anny_subject


def test_run_dataset_writes_the_data_set_frame(tmp_path: Path) -> None:
    """``export-dataset``: the reconstruction and its fitted body as OBJ in MVP-Human's frame
    (Y up, pelvis origin, da-pose), by the fitted body alone."""
    from pipeline.frames import DatasetFrame
    from pipeline.registration import pose_body
    from pipeline.scans import read_mesh

    model = make_body_model("anny")
    shape = torch.zeros(model.shape_size)
    canonical = model.canonical(shape).vertices.detach().numpy().astype(np.float64)
    fit, mesh, recon = anny_subject(tmp_path, model, shape, canonical)
    frame = {"up": "y", "forward": "z", "unit_m": 1.0, "origin": "pelvis",
             "pose": {"name": "da", "arm_deg": None, "leg_deg": None}}
    submission.run_dataset(mesh=mesh, recon=recon, fit=fit, frame=json.dumps(frame),
                           output=tmp_path / "s.obj", body_output=tmp_path / "body.obj",
                           params={"body_model": "anny"})
    vertices, _ = read_mesh(tmp_path / "s.obj")
    body, _ = read_mesh(tmp_path / "body.obj")
    stated = DatasetFrame.from_config(frame)
    posed = pose_body(model, shape, model.pose_from_degrees(stated.body_pose().as_dict()))
    expected = (posed.posed - posed.pelvis) @ stated.axes().T
    assert np.abs(body - expected).max() < 1e-5
    assert np.ptp(vertices[:, 1]) > np.ptp(vertices[:, 2])  # Y up

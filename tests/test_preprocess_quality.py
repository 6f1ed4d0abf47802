"""Preprocessing quality metrics: the formulas, and perfect scores for oracle outputs."""

from __future__ import annotations

import numpy as np

from pipeline.detect import DetectParams, detect_action
from pipeline.keypoints import KeypointParams, keypoints_action
from pipeline.mask import MaskParams, mask_action
from pipeline.preprocess_quality import Scores, mask_iou, pck_hits, report, score_action


def test_pck_hits():
    truth = np.array([[10.0, 10.0, 1.0], [50.0, 50.0, 1.0], [0.0, 0.0, 0.0]])
    pred = np.array([[14.0, 10.0, 0.9], [50.0, 50.0, 0.0], [3.0, 3.0, 1.0]])
    box = np.array([0.0, 0.0, 99.0, 49.0])  # longer side 100 px
    hits = pck_hits(pred, truth, box, 0.05)
    assert hits[0] == 1.0 and hits[1] == 0.0 and np.isnan(hits[2])
    assert pck_hits(pred, truth, box, 0.03)[0] == 0.0


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert mask_iou(a, b) == 1.0
    a[:2] = True
    b[1:3] = True
    assert mask_iou(a, b) == 4 / 12


def test_oracle_outputs_score_perfectly(synthetic_subject, tmp_path):
    results, truth = tmp_path / "results", synthetic_subject["truth"]
    crops = results / "crop" / "s000" / "act00"
    detect_action(manifest=synthetic_subject["manifest"], action="act00", truth=truth,
                  output=crops, params=DetectParams("oracle", 128, 0.1, "fail", 0.3, {}))
    mask_action(crops=crops, action="act00", truth=truth,
                output=results / "mask" / "s000" / "act00",
                params=MaskParams("oracle", "none", 3, {}, {}))
    keypoints_action(subject="s000", crops=crops, action="act00", truth=truth,
                     output=results / "keypoints" / "s000" / "act00.json",
                     params=KeypointParams("oracle", {}))
    scores = Scores()
    score_action(scores, results, truth.parent, "s000", "act00")
    assert scores.box_iou == [1.0, 1.0, 1.0]
    assert min(scores.mask_after) > 0.95
    assert np.nanmean(np.stack(scores.pck[0.05])) == 1.0
    assert "person box IoU" in report(scores)

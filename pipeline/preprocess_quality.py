"""Quality of the preprocessing stages against the synthetic truth.

``python -m pipeline.preprocess_quality --config config.yaml`` (after ``make demo``) prints,
over every view of every subject: person box IoU, mask IoU before and after matting (in the
crop, against the truth mask cut the same way), and keypoint PCK@0.05 / @0.1 of the truth box's
longer side, per body part, plus the worst views.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import load_config
from pipeline.crop import CropBox, box_iou
from pipeline.detect import CROP_FILE, OK
from pipeline.imageio import read_gray, read_matte
from pipeline.io import read_json
from pipeline.skeleton import COCO17

PARTS = {
    "head": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    "shoulders": ("left_shoulder", "right_shoulder"),
    "elbows": ("left_elbow", "right_elbow"),
    "wrists": ("left_wrist", "right_wrist"),
    "hips": ("left_hip", "right_hip"),
    "knees": ("left_knee", "right_knee"),
    "ankles": ("left_ankle", "right_ankle"),
}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def pck_hits(pred: np.ndarray, truth: np.ndarray, box_xyxy: np.ndarray,
             alpha: float) -> np.ndarray:
    """Per keypoint: is the prediction within ``alpha`` × the box's longer side of the truth?

    Args:
        pred, truth: ``(J, 3)`` keypoints (x, y, confidence / visibility).
        box_xyxy: the truth person box.
    Returns:
        ``(J,)`` float array: 1 hit, 0 miss (an undetected keypoint is a miss), NaN where the
        truth keypoint is not visible (not counted).
    """
    size = max(box_xyxy[2] - box_xyxy[0], box_xyxy[3] - box_xyxy[1]) + 1.0
    dist = np.linalg.norm(pred[:, :2] - truth[:, :2], axis=1)
    hits = ((dist <= alpha * size) & (pred[:, 2] > 0)).astype(np.float64)
    hits[truth[:, 2] <= 0] = np.nan
    return hits


@dataclass
class Scores:
    box_iou: list[float] = field(default_factory=list)
    mask_before: list[float] = field(default_factory=list)
    mask_after: list[float] = field(default_factory=list)
    pck: dict[float, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    views: list[tuple[str, float, float, float]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def score_action(scores: Scores, results: Path, truth: Path, subject: str, action: str) -> None:
    """Add one subject-action's views to ``scores``."""
    crops = read_json(results / "crop" / subject / action / CROP_FILE)["views"]
    points = read_json(results / "keypoints" / subject / f"{action}.json")["views"]
    truth_views = read_json(truth / subject / action / "views.json")["views"]
    for view, t in truth_views.items():
        name = f"{subject}/{action}/{view}"
        record = crops.get(view, {"status": "missing"})
        if record["status"] != OK:
            scores.missing.append(f"{name} ({record['status']})")
            continue
        tbox = np.asarray(t["box_xyxy"])
        iou = box_iou(np.asarray(record["box_xyxy"]), tbox)
        crop = CropBox.from_dict(record["crop"])
        gt = crop.cut(read_matte(truth / subject / action / f"{view}_mask.png"), "nearest") > 0.5
        before = mask_iou(read_gray(results / "mask" / subject / action /
                                    f"{view}_coarse.png") > 127, gt)
        after = mask_iou(read_gray(results / "mask" / subject / action / f"{view}.png") > 127,
                         gt)
        scores.box_iou.append(iou)
        scores.mask_before.append(before)
        scores.mask_after.append(after)
        tk = np.asarray(t["keypoints_coco17"])
        kp = points.get(view, {})
        pred = np.asarray(kp["coco17_image"]) if kp.get("status") == OK else np.zeros((17, 3))
        for alpha in (0.05, 0.1):
            scores.pck[alpha].append(pck_hits(pred, tk, tbox, alpha))
        hits = pck_hits(pred, tk, tbox, 0.1)
        scores.views.append((name, iou, after, float(np.nanmean(hits)) if
                             np.isfinite(hits).any() else float("nan")))


def report(scores: Scores) -> str:
    """The quality table as text."""
    lines = [f"views scored: {len(scores.box_iou)}; without a person: {len(scores.missing)} "
             f"{scores.missing[:8]}",
             f"{'metric':<28}{'mean':>8}{'median':>8}{'min':>8}"]
    for label, values in (("person box IoU", scores.box_iou),
                          ("mask IoU before matting", scores.mask_before),
                          ("mask IoU after matting", scores.mask_after)):
        v = np.asarray(values)
        lines.append(f"{label:<28}{v.mean():8.4f}{np.median(v):8.4f}{v.min():8.4f}")
    lines.append(f"{'keypoint PCK (by part)':<28}{'@0.05':>8}{'@0.1':>8}")
    index = {n: i for i, n in enumerate(COCO17)}
    for part, names in {**PARTS, "all": COCO17}.items():
        cols = [index[n] for n in names]
        row = [np.nanmean(np.stack(scores.pck[a])[:, cols]) for a in (0.05, 0.1)]
        lines.append(f"{part:<28}{row[0]:8.4f}{row[1]:8.4f}")
    worst = sorted(scores.views, key=lambda r: (min(r[1], r[2]), r[3]))[:6]
    lines.append("worst views (box IoU, mask IoU after, PCK@0.1):")
    lines += [f"  {n}: {b:.3f} {m:.3f} {p:.3f}" for n, b, m, p in worst]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    args = parser.parse_args(argv)
    config = load_config(args.config)
    dataset = config["data"]["dataset"]
    results = Path(config["results"]) / dataset
    truth = Path(config["data"]["root"]) / dataset / "truth"
    scores = Scores()
    for subject in config["data"]["subjects"]:
        manifest = read_json(results / "manifest" / f"{subject}.json")
        for action in sorted(manifest["actions"]):
            score_action(scores, results, truth, subject, action)
    print(report(scores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

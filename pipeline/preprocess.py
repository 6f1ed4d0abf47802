"""Preprocess: a subject's image stages in one process, each model loaded once.

For every action of the ingest manifest, in turn: detect and crop (:mod:`pipeline.detect`),
segment and matte (:mod:`pipeline.mask`), 2D keypoints (:mod:`pipeline.keypoints`) and the
overlay sheet (:mod:`pipeline.overlay`). The files stay per action, as each stage writes them::

    crop/<subject>/<action>/        <view>.png, crop.json
    mask/<subject>/<action>/        <view>.png, <view>_coarse.png, <view>_masked.png, mask.json
    keypoints/<subject>/<action>.json
    overlay/<subject>/<action>.png

Each of the four subject folders is written atomically. When the segmenter and the keypoint
detector are the same MediaPipe graph (``mediapipe`` for both, same options), each crop gets
one pose pass, shared. An action that fails does not stop the others: every action's problem
is gathered and the subject fails once, naming each (the per-view warnings stay in the log).
One action is still run alone by ``python -m pipeline detect|mask|keypoints|overlay``.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.detect import DetectParams, detect_action, make_detector
from pipeline.errors import PipelineError
from pipeline.io import atomic_directory, read_json
from pipeline.keypoints import KeypointParams, keypoints_action, make_model
from pipeline.mask import MaskParams, make_models, mask_action
from pipeline.overlay import overlay_action

log = logging.getLogger(__name__)

SECTIONS = ("detect", "mask", "keypoints")
"""The config sections the stage reads (``--params`` holds one object per section)."""


@dataclass(frozen=True)
class PreprocessParams:
    detect: DetectParams
    mask: MaskParams
    keypoints: KeypointParams

    @classmethod
    def from_params(cls, p: dict[str, dict[str, Any]]) -> PreprocessParams:
        return cls(DetectParams.from_params(p["detect"]), MaskParams.from_params(p["mask"]),
                   KeypointParams.from_params(p["keypoints"]))


@dataclass(frozen=True)
class Models:
    """Every model the image stages use, built once per subject."""

    detector: Any
    segmenter: Any
    matter: Any
    keypoints: Any
    shared_pose: bool  # the keypoint detector reuses the segmenter's pose pass

    @classmethod
    def build(cls, params: PreprocessParams) -> Models:
        segmenter, matter = make_models(params.mask)
        keypoints = make_model(params.keypoints)
        share = getattr(keypoints, "share", None)
        shared = bool(share is not None and share(segmenter))
        return cls(make_detector(params.detect), segmenter, matter, keypoints, shared)

    def close(self) -> None:
        """Release the models that hold native resources (a shared graph once)."""
        for model in (self.detector, self.segmenter, self.keypoints):
            close = getattr(model, "close", None)
            if close is not None:
                close()


def manifest_actions(manifest: Path) -> tuple[str, list[str]]:
    """The subject and its accepted actions, sorted, from the ingest manifest."""
    record = read_json(manifest)
    actions = sorted(record.get("actions", {}))
    if not actions:
        raise PipelineError(f"{manifest}: the manifest accepts no action")
    return record["subject"], actions


def preprocess_action(*, action: str, manifest: Path, truth: Path, folders: dict[str, Path],
                      params: PreprocessParams, models: Models) -> None:
    """One action through detect, mask, keypoints and overlay, into ``folders`` (the
    subject's crop, mask, keypoints and overlay folders)."""
    crops, masks = folders["crops"] / action, folders["masks"] / action
    keypoints = folders["keypoints"] / f"{action}.json"
    detected = detect_action(manifest=manifest, action=action, truth=truth, output=crops,
                             params=params.detect, detector=models.detector)
    mask_action(crops=crops, action=action, truth=truth, output=masks, params=params.mask,
                models=(models.segmenter, models.matter))
    keypoints_action(subject=detected["subject"], crops=crops, action=action, truth=truth,
                     output=keypoints, params=params.keypoints, model=models.keypoints)
    overlay_action(crops=crops, masks=masks, keypoints=keypoints,
                   output=folders["overlays"] / f"{action}.png")


def preprocess_subject(*, manifest: Path, truth: Path, outputs: dict[str, Path],
                       params: PreprocessParams) -> dict[str, str]:
    """Every action of the manifest's subject; the four folders of ``outputs`` (keys
    ``crops``, ``masks``, ``keypoints``, ``overlays``) replaced atomically, together on
    success, none on failure.

    Returns:
        Each action's outcome (``ok``).

    Raises:
        PipelineError: naming every action that failed and why.
    """
    subject, actions = manifest_actions(Path(manifest))
    with ExitStack() as stack:
        folders = {key: stack.enter_context(atomic_directory(path))
                   for key, path in outputs.items()}
        models = Models.build(params)
        stack.callback(models.close)
        if models.shared_pose:
            log.info("%s: mask and keypoints share one MediaPipe pose pass per crop", subject)
        failed: dict[str, str] = {}
        for action in actions:
            try:
                preprocess_action(action=action, manifest=Path(manifest), truth=Path(truth),
                                  folders=folders, params=params, models=models)
            except PipelineError as exc:
                log.error("%s/%s: %s", subject, action, exc)
                failed[action] = str(exc)
        if failed:
            lines = "\n".join(f"  - {action}: {why}" for action, why in failed.items())
            raise PipelineError(f"{subject}: {len(failed)} of {len(actions)} actions failed "
                                f"preprocessing (nothing written):\n{lines}")
    return dict.fromkeys(actions, "ok")


def run(*, subject: str, manifest: Path, truth: Path, crops: Path, masks: Path,
        keypoints: Path, overlays: Path, params: dict[str, Any]) -> None:
    """CLI entry: ``python -m pipeline preprocess``."""
    del subject  # named by the manifest; the option keeps the command line readable in logs
    preprocess_subject(manifest=manifest, truth=truth,
                       outputs={"crops": crops, "masks": masks, "keypoints": keypoints,
                                "overlays": overlays},
                       params=PreprocessParams.from_params(params))

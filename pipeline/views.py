"""What the image stages share: the ingest manifest, per-action views, cameras, provenance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.camera import Camera
from pipeline.errors import PipelineError
from pipeline.io import read_json

ORACLE_BACKEND = "oracle"


@dataclass(frozen=True)
class ActionViews:
    """The accepted views of one subject-action, from the ingest manifest."""

    subject: str
    action: str
    photos: dict[str, Path]          # view → photo path
    cameras: dict[str, Camera] | None  # view → calibrated camera, when the data set has them
    masks: dict[str, Path] | None = None  # view → the data set's own mask (data.layout.masks)


def load_action(manifest_path: Path, action: str) -> ActionViews:
    """Read the manifest and return one action's accepted views (and cameras and masks, if
    any): the manifest's paths are relative to its ``data_dir``, the data set's folder."""
    manifest = read_json(manifest_path)
    actions = manifest.get("actions", {})
    if action not in actions:
        raise PipelineError(f"{manifest_path}: no action {action!r} (has {sorted(actions)})")
    entry = actions[action]
    data_dir = Path(manifest["data_dir"])
    photos = {view: data_dir / info["file"] for view, info in sorted(entry["views"].items())}
    masks = {view: data_dir / info["mask"] for view, info in sorted(entry["views"].items())
             if "mask" in info} or None
    cameras = None
    if entry.get("cameras"):
        path = data_dir / entry["cameras"]
        views = read_json(path).get("views", {})
        cameras = {}
        for view in photos:
            if view not in views:
                raise PipelineError(f"{path}: no camera for view {view!r}")
            try:
                cameras[view] = Camera.from_dict(views[view])
            except (ValueError, KeyError, TypeError) as exc:
                raise PipelineError(f"{path}: camera of view {view!r} is invalid: {exc}") from exc
    return ActionViews(manifest["subject"], action, photos, cameras, masks)


def provenance(stage: str, backend: str) -> dict[str, str]:
    """PNG text chunks naming what made an image (oracle outputs say so)."""
    return {"pixel2isdf:stage": stage, "pixel2isdf:backend": backend,
            "pixel2isdf:oracle": str(backend == ORACLE_BACKEND).lower()}


def stage_header(stage: str, backend: str, **extra: Any) -> dict[str, Any]:
    """The common head of a stage's JSON output."""
    return {"schema": f"pixel2isdf.{stage}/1", "backend": backend,
            "oracle": backend == ORACLE_BACKEND, **extra}


def truth_views(truth: Path, action: str) -> dict[str, Any]:
    """The synthetic truth of an action (for oracle backends), with a clear error when absent."""
    path = Path(truth) / action / "views.json"
    if not path.is_file():
        raise PipelineError(f"the oracle backend needs synthetic truth, but {path} does not exist "
                            "(oracle backends work only on synthetic data sets)")
    return read_json(path)["views"]

"""Ingest: decode every photo of a subject and write its manifest.

Layout read: ``<data_dir>/<action>/<view>.<ext>``, one folder per action, one image per view
(the view name is the file stem). Each image is opened, checked and fully decoded; the manifest
``results/<dataset>/manifest/<subject>.json`` lists accepted views (size, mode, SHA-256) and
rejected ones with the reason. Later stages read the manifest and never glob the data folder.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from pipeline.errors import PipelineError
from pipeline.io import file_sha256, write_json

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "pixel2isdf.manifest/1"
CAMERAS_FILE = "cameras.json"


@dataclass(frozen=True)
class IngestParams:
    """The ``ingest`` section of the config (see the schema for each key)."""

    on_bad_image: str = "fail"
    min_views: int = 4
    min_side: int = 64
    max_pixels: int = 100_000_000
    extensions: tuple[str, ...] = ("jpg", "jpeg", "png")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> IngestParams:
        return cls(
            on_bad_image=params["on_bad_image"],
            min_views=params["min_views"],
            min_side=params["min_side"],
            max_pixels=params["max_pixels"],
            extensions=tuple(e.lower() for e in params["extensions"]),
        )


def check_image(path: Path, params: IngestParams) -> tuple[dict[str, Any] | None, str | None]:
    """Open, check and fully decode one image.

    Returns:
        ``(info, None)`` for a usable image (width, height, mode, format, sha256) or
        ``(None, reason)`` naming why it is unusable.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        return None, f"unreadable: {exc.strerror}"
    if size == 0:
        return None, "zero bytes"
    fmt = mode = None
    try:
        with warnings.catch_warnings():
            # Size is checked below against max_pixels, before any decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                fmt, mode = image.format, image.mode
                if width * height > params.max_pixels:
                    return None, (
                        f"absurd size {width}x{height} ({width * height} pixels > "
                        f"max_pixels {params.max_pixels})"
                    )
                if min(width, height) < params.min_side:
                    return None, (
                        f"absurd size {width}x{height} (a side < min_side {params.min_side})"
                    )
                image.verify()
            with Image.open(path) as image:
                image.load()
    except UnidentifiedImageError:
        return None, "not an image (format not recognised)"
    except Image.DecompressionBombError as exc:
        return None, f"absurd size: {exc}"
    except PermissionError as exc:
        return None, f"unreadable: {exc.strerror}"
    except (OSError, SyntaxError, ValueError) as exc:
        kind = fmt or Image.registered_extensions().get(path.suffix.lower(), "image")
        return None, f"truncated or corrupt {kind}: {exc}"
    if mode not in ("RGB", "L", "RGBA", "P", "PA", "CMYK", "YCbCr", "LA", "1", "I", "F",
                    "I;16", "I;16B", "I;16L"):  # pipeline.imageio.read_rgb scales each one
        return None, f"unsupported pixel mode {mode}"
    info = {"width": width, "height": height, "mode": mode, "format": fmt, "bytes": size,
            "sha256": file_sha256(path)}
    return info, None


def _views_of(action_dir: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(
        p for p in action_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix[1:].lower() in extensions
    )


def ingest_subject(
    *, data_dir: Path, subject: str, output: Path, params: IngestParams
) -> dict[str, Any]:
    """Check every view of one subject and write its manifest to ``output``.

    Raises:
        PipelineError: with ``on_bad_image=fail``, naming every bad file and why; with either
            policy, when an action keeps fewer than ``min_views`` usable views or the subject
            folder is missing or empty.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise PipelineError(f"subject {subject}: data folder {data_dir} does not exist")
    action_dirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not action_dirs:
        raise PipelineError(f"subject {subject}: no action folders in {data_dir}")

    actions: dict[str, Any] = {}
    bad: list[str] = []
    for action_dir in action_dirs:
        accepted: dict[str, Any] = {}
        rejected: dict[str, Any] = {}
        for path in _views_of(action_dir, params.extensions):
            rel = path.relative_to(data_dir).as_posix()
            view = path.stem
            if view in accepted or view in rejected:
                info, reason = None, f"duplicate view name {view!r} (another file has this stem)"
            else:
                info, reason = check_image(path, params)
            if reason is not None:
                rejected[view] = {"file": rel, "reason": reason}
                bad.append(f"{path}: {reason}")
                log.warning("%s: %s", path, reason)
            else:
                accepted[view] = {"file": rel, **info}
        cameras = action_dir / CAMERAS_FILE
        actions[action_dir.name] = {
            "views": accepted,
            "rejected": rejected,
            "cameras": f"{action_dir.name}/{CAMERAS_FILE}" if cameras.is_file() else None,
        }
        log.info("%s/%s: %d views accepted, %d rejected", subject, action_dir.name,
                 len(accepted), len(rejected))

    if bad and params.on_bad_image == "fail":
        listing = "\n".join(f"  - {line}" for line in bad)
        raise PipelineError(
            f"subject {subject}: {len(bad)} bad image(s) (on_bad_image=fail; set "
            f"ingest.on_bad_image: skip to record them and go on):\n{listing}"
        )
    short = [
        f"  - {name}: {len(a['views'])} usable view(s) < min_views {params.min_views}"
        for name, a in actions.items() if len(a["views"]) < params.min_views
    ]
    if short:
        raise PipelineError(f"subject {subject}: too few usable views (lower ingest.min_views, "
                            "down to 1, to accept fewer photos per action)\n"
                            + "\n".join(short))

    manifest = {
        "schema": MANIFEST_SCHEMA,
        "subject": subject,
        "data_dir": str(data_dir),
        "actions": actions,
        "n_views": sum(len(a["views"]) for a in actions.values()),
        "n_rejected": sum(len(a["rejected"]) for a in actions.values()),
    }
    write_json(output, manifest)
    return manifest


def run(*, subject: str, data_dir: Path, output: Path, params: dict[str, Any]) -> None:
    """CLI entry: ``python -m pipeline ingest``."""
    ingest_subject(data_dir=data_dir, subject=subject, output=output,
                   params=IngestParams.from_params(params))

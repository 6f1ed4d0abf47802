"""Ingest: decode every photo of a subject and write its manifest.

Layout read: ``data.layout`` (:mod:`pipeline.layout`), by default
``<data set>/<subject>/<action>/<view>.<ext>``; the view name is the template's ``{view}``.
Each image is opened, checked and fully decoded; the manifest
``results/<dataset>/manifest/<subject>.json`` names the data set's folder (``data_dir``) and
lists accepted views (``file`` relative to it, size, mode, SHA-256, and ``mask`` when the
layout has masks) and rejected ones with the reason, and each action's ``cameras`` file (or
null). Later stages read the manifest and never glob the data folder.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from pipeline.config import parse_json_object
from pipeline.errors import PipelineError
from pipeline.io import file_sha256, write_json
from pipeline.layout import Layout

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "pixel2isdf.manifest/1"


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


def check_view(path: Path, *, data_dir: Path, mask: str | None, layout: Layout,
               params: IngestParams) -> tuple[dict[str, Any] | None, str | None]:
    """Check one view: its mask file (``mask``, relative to ``data_dir``) exists when the
    layout has masks, and its photo ``path`` is usable (:func:`check_image`).

    Returns:
        ``(info, None)`` for a usable view or ``(None, reason)``.
    """
    if mask is not None and not (data_dir / mask).is_file():
        return None, f"mask {data_dir / mask} is missing (data.layout.masks {layout.masks!r})"
    return check_image(path, params)


def ingest_subject(
    *, data_dir: Path, subject: str, output: Path, params: IngestParams,
    layout: Layout | None = None,
) -> dict[str, Any]:
    """Check every view of one subject and write its manifest to ``output``.

    Args:
        data_dir: the data set's folder (``<data.root>/<data.dataset>``); every path of the
            manifest is relative to it.
        layout: where the photos, masks and cameras lie (``data.layout``; default: the
            pipeline's own layout).

    Raises:
        PipelineError: with ``on_bad_image=fail``, naming every bad file and why; with either
            policy, when an action keeps fewer than ``min_views`` usable views or the subject
            folder is missing or holds no photo the layout names.
    """
    data_dir = Path(data_dir)
    layout = Layout() if layout is None else layout
    found = layout.find_photos(data_dir, subject, params.extensions)

    actions: dict[str, Any] = {}
    bad: list[str] = []
    for action, views in sorted(found.items()):
        accepted: dict[str, Any] = {}
        rejected: dict[str, Any] = {}
        for view, paths in sorted(views.items()):
            mask = layout.mask_of(subject, action, view)
            extra = {} if mask is None else {"mask": mask}
            # The first file is checked; each further one (another extension) is a duplicate.
            for i, path in enumerate(paths):
                rel = path.relative_to(data_dir).as_posix()
                if i > 0:
                    info, reason = None, (f"duplicate view name {view!r} (another file has "
                                          "this stem)")
                else:
                    info, reason = check_view(path, data_dir=data_dir, mask=mask, layout=layout,
                                              params=params)
                if reason is not None:
                    rejected[view] = {"file": rel, **extra, "reason": reason}
                    bad.append(f"{path}: {reason}")
                    log.warning("%s: %s", path, reason)
                else:
                    accepted[view] = {"file": rel, **extra, **info}
        cameras = layout.cameras_of(subject, action)
        actions[action] = {
            "views": accepted,
            "rejected": rejected,
            "cameras": cameras if cameras is not None and (data_dir / cameras).is_file() else None,
        }
        log.info("%s/%s: %d views accepted, %d rejected", subject, action,
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


def run(*, subject: str, data_dir: Path, output: Path, params: dict[str, Any],
        layout: str | None = None) -> None:
    """CLI entry: ``python -m pipeline ingest``.

    ``data_dir`` is the data set's folder; ``layout`` the ``data.layout`` section as JSON
    (what the rule passes, so that changing it reruns ingest; absent: the default layout).

    Raises:
        PipelineError: ``--layout`` is not a JSON object of known keys, or a template is bad
            (naming ``data.layout.<key>``).
    """
    ingest_subject(data_dir=data_dir, subject=subject, output=output,
                   params=IngestParams.from_params(params), layout=parse_layout(layout))


def parse_layout(text: str | None) -> Layout:
    """The ``--layout`` JSON (the ``data.layout`` section), checked; None: the default."""
    if text is None:
        return Layout()
    section = parse_json_object(text, "--layout", " (the data.layout section)")
    unknown = sorted(set(section) - set(Layout.__dataclass_fields__))
    if unknown:
        raise PipelineError(f"--layout: unknown data.layout key(s) {unknown}; known: "
                            f"{sorted(Layout.__dataclass_fields__)}")
    return Layout.from_config(section)

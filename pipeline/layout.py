"""A data set's file layout, stated as path templates in config (``data.layout``).

Each template is a path relative to the data set's folder (``<data.root>/<data.dataset>``)
with placeholders ``{subject}``, ``{action}``, ``{view}`` and ``{ext}`` (a photo extension
of ``ingest.extensions``). The default is the pipeline's own layout::

    photos:  {subject}/{action}/{view}.{ext}
    cameras: {subject}/{action}/cameras.json
    scan:    truth/{subject}/canonical_clothed.ply

and ``presets/mvp_human.yaml`` states the MVP-Human release's. Nothing downstream of the
manifest (``pipeline/ingest.py``) globs a data folder: the templates are read here only.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

FIELDS = ("subject", "action", "view", "ext")
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
"""What a subject, action or view name may be (the workflow's wildcard constraint)."""


def placeholders(template: str, key: str = "photos",
                 allowed: Iterable[str] = FIELDS) -> list[str]:
    """The placeholder names of ``template`` (``data.layout.<key>``) in order of appearance.

    Raises:
        PipelineError: naming ``data.layout.<key>``: unbalanced braces, a placeholder outside
            ``allowed``, or a format spec / conversion.
    """
    allowed = tuple(allowed)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PipelineError(f"data.layout.{key} {template!r}: {exc} (write a placeholder as "
                            "{subject}, a literal brace as {{ or }})") from exc
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise PipelineError(f"data.layout.{key} {template!r}: unknown placeholder "
                                f"{{{shown}}}; this template may use "
                                f"{', '.join('{' + f + '}' for f in allowed)}")
        names.append(name)
    return names


def check_template(key: str, template: str, required: Iterable[str],
                   allowed: Iterable[str] = FIELDS) -> None:
    """Refuse a template (``data.layout.<key>``) that is empty, absolute, climbs out of the
    data set, uses a placeholder outside ``allowed`` or lacks a ``required`` one."""
    path = Path(template)
    if not template.strip():
        raise PipelineError(f"data.layout.{key}: the template is empty")
    if path.is_absolute() or ".." in path.parts:
        raise PipelineError(f"data.layout.{key} {template!r}: must be relative to the data "
                            "set's folder, without '..'")
    have = placeholders(template, key, allowed)
    missing = [f for f in required if f not in have]
    if missing:
        raise PipelineError(f"data.layout.{key} {template!r}: needs "
                            f"{', '.join('{' + f + '}' for f in missing)}")


def fill(template: str, **values: str) -> str:
    """``template`` with the given placeholders filled (the others are left as they are)."""
    keep = {f: "{" + f + "}" for f in FIELDS}
    return template.format(**{**keep, **values})


def subject_folder(template: str, subject: str) -> str:
    """The leading folders of ``template`` that hold no placeholder but ``{subject}``,
    filled for ``subject``: the folder that holds all of a subject's photos (the ingest
    job's input), relative to the data set's folder.

    Raises:
        PipelineError: the template's folders do not name the subject before any other
            placeholder, so one subject's photos share no folder of their own.
    """
    parts = Path(template).parts[:-1]
    lead = []
    for part in parts:
        names = placeholders(part)
        if any(n != "subject" for n in names):
            break
        lead.append(part)
    if not any("subject" in placeholders(p) for p in lead):
        raise PipelineError(f"data.layout.photos {template!r}: a folder of the path must name "
                            "the {subject} before any {action} or {view}, so that each "
                            "subject's photos have a folder of their own")
    return fill(str(Path(*lead)), subject=subject)


def pattern(template: str, extensions: Iterable[str] = ()) -> re.Pattern[str]:
    """A regular expression matching a relative path of ``template``, one named group per
    placeholder (a placeholder used twice must match the same text twice)."""
    out, seen = [], set()
    exts = "|".join(re.escape(e) for e in extensions) or r"[A-Za-z0-9]+"
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if name is None:
            continue
        if name in seen:
            out.append(f"(?P={name})")
            continue
        seen.add(name)
        body = f"(?i:{exts})" if name == "ext" else NAME
        out.append(f"(?P<{name}>{body})")
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class Layout:
    """The ``data.layout`` section: where each kind of file lies (see the schema)."""

    photos: str = "{subject}/{action}/{view}.{ext}"
    masks: str | None = None
    cameras: str | None = "{subject}/{action}/cameras.json"
    scan: str = "truth/{subject}/canonical_clothed.ply"
    scan_rotation: str | None = None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Layout:
        """From ``data.layout`` (a key left out keeps its default), checked.

        Raises:
            PipelineError: a bad template, naming ``data.layout.<key>``.
        """
        layout = cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})
        layout.check()
        return layout

    def check(self) -> None:
        """Each template is relative, uses known placeholders and the fields it needs
        (``{ext}`` only in ``photos``), and the photos' path names the subject's folder.

        Raises:
            PipelineError: naming ``data.layout.<key>`` and the template.
        """
        check_template("photos", self.photos, ("subject", "action", "view"))
        if self.masks is not None:
            check_template("masks", self.masks, ("subject", "action", "view"),
                           ("subject", "action", "view"))
        if self.cameras is not None:
            check_template("cameras", self.cameras, ("subject", "action"), ("subject", "action"))
        check_template("scan", self.scan, ("subject",), ("subject",))
        if self.scan_rotation is not None:
            check_template("scan_rotation", self.scan_rotation, ("subject",), ("subject",))
        subject_folder(self.photos, "x")

    def photo_folder(self, subject: str) -> str:
        """The folder of ``subject``'s photos, relative to the data set's folder."""
        return subject_folder(self.photos, subject)

    def scan_of(self, subject: str) -> str:
        """The subject's canonical scan, relative to the data set's folder."""
        return fill(self.scan, subject=subject)

    def rotation_of(self, subject: str) -> str | None:
        """The subject's scan rotation file, relative to the data set's folder, if any."""
        return None if self.scan_rotation is None else fill(self.scan_rotation, subject=subject)

    def find_photos(self, root: Path, subject: str,
                    extensions: Iterable[str]) -> dict[str, dict[str, list[Path]]]:
        """Every photo of ``subject`` under the data set folder ``root``:
        ``{action: {view: [path, ...]}}``, sorted, hidden files and folders skipped. A view
        with more than one file (two extensions) is for the caller to refuse.

        Raises:
            PipelineError: the subject's folder is missing, or the template matches no file
                in it (naming the template and the folder).
        """
        root = Path(root)
        folder = root / self.photo_folder(subject)
        if not folder.is_dir():
            raise PipelineError(f"subject {subject}: data folder {folder} does not exist "
                                f"(data.layout.photos {self.photos!r})")
        regex = pattern(fill(self.photos, subject=subject), [e.lower() for e in extensions])
        found: dict[str, dict[str, list[Path]]] = {}
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if any(p.startswith(".") for p in path.relative_to(folder).parts) or not path.is_file():
                continue
            match = regex.match(rel)
            if match is None:
                continue
            found.setdefault(match["action"], {}).setdefault(match["view"], []).append(path)
        if not found:
            raise PipelineError(f"subject {subject}: data.layout.photos {self.photos!r} "
                                f"matches no file under {folder}")
        return found

    def mask_of(self, subject: str, action: str, view: str) -> str | None:
        """A photo's mask, relative to the data set's folder, if the layout has masks."""
        if self.masks is None:
            return None
        return fill(self.masks, subject=subject, action=action, view=view)

    def cameras_of(self, subject: str, action: str) -> str | None:
        """An action's camera file, relative to the data set's folder, if any."""
        if self.cameras is None:
            return None
        return fill(self.cameras, subject=subject, action=action)

"""Writing a measured table into the docs (``--write docs/results.md``), shared by the
benchmark scripts in ``benchmarks/``.

Each table lives between two markers, ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->``. :func:`publish` replaces what stands between them with the table
and the facts that produced it: the command, the commit (and whether the tree had changes),
the date and the machine's processor and thread count. A section that is not in the file yet
is appended at its end, so the first run of a new benchmark adds its own section. Nothing
outside the markers is touched, and the file is replaced atomically.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

MARKER = re.compile(r"<!-- results:(?P<name>[a-z0-9_-]+) -->\n.*?<!-- /results:(?P=name) -->",
                    re.S)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(command: str | None = None) -> str:
    """``Command: … · commit abc1234 (with uncommitted changes) · 2026-12-04 · <cpu>, N
    threads``: one line saying where a table comes from."""
    command = command or " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv])
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " with uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") \
        else ""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"Command: `{command}` · commit {commit}{dirty} · "
            f"{dt.date.today().isoformat()} · {cpu}, {os.cpu_count()} CPUs")


def publish(path: Path, name: str, body: str, command: str | None = None) -> None:
    """Put ``body`` (Markdown) into section ``name`` of ``path``, under its provenance line.

    Raises:
        ValueError: ``name`` is not a lower-case word (letters, digits, ``-``, ``_``).
    """
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise ValueError(f"results section name {name!r}: lower-case letters, digits, - or _")
    block = (f"<!-- results:{name} -->\n{provenance(command)}\n\n{body.strip()}\n"
             f"<!-- /results:{name} -->")
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    replaced = False

    def swap(match: re.Match[str]) -> str:
        nonlocal replaced
        if match["name"] != name:
            return match[0]
        replaced = True
        return block

    text = MARKER.sub(swap, text)
    if not replaced:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    print(f"wrote section {name!r} of {path}")


def run_workflow(configfiles: list[Path], targets: list[str], *, cores: int,
                 rerun_triggers: list[str] | None = None) -> None:
    """``snakemake --cores N --configfile ... -- targets`` with this interpreter's folder
    first on PATH (the rules call ``python``), for the benchmarks that run the workflow.
    ``rerun_triggers``: Snakemake's ``--rerun-triggers`` (``mtime``: reuse what a run made
    before edits that do not change its computation)."""
    snakemake = Path(sys.executable).with_name("snakemake")
    triggers = ["--rerun-triggers", *rerun_triggers] if rerun_triggers else []
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ['PATH']}"}
    subprocess.run([str(snakemake), *triggers, "--cores", str(cores), "--configfile",
                    *map(str, configfiles), "--", *targets], check=True, env=env)


def export_commit(repo: Path, rev: str, folder: Path) -> Path:
    """Commit ``rev``'s files of the git repository ``repo`` (``git archive``: tracked files
    only, no data or results, as a fresh clone has them) extracted under ``folder``, which is
    created; the folder. For the benchmarks that run an older commit beside this one."""
    import io
    import tarfile

    folder.mkdir(parents=True, exist_ok=True)
    data = subprocess.run(["git", "-C", str(repo), "archive", rev], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")
    return folder

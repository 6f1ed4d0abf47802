"""Progress bars that also read well in Snakemake's per-rule log files."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(total: int, desc: str, unit: str = "it") -> tqdm:
    """A tqdm bar on stderr: live in a terminal, one line every 10 s when logged to a file."""
    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=interactive,
                mininterval=0.5 if interactive else 10.0, ascii=not interactive)

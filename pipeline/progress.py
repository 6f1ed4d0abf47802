"""Progress bars that also read well in Snakemake's per-rule log files, and the job's
start-up time (process start to first work) that ``benchmarks/stage_costs.py`` reads."""

from __future__ import annotations

import logging
import sys
import time

import psutil
from tqdm import tqdm

log = logging.getLogger(__name__)

STARTUP = "startup: {seconds:.2f} s from process start to {what}"
"""The log line of :func:`log_startup` (``benchmarks/stage_costs.py`` parses it)."""


def log_startup(what: str) -> float:
    """Log (INFO) and return the seconds since this process started: interpreter, imports
    and model loading, before ``what`` (the first photo, step or subject)."""
    seconds = time.time() - psutil.Process().create_time()
    log.info(STARTUP.format(seconds=seconds, what=what))
    return seconds


def progress(total: int, desc: str, unit: str = "it") -> tqdm:
    """A tqdm bar on stderr: live in a terminal, one line every 10 s when logged to a file.
    Its start is logged as :func:`log_startup`'s ``the first <unit> of <desc>``."""
    log_startup(f"the first {unit} of {desc}")
    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=interactive,
                mininterval=0.5 if interactive else 10.0, ascii=not interactive)

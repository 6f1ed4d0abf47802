"""A real one-node SLURM cluster for tests: install (Debian, as root), start, stop by pid.

Recipe from ../shared/FACTS.md: munge + slurmctld + slurmd with a one-node slurm.conf whose
state, spool, log and pid files all live in a temporary folder. No accounting daemon, so the
Snakemake SLURM plugin is told to ask ``squeue`` (see profiles/slurm/config.yaml).

The conf must sit at the default path ``/etc/slurm/slurm.conf``: the plugin's job step strips
every ``SLURM_*`` variable (``SLURM_CONF`` too) before its nested ``srun``. A conf already there
that this module did not write is never touched: the cluster is then reported unavailable.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by tests/slurm.py (pixel2isdf test cluster)\n"
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here; the message says why."""


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None)


def ensure_installed() -> None:
    """Install the Debian packages when a binary is missing (root and apt-get needed)."""
    if all(_which(b) for b in BINARIES):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("SLURM is not installed and this user is not root")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("SLURM is not installed and apt-get is unavailable")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")


def _memory_mb() -> int:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(pages / 2**20 * 0.8)


CONF = MARKER + """\
ClusterName=pipelinetest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MinJobAge=300
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class Cluster:
    """A running one-node cluster; ``env`` is what client commands need (SLURM_CONF)."""

    root: Path
    env: dict[str, str]
    started_munge: bool

    def squeue_ids(self) -> list[str]:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True,
                             text=True, check=True).stdout
        return out.split()

    def jobs(self) -> str:
        """``scontrol show jobs`` (finished jobs stay listed for MinJobAge = 300 s)."""
        return subprocess.run(["scontrol", "show", "jobs"], env=self.env, capture_output=True,
                              text=True, check=True).stdout

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld"):
            _kill_pidfile(self.root / f"{name}.pid")
        if self.started_munge:
            _kill_pidfile(Path("/run/munge/munged.pid"))
        if SYSTEM_CONF.is_file() and SYSTEM_CONF.read_text().startswith(MARKER):
            SYSTEM_CONF.unlink()


def _kill_pidfile(pidfile: Path, timeout: float = 10.0) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _munge_running() -> bool:
    return subprocess.run(["munge", "-n"], capture_output=True).returncode == 0


def start(root: Path, ctld_port: int = 16817, d_port: int = 16818) -> Cluster:
    """Start munged (unless running), slurmctld and slurmd; wait until the node is idle."""
    ensure_installed()
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (root / sub).mkdir(exist_ok=True)
    conf = SYSTEM_CONF
    if conf.exists() and not conf.read_text().startswith(MARKER):
        raise SlurmUnavailable(f"{conf} exists (a real cluster?): not replacing it for a test")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONF.format(root=root, cpus=os.cpu_count() or 1, mem=_memory_mb(),
                                ctld_port=ctld_port, d_port=d_port))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started_munge = False
    if not _munge_running():
        run = Path("/run/munge")
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", _which("munged")], check=True)
        started_munge = True
    cluster = Cluster(root=root, env=env, started_munge=started_munge)
    try:
        subprocess.run([_which("slurmctld"), "-f", str(conf)], env=env, check=True)
        subprocess.run([_which("slurmd"), "-f", str(conf), "-N", "localhost"], env=env, check=True)
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                   text=True).stdout.strip()
            if state == "idle":
                return cluster
            time.sleep(0.5)
        logs = "".join(p.read_text()[-1500:] for p in root.glob("*.log"))
        raise SlurmUnavailable(f"node not idle after 60 s (state {state!r}):\n{logs}")
    except BaseException:
        cluster.stop()
        raise

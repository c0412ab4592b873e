"""A real single-node SLURM cluster on localhost, for the cluster profile's test.

Debian's ``slurmctld slurmd slurm-client munge`` are installed with apt when missing (needs root). Everything the
cluster writes lives in one private folder: its own munge key and socket, ``slurm.conf`` (found through
``SLURM_CONF``, so a SLURM already configured on the machine is left alone), state, spool, logs and PID files.
The three daemons run in the foreground as children of the test and are stopped by their PIDs.

Inside a job, the executor's jobstep plugin (snakemake-executor-plugin-slurm-jobstep) strips every ``SLURM_*``
variable except the job's identity before it calls ``srun``, ``SLURM_CONF`` included, so ``srun`` only finds the
config at the default path: ``/etc/slurm/slurm.conf`` is linked to ours while the cluster runs (only where no SLURM
is configured on the machine) and the link is removed at the end.

No slurmdbd: ``sacct`` does not work here. The workflow's status checks must use ``squeue``
(``--slurm-status-command squeue``), which sees finished jobs for ``MinJobAge`` seconds; see ``STATUS_ARGS``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "mmpipe"
NODE = "mmpipe1"
# The executor's first status check comes INIT_SECONDS after a submission; squeue must still list a finished job
# when it looks, so MinJobAge is kept well above 3x that (the plugin's own threshold for trusting squeue).
INIT_SECONDS = 5
MIN_JOB_AGE = 3600
STATUS_ARGS = ("--slurm-status-command", "squeue",
               "--slurm-init-seconds-before-status-checks", str(INIT_SECONDS))


class Unavailable(Exception):
    """SLURM cannot be installed or started on this machine (no root, no apt-get): the test skips."""


def _run(cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def ensure_installed() -> None:
    """Install the Debian SLURM and munge packages when their programs are missing."""
    if all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in BINARIES):
        return
    if os.geteuid() != 0:
        raise Unavailable("SLURM is not installed and installing it needs root (the test runs as "
                          f"uid {os.geteuid()})")
    if not shutil.which("apt-get"):
        raise Unavailable("SLURM is not installed and there is no apt-get to install it "
                          f"({' '.join(PACKAGES)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    proc = _run(install, timeout=900, env=env)
    if proc.returncode != 0:  # a fresh machine may have no package lists yet
        upd = _run(["apt-get", "update", "-q"], timeout=600, env=env)
        proc = _run(install, timeout=900, env=env)
        if proc.returncode != 0:
            raise Unavailable(f"apt-get could not install {' '.join(PACKAGES)}:\n{upd.stderr[-1500:]}\n"
                              f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    missing = [b for b in BINARIES if not (shutil.which(b) or Path("/usr/sbin", b).exists())]
    if missing:
        raise Unavailable(f"after installing {' '.join(PACKAGES)}, still missing: {', '.join(missing)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class LocalSlurm:
    """Start with :meth:`start`, stop with :meth:`stop` (idempotent; also after a failed start)."""

    def __init__(self, cpus: int | None = None, real_memory_mb: int | None = None):
        self.cpus = cpus or os.cpu_count() or 1
        # a GiB under the machine's memory, as the notes advise: a job asking for more pends for ever
        self.real_memory_mb = real_memory_mb or max(512, _mem_mb() - 1024)
        self.root = Path(tempfile.mkdtemp(prefix="mmpipe-slurm-"))
        self.root.chmod(0o755)  # munged runs as user munge and must reach its folder
        self.conf = self.root / "slurm.conf"
        self.munge_dir = self.root / "munge"
        self.socket = self.munge_dir / "munge.socket.2"
        self.procs: dict[str, subprocess.Popen] = {}
        self.linked = False
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- set-up -------------------------------------------------------------------------------------------------
    def _write_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        self.munge_dir.mkdir(mode=0o700)
        key = self.munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        for p in (self.munge_dir, key):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        self.munge_dir.chmod(0o755)  # clients (root) connect to the socket inside

    def _write_conf(self) -> None:
        host = socket.gethostname().split(".")[0]
        for d in ("state", "spool", "log"):
            (self.root / d).mkdir()
        r = self.root
        self.conf.write_text(f"""\
ClusterName=mmpipe
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge={MIN_JOB_AGE}
SlurmctldTimeout=60
SlurmdTimeout=120
InactiveLimit=0
KillWait=10
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")

    def _link_default_conf(self) -> None:
        d = DEFAULT_CONF
        if d.is_symlink() and not d.exists() and Path(os.readlink(d)).parent.name.startswith("mmpipe-slurm-"):
            d.unlink()  # left by an earlier run that was killed before it could clean up
        if d.exists() or d.is_symlink():
            raise Unavailable(f"{d} exists: a SLURM is configured on this machine, and jobs can only use the test "
                              "cluster's config at that path (the jobstep plugin drops SLURM_CONF); not touching it")
        d.parent.mkdir(parents=True, exist_ok=True)
        d.symlink_to(self.conf)
        self.linked = True

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        log.close()

    def _wait(self, what: str, ok, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode} while waiting for {what}\n{self.logs()}")
            if ok():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def start(self) -> "LocalSlurm":
        ensure_installed()
        if os.geteuid() != 0:
            raise Unavailable(f"starting munged, slurmctld and slurmd needs root (uid {os.geteuid()})")
        self._write_munge()
        self._write_conf()
        self._link_default_conf()
        m = self.munge_dir
        self._spawn("munged", ["setpriv", "--reuid=munge", "--regid=munge", "--init-groups", _sbin("munged"),
                               "--foreground",
                               f"--socket={self.socket}", f"--key-file={m / 'munge.key'}",
                               f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
                               f"--seed-file={m / 'munged.seed'}"])
        self._wait("the munge socket", self.socket.exists, 30)
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: self.cmd("scontrol", "ping").returncode == 0, 60)
        self._spawn("slurmd", [_sbin("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)])
        self._wait(f"node {NODE} idle in sinfo", self._node_idle, 90)
        return self

    def _node_idle(self) -> bool:
        out = self.cmd("sinfo", "-h", "-N", "-o", "%N %t").stdout.split()
        return out[:2] == [NODE, "idle"]

    # -- use ----------------------------------------------------------------------------------------------------
    def cmd(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        return _run(list(args), timeout=timeout, env=self.env)

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (finished ones for MinJobAge s): id, state, name, comment."""
        out = self.cmd("squeue", "--states=all", "--noheader", "--format=%i|%T|%j|%k").stdout
        return [dict(zip(("id", "state", "name", "comment"), line.split("|", 3)))
                for line in out.splitlines() if line.strip()]

    def logs(self, tail: int = 3000) -> str:
        parts = []
        for p in sorted((self.root / "log").glob("*")) + [self.munge_dir / "munged.log"]:
            if p.is_file():
                parts.append(f"--- {p.name} (tail) ---\n{p.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    # -- tear-down ----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel this cluster's jobs, stop the daemons by PID (TERM, then KILL), remove the folder."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            try:
                self.cmd("scancel", "--full", "--user", pwd.getpwuid(os.geteuid()).pw_name, timeout=15)
                time.sleep(1)
            except (subprocess.SubprocessError, OSError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            pid = p.pid
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.linked and DEFAULT_CONF.is_symlink() and Path(os.readlink(DEFAULT_CONF)) == self.conf:
            DEFAULT_CONF.unlink()
        self.linked = False
        shutil.rmtree(self.root, ignore_errors=True)

"""One live run per results folder: a second run, or a dry run, first says who is working there.

A real run records itself (pid, host, start time, command) in ``.snakemake/mmpipe/run.json`` once it holds
Snakemake's lock (the workflow's ``onstart``), and removes the record when it ends. When the workflow is planned
again in that folder, :func:`check` reads the record. A live run means "wait for it": Snakemake's own advice
(``--unlock`` for its lock, ``--rerun-incomplete`` for its jobs in progress) would let two runs write the same
files. A record whose process is gone means that run was killed: then ``--unlock`` and ``--rerun-incomplete``
are safe, and finished jobs are kept.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence, TextIO

from mmpipe.core.atomic import write_text

RECORD = Path(".snakemake/mmpipe/run.json")


@dataclass(frozen=True)
class Run:
    """A real run of the workflow, as recorded in its folder."""

    pid: int
    host: str
    started: float  # time.time() at the start
    command: str
    proc_start: str | None = None  # the process's start in /proc (tells a reused pid from the run's own)

    def describe(self) -> str:
        day = time.strftime("%Y-%m-%d", time.localtime(self.started))
        clock = time.strftime("%H:%M:%S", time.localtime(self.started))
        when = clock if day == time.strftime("%Y-%m-%d") else f"{day} {clock}"
        host = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"pid {self.pid}{host}, started {when}, `{self.command}`"


def _stat(pid: int) -> list[str] | None:
    """Fields 3 on (state, ...) of ``/proc/<pid>/stat`` (Linux), or None where /proc does not say."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    except (OSError, IndexError):
        return None


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks after boot (field 22), or None where /proc does not say."""
    stat = _stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def _command(argv: Sequence[str]) -> str:
    text = shlex.join(["snakemake", *argv[1:]])
    return text if len(text) <= 200 else f"{text[:100]} ... {text[-95:]}"  # the targets are at the end


def record(path: str | Path = RECORD, argv: Sequence[str] | None = None) -> Run:
    """Record this process as the run working in the folder (atomically); the record goes when it exits."""
    run = Run(os.getpid(), socket.gethostname(), time.time(), _command(sys.argv if argv is None else argv),
              _proc_start(os.getpid()))
    write_text(path, json.dumps(asdict(run)) + "\n")
    atexit.register(release, Path(path).resolve())  # resolved: Snakemake leaves the folder before exiting
    return run


def read(path: str | Path = RECORD) -> Run | None:
    """The recorded run, or None (no record, or one that cannot be read)."""
    try:
        return Run(**json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def release(path: str | Path = RECORD) -> bool:
    """Remove the record if it is this process's own; True if removed."""
    run = read(path)
    if run is None or run.pid != os.getpid() or run.host != socket.gethostname():
        return False
    Path(path).unlink(missing_ok=True)
    return True


def state(run: Run) -> str:
    """``live`` (its process runs on this host), ``gone`` (killed, or ended without removing the record) or
    ``unknown`` (recorded on another host, e.g. a cluster login node sharing the folder)."""
    if run.host != socket.gethostname():
        return "unknown"
    if run.pid == os.getpid():
        return "gone"  # a reused pid: this very process is not that run
    try:
        os.kill(run.pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # alive, another user's
    stat = _stat(run.pid)
    if stat and stat[0] == "Z":
        return "gone"  # killed, not yet reaped by its parent
    start = stat[19] if stat and len(stat) > 19 else None
    if start is not None and run.proc_start is not None and start != run.proc_start:
        return "gone"  # the pid now belongs to another process
    return "live"


def notice(run: Run, dry_run: bool | None = None) -> str:
    """The one-line mmpipe notice for a folder that ``run`` holds or held. ``dry_run``: whether this invocation
    is ``snakemake -n`` (None: not known)."""
    what = state(run)
    if what == "live":
        head = f"mmpipe: another run ({run.describe()}) is working in this folder"
        if dry_run:
            return (f"{head}: the incomplete files Snakemake lists below are that run's jobs in progress, not a "
                    "failure; no --rerun-incomplete needed")
        return (f"{head}; wait for it to finish — do not use --unlock or --rerun-incomplete while it runs (the "
                "incomplete files Snakemake may list are its jobs in progress)")
    if what == "gone":
        return (f"mmpipe: the last run in this folder ({run.describe()}) was killed before it finished and nothing "
                "runs here now: if Snakemake reports a lock or incomplete files below, `snakemake --unlock` and "
                "then your command with --rerun-incomplete are safe (finished jobs are kept)")
    return (f"mmpipe: a run on another host ({run.describe()}) recorded that it works in this folder; if it is "
            "still running, wait for it — do not use --unlock; if it is not, --unlock and --rerun-incomplete are "
            "safe")


def cli_flags(argv: Sequence[str] | None = None) -> tuple[bool | None, bool]:
    """(dry run, --unlock) as Snakemake's own parser reads this command line; (None, False) if it cannot."""
    try:
        from snakemake.cli import get_argument_parser

        args, _ = get_argument_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
        return bool(args.dryrun), bool(args.unlock)
    except (Exception, SystemExit):
        return None, False


def check(path: str | Path = RECORD, argv: Sequence[str] | None = None, out: TextIO | None = None) -> str | None:
    """At planning time: print the notice for another run recorded in this folder (None: there is none).
    ``--unlock`` while that run is live is refused (exits), as it would let two runs write the same files."""
    run = read(path)
    if run is None:
        return None
    dry_run, unlock = cli_flags(argv)
    message = notice(run, dry_run)
    if unlock and state(run) == "live":
        sys.exit(f"{message}\nmmpipe: refusing --unlock (if that process is not a Snakemake run in this folder, "
                 f"remove {path} and unlock again)")
    print(message, file=out or sys.stderr, flush=True)
    if unlock and state(run) == "gone":
        Path(path).unlink(missing_ok=True)  # the user acts on it: the record of the killed run has done its job
    return message

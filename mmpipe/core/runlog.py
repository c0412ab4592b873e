"""Logging for workflow jobs: everything to the job's log file, errors also to the console; and a failed run's
console kept short (:func:`hide_restore_warnings`), ending with the mmpipe errors (:func:`print_errors`, which the
workflow's ``onerror`` runs :func:`at_exit`, after Snakemake's closing lines)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterator

from mmpipe.core.errors import MmpipeError


@contextlib.contextmanager
def job_log(path: str | Path | None) -> Iterator[logging.Logger]:
    """Send logging and stderr (progress bars) to ``path``; a failure is also shown on the console."""
    console = sys.stderr
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        yield logging.getLogger("mmpipe")
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    error_file = error_path(path)
    error_file.unlink(missing_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        sys.stderr = fh
        try:
            yield logging.getLogger("mmpipe")
        except MmpipeError as exc:  # the user's to fix: the message on the console, the traceback in the log
            logging.getLogger("mmpipe").exception("%s", exc)
            print(f"mmpipe error: {exc}", file=console)
            error_file.write_text(f"{exc}\n", encoding="utf-8")  # repeated at the end of the run (print_errors)
            raise SystemExit(1) from None
        except Exception:
            logging.getLogger("mmpipe").exception("job failed")
            raise
        finally:
            sys.stderr = console
            root.removeHandler(handler)


def error_path(log_path: str | Path) -> Path:
    """Where a job that failed on bad input leaves its one-line error, beside its log."""
    return Path(log_path).with_suffix(".error")


def print_errors(logs_dir: str | Path, since: float, limit: int = 5) -> None:
    """Print the errors that jobs of this run left (``job_log``), last on the console: ``mmpipe: ...``."""
    found = sorted((p for p in Path(logs_dir).rglob("*.error") if p.stat().st_mtime >= since),
                   key=lambda p: p.stat().st_mtime)
    for p in found[:limit]:
        text = p.read_text(encoding="utf-8").strip()
        lines = text.splitlines()
        print(f"mmpipe: {lines[0]}" + ("".join(f"\n  {line.strip()}" for line in lines[1:8])
                                       + (f"\n  ... ({len(lines) - 8} more lines in {p})" if len(lines) > 8 else "")),
              file=sys.stderr)
    if len(found) > limit:
        print(f"mmpipe: ... and {len(found) - limit} more failed job(s); see their logs", file=sys.stderr)


class _NoBackupFilter(logging.Filter):
    """Drops Snakemake's "Cannot restore <file>: no backup found." (see :func:`hide_restore_warnings`)."""

    PATTERN = re.compile(r"Cannot restore .*: no backup found\.$", re.DOTALL)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and self.PATTERN.match(record.msg))


def hide_restore_warnings() -> None:
    """Hide Snakemake's "Cannot restore ...: no backup found." lines (main process, at planning time).

    When a job with ``update()`` outputs fails, Snakemake restores the copy of each output that it took before the
    job ran; an output that did not exist then (a first build: the manifest's shard slices, a new feature shard)
    has no copy, and Snakemake says so once per file, although there is nothing to restore and the failed job's
    partial files are removed as usual. A real restore ("Restored previous version of ...") is still shown."""
    from snakemake.logging import logger

    if not any(isinstance(f, _NoBackupFilter) for f in logger.filters):
        logger.addFilter(_NoBackupFilter())



def at_exit(func: Callable[[], object]) -> None:
    """Run ``func`` when the process exits, in the folder that is current now: Snakemake has gone back to the
    folder it started in by then. The workflow's ``onerror`` prints the mmpipe errors so, after Snakemake's
    closing lines (log path, elapsed time, "At least one job did not complete successfully")."""
    folder = os.getcwd()

    def run() -> None:
        back = os.getcwd()
        os.chdir(folder)
        try:
            func()
        finally:
            os.chdir(back)

    atexit.register(run)

"""One live run per results folder (mmpipe.core.liverun), the quiet failure console (mmpipe.core.runlog), and a
real second run, dry run and ``--unlock`` in a folder where a run is working."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmpipe.core import liverun, runlog


@pytest.fixture
def sleeper():
    """A live process that is not this one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def as_run(proc: subprocess.Popen, started: float | None = None, **changes) -> liverun.Run:
    fields = dict(pid=proc.pid, host=socket.gethostname(), started=time.time() if started is None else started,
                  command="snakemake --cores 2 all", proc_start=liverun._proc_start(proc.pid))
    return liverun.Run(**{**fields, **changes})


def write(path: Path, run: liverun.Run) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run.__dict__))
    return path


def test_record_read_release(tmp_path):
    path = tmp_path / ".snakemake" / "mmpipe" / "run.json"
    run = liverun.record(path, argv=["/venv/bin/snakemake", "--cores", "2", "all", "--config", "data=my set"])
    assert liverun.read(path) == run and run.pid == os.getpid()
    assert run.command == "snakemake --cores 2 all --config 'data=my set'"
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # written atomically: no temp file left
    other = tmp_path / "other.json"
    write(other, liverun.Run(1, run.host, run.started, run.command))
    assert not liverun.release(other) and other.exists()  # another process's record stays
    assert liverun.release(path) and not path.exists()
    assert liverun.read(path) is None and not liverun.release(path)
    path.write_text("{not json")
    assert liverun.read(path) is None


def test_state_tells_live_from_gone(sleeper):
    assert liverun.state(as_run(sleeper)) == "live"
    assert liverun.state(as_run(sleeper, proc_start="1")) == "gone"  # the pid was reused by another process
    assert liverun.state(as_run(sleeper, host="elsewhere")) == "unknown"
    assert liverun.state(as_run(sleeper, pid=os.getpid())) == "gone"
    os.kill(sleeper.pid, signal.SIGKILL)
    for _ in range(100):  # killed, not reaped: a zombie
        if liverun.state(as_run(sleeper)) == "gone":
            break
        time.sleep(0.02)
    assert liverun.state(as_run(sleeper)) == "gone"
    sleeper.wait()
    assert liverun.state(as_run(sleeper)) == "gone"


def test_notices(sleeper):
    run = as_run(sleeper, started=time.mktime((2026, 1, 2, 10, 2, 11, 0, 0, -1)))
    live = liverun.notice(run, dry_run=False)
    assert live == (f"mmpipe: another run (pid {sleeper.pid}, started 2026-01-02 10:02:11, `snakemake --cores 2 "
                    "all`) is working in this folder; wait for it to finish — do not use --unlock or "
                    "--rerun-incomplete while it runs (the incomplete files Snakemake may list are its jobs in "
                    "progress)")
    assert liverun.notice(run, dry_run=None) == live
    dry = liverun.notice(as_run(sleeper), dry_run=True)
    assert re.fullmatch(r"mmpipe: another run \(pid \d+, started \d\d:\d\d:\d\d, `snakemake --cores 2 all`\) is "
                        r"working in this folder: the incomplete files Snakemake lists below are that run's jobs in "
                        r"progress, not a failure; no --rerun-incomplete needed", dry), dry
    gone = liverun.notice(as_run(sleeper, proc_start="1"))
    assert "was killed before it finished" in gone and "`snakemake --unlock`" in gone and "--rerun-incomplete" in gone
    elsewhere = liverun.notice(as_run(sleeper, host="login2"))
    assert "on login2" in elsewhere and "if it is still running, wait for it" in elsewhere


def test_cli_flags():
    assert liverun.cli_flags(["--cores", "2", "all", "-np"]) == (True, False)
    assert liverun.cli_flags(["-s", "Snakefile", "--dry-run", "predictions"]) == (True, False)
    assert liverun.cli_flags(["--cores", "2", "--configfile", "c.yaml", "all"]) == (False, False)
    assert liverun.cli_flags(["--unlock"]) == (False, True)


def test_check(tmp_path, sleeper):
    path = tmp_path / "run.json"
    assert liverun.check(path, argv=["-n"]) is None  # no record: nothing said
    write(path, as_run(sleeper))
    out = io.StringIO()
    message = liverun.check(path, argv=["-n", "all"], out=out)
    assert out.getvalue() == message + "\n" and "jobs in progress, not a failure" in message
    with pytest.raises(SystemExit) as refused:  # --unlock while that run is live
        liverun.check(path, argv=["--unlock"], out=out)
    assert "refusing --unlock" in str(refused.value) and path.exists()
    write(path, as_run(sleeper, proc_start="1"))  # a killed run's record
    assert "was killed" in liverun.check(path, argv=["--cores", "2", "all"], out=out) and path.exists()
    liverun.check(path, argv=["--unlock"], out=out)
    assert not path.exists()  # unlocking after a kill clears the record too


def test_restore_warnings_are_hidden(caplog):
    from snakemake.logging import logger

    runlog.hide_restore_warnings()
    runlog.hide_restore_warnings()  # once is enough
    assert sum(isinstance(f, runlog._NoBackupFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("Cannot restore results/lab/shards/000.parquet: no backup found.")
        logger.warning("Restored previous version of results/lab/features/text/000.parquet (updating job failed).")
    assert [r.getMessage()[:8] for r in caplog.records] == ["Restored"]


def test_at_exit_runs_in_the_folder_current_at_registration(tmp_path):
    code = ("import os; from mmpipe.core.runlog import at_exit; os.chdir(os.environ['W']); "
            "at_exit(lambda: print('at exit in', os.getcwd())); os.chdir('/'); print('last line of the run')")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "W": str(tmp_path)}, capture_output=True,
                         text=True, check=True).stdout
    assert out == f"last line of the run\nat exit in {tmp_path}\n"


def test_second_run_dry_run_and_unlock_during_a_live_run(tmp_path):
    """A real run in the background (about 10 s here); meanwhile a second run, a dry run and --unlock in its
    folder are told who works there (before Snakemake's own advice), and --unlock is refused; the run's own jobs,
    which parse the Snakefile again, say nothing. After a kill -9, --unlock is safe."""
    from workflow import snakemake, tiny_config

    from test_faults import CONFIG, start

    tiny_config(tmp_path, "demo", **CONFIG)
    live = start(tmp_path, "all")
    try:
        record = tmp_path / liverun.RECORD
        deadline = time.time() + 120
        while not record.exists():
            assert live.poll() is None and time.time() < deadline, live.console.read_text()[-3000:]
            time.sleep(0.05)
        run = liverun.read(record)
        assert run.pid == live.pid and run.command.endswith("--workflow-profile none all")
        head = (rf"mmpipe: another run \(pid {live.pid}, started \d\d:\d\d:\d\d, `snakemake .* all`\) is working "
                "in this folder")

        second = snakemake(tmp_path, "all", check=False)
        assert second.returncode != 0
        assert re.search(head + "; wait for it to finish — do not use --unlock", second.stderr), second.stderr
        refusal = re.search(r"LockException|IncompleteFilesException", second.stderr)
        assert refusal and second.stderr.index("mmpipe: another run") < refusal.start(), second.stderr

        dry = snakemake(tmp_path, "all", "-n", check=False)
        assert re.search(head + ": the incomplete files Snakemake lists below are that run's jobs in progress, not "
                         "a failure; no --rerun-incomplete needed", dry.stderr), dry.stderr
        if "IncompleteFilesException" in dry.stderr:  # a job of the live run was in progress then
            assert dry.stderr.index("mmpipe: another run") < dry.stderr.index("IncompleteFilesException")

        unlock = snakemake(tmp_path, "--unlock", check=False)
        assert unlock.returncode != 0 and "mmpipe: refusing --unlock" in unlock.stderr
        assert live.poll() is None and (tmp_path / ".snakemake" / "locks").is_dir() and any(
            (tmp_path / ".snakemake" / "locks").iterdir())  # the live run keeps its lock
    finally:
        os.killpg(live.pid, signal.SIGKILL)
        live.wait()
    assert "mmpipe: another run" not in live.console.read_text()  # not from the live run's own job processes
    unlock = snakemake(tmp_path, "--unlock")
    assert f"mmpipe: the last run in this folder (pid {live.pid}," in unlock.stderr
    assert "was killed before it finished" in unlock.stderr and not record.exists()

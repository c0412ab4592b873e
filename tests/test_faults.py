"""kill -9 of the whole Snakemake process group during extraction and during stage 2, then the resume a user
runs (``snakemake --unlock``, then the command with ``--rerun-incomplete``): only the jobs that had not finished
rerun, finished outputs keep their bytes and mtimes, and the results equal an uninterrupted run's."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from mmpipe.core.shards import read_shards
from workflow import TARGET_RULES, planned_jobs, snakemake, tiny_config

pytestmark = pytest.mark.slow

# A tiny demo: 2 shards of 2 encoders, 2 heads on text+image, 1 seed, 2 folds: 17 jobs.
CONFIG = dict(shards=2, demo={"n": 90, "seed": 0}, selection={"folds": 2, "repeats": 1}, training={"seeds": [0]},
              heads={"logreg": {}, "concat_mlp": {"max_epochs": 5, "patience": 2}},
              ablations={"modalities": [["text", "image"]]})
Job = tuple[str, tuple[tuple[str, str], ...]]  # rule, sorted wildcards


def start(work: Path, *args: str) -> subprocess.Popen:
    """``snakemake`` as :func:`workflow.snakemake` runs it, in the background, in a session (process group) of its
    own; the console goes to ``work/console-<n>.txt``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", "2", "--workflow-profile", "none", *args]
    path = work / f"console-{len(list(work.glob('console-*.txt')))}.txt"
    with path.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    proc.console = path  # type: ignore[attr-defined]
    return proc


def console(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """A background run's console, in the form :func:`workflow.planned_jobs` reads."""
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.console.read_text(), "")


def job_outputs(proc: subprocess.CompletedProcess) -> dict[Job, list[str]]:
    """Every job of a run (target-only rules aside) and its outputs, from the console's job blocks."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) )", proc.stdout + proc.stderr):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if head and head.group(1) not in TARGET_RULES:
            out = re.search(r"\n\s+output: (.*)", block)
            outs = out.group(1).split(", ") if out else []
            jobs[key(head.group(1), block)] = [re.sub(r" \(\w+\)$", "", o) for o in outs]  # " (update)" aside
    return jobs


def key(rule: str, block: str) -> Job:
    wc = re.search(r"wildcards: (.*)", block)
    return rule, tuple(sorted(tuple(kv.split("=", 1)) for kv in wc.group(1).split(", "))) if wc else ()


def ran(proc: subprocess.CompletedProcess) -> set[Job]:
    return {(rule, tuple(sorted(wc.items()))) for rule, wc in planned_jobs(proc)}


def incomplete(work: Path) -> set[str]:
    """The outputs that Snakemake marks incomplete (jobs started, not finished): ``.snakemake/incomplete`` holds
    one file per output, named by its path in URL-safe base64 (split into ``@``-prefixed folders when long)."""
    marks = set()
    for p in (work / ".snakemake" / "incomplete").rglob("*"):
        if p.is_file() and p.name != "migration_underway":
            b64 = "".join(part.lstrip("@") for part in p.relative_to(work / ".snakemake" / "incomplete").parts)
            marks.add(base64.urlsafe_b64decode(b64).decode())
    return marks


def finished(work: Path, jobs: dict[Job, list[str]]) -> set[Job]:
    """The jobs whose outputs all exist and none is marked incomplete."""
    marks = incomplete(work)
    return {job for job, outs in jobs.items() if all((work / o).exists() and o not in marks for o in outs)}


def snapshot(work: Path, jobs: dict[Job, list[str]], which: set[Job]) -> dict[str, tuple[int, str]]:
    """mtime and sha256 of every file that the jobs ``which`` wrote (folders walked)."""
    files = {}
    for job in which:
        for out in jobs[job]:
            path = work / out
            for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
                files[str(f.relative_to(work))] = (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
    return files


def kill_when(proc: subprocess.Popen, work: Path, jobs: dict[Job, list[str]], rule: str,
              timeout: float = 240) -> set[Job]:
    """kill -9 the run's whole process group as soon as a job of ``rule`` has finished; the finished jobs then."""
    deadline = time.time() + timeout
    while not any(job[0] == rule for job in finished(work, jobs)):
        assert proc.poll() is None, f"the run ended before a {rule} job finished:\n{console(proc).stdout[-3000:]}"
        assert time.time() < deadline, f"no {rule} job finished within {timeout} s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return finished(work, jobs)


def unlock(work: Path) -> None:
    """What a user does after a kill: the notice names the killed run and says unlocking is safe."""
    proc = snakemake(work, "--unlock")
    assert re.search(r"mmpipe: the last run in this folder \(pid \d+, .*\) was killed before it finished",
                     proc.stderr), proc.stderr[-2000:]


def without_times(obj):
    """A metrics record without its timing and cost-of-running fields (fit seconds, peak memory, latency)."""
    if isinstance(obj, dict):
        return {k: without_times(v) for k, v in obj.items() if not re.search(r"second|_ms|rss|elapsed|wall", k)}
    if isinstance(obj, list):
        return [without_times(v) for v in obj]
    return obj


def results(work: Path) -> dict[str, object]:
    """What the two runs must agree on: predictions, feature vectors, ablation metrics (times aside)."""
    res = work / "results" / "demo"
    out: dict[str, object] = {"predictions.txt": (res / "predictions.txt").read_bytes()}
    for shard in sorted((res / "features").glob("*/*.parquet")):
        guids, X, _ = read_shards([shard])
        out[str(shard.relative_to(res))] = (guids, X.tobytes())
    for metrics in sorted((res / "ablations").glob("*/metrics.json")):
        out[str(metrics.relative_to(res))] = without_times(json.loads(metrics.read_text()))
    return out


def test_kill_during_extraction_and_stage2_then_resume(tmp_path):
    ref, work = tmp_path / "ref", tmp_path / "work"
    for w in (ref, work):
        w.mkdir()
        tiny_config(w, "demo", **CONFIG)

    reference = snakemake(ref, "all")  # the uninterrupted run, in another folder
    jobs = job_outputs(reference)
    assert sum(rule == "extract" for rule, _ in jobs) == 4 and sum(rule == "ablation" for rule, _ in jobs) == 2
    # (a) kill -9 once an extraction job has finished
    done_a = kill_when(start(work, "all"), work, jobs, "extract")
    assert {r for r, _ in set(jobs) - done_a} >= {"extract", "ablation"}  # killed mid-extraction
    kept_a = snapshot(work, jobs, done_a)
    unlock(work)

    # (b) the resume, killed once an ablation job (stage 2) has finished: it ran none of the finished jobs
    second = start(work, "all", "--rerun-incomplete")
    done_b = kill_when(second, work, jobs, "ablation")
    assert ran(console(second)) <= set(jobs) - done_a
    assert any(rule == "ablation" for rule, _ in set(jobs) - done_b)  # killed mid-stage 2
    assert snapshot(work, jobs, done_a) == kept_a
    kept_b = snapshot(work, jobs, done_b)
    unlock(work)

    # the final resume runs exactly the unfinished jobs, keeps every finished output, and matches the reference
    last = snakemake(work, "all", "--rerun-incomplete")
    assert ran(last) == set(jobs) - done_b
    assert snapshot(work, jobs, done_b) == kept_b
    assert finished(work, jobs) == set(jobs)
    got, want = results(work), results(ref)
    assert got.keys() == want.keys() and len(want) == 1 + 4 + 2
    for name in want:
        assert got[name] == want[name], name

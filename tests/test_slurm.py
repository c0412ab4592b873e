"""The SLURM profile on a real single-node SLURM on localhost: the demo workflow up to `predictions` runs through
``--profile profiles/slurm``, one SLURM job per feature shard and encoder, and gives the same feature vectors and
the same predictions.txt as a local run.

Runs alone: ``python -m pytest -m slurm`` (the default ``-m 'not slurm'`` in pyproject leaves it out). Needs root
and apt-get (or SLURM and munge already installed); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import REPO
from slurm_cluster import PARTITION, STATUS_ARGS, LocalSlurm, Unavailable
from workflow import snakemake, tiny_config, write_config

pytestmark = pytest.mark.slurm

SHARDS = 2
ENCODERS = ("text", "image")
# Expected SLURM jobs for `predictions`: text+image x the tiny config's 2 heads (logreg, concat_mlp) = 2 ablations.
EXPECTED = {"demo_data": 1, "manifest": 1, "folds": 1, "extract": SHARDS * len(ENCODERS), "ablation": 2, "summary": 1,
            "model": 1, "predict": 1}
RUN_LIMIT_S = 600  # the SLURM run, under `timeout -k 10`; measured here: well under 3 minutes


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def cluster():
    """munged + slurmctld + slurmd on localhost, stopped by PID at the end, also when the test fails or CI's
    `timeout` sends SIGTERM (turned into KeyboardInterrupt so the finaliser runs)."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    slurm = LocalSlurm()
    try:
        t0 = time.monotonic()
        try:
            slurm.start()  # installs the packages first where they are missing
        except Unavailable as e:
            pytest.skip(f"no local SLURM cluster: {e}")
        slurm.ready_s = time.monotonic() - t0
        yield slurm
    finally:
        slurm.stop()
        signal.signal(signal.SIGTERM, previous)


def run_on_slurm(work: Path, slurm: LocalSlurm, *targets: str) -> str:
    """``snakemake --profile profiles/slurm`` under ``timeout -k``; returns its output, fails loudly on a hang."""
    cmd = ["timeout", "-k", "10", str(RUN_LIMIT_S),
           sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
           "--configfile", str(work / "config.yaml"), "--profile", str(REPO / "profiles" / "slurm"), "--workflow-profile", "none",
           # test-only overrides: this cluster's partition, squeue for job status (no slurmdbd),
           # no retries (a failure should show at once) and every sbatch log kept for the failure message
           "--default-resources", f"slurm_partition={PARTITION}", "mem_mb=1000", "runtime=30",
           *STATUS_ARGS, "--retries", "0", "--slurm-keep-successful-logs", *targets]
    env = {**slurm.env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = work / "snakemake-slurm.out"
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(RUN_LIMIT_S + 30)
        except BaseException:  # KeyboardInterrupt from SIGTERM, or `timeout` itself hanging
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    text = log.read_text(errors="replace")
    if rc != 0:
        # `timeout -k` ends with 124 (TERM was enough) or 137; it dies of the KILL it sends its own group (-9)
        what = (f"HUNG: killed by timeout after {RUN_LIMIT_S} s" if rc in (124, 137, -signal.SIGKILL)
                else f"failed with exit code {rc} after {time.monotonic() - started:.0f} s")
        slurm_logs = "\n".join(f"--- {p.relative_to(work)} ---\n{p.read_text(errors='replace')[-1500:]}"
                               for p in sorted((work / "logs" / "slurm").rglob("*.log"))[-6:])
        rule_logs = sorted((p for p in (work / "logs").rglob("*.log") if "slurm" not in p.parts),
                           key=lambda p: p.stat().st_mtime)[-3:]
        slurm_logs += "".join(f"\n--- {p.relative_to(work)} ---\n{p.read_text(errors='replace')[-1500:]}"
                              for p in rule_logs)
        jobs = "\n".join(f"{j['id']} {j['state']} {j['comment']}" for j in slurm.jobs())
        pytest.fail(f"snakemake --profile profiles/slurm {' '.join(targets)} {what}\n"
                    f"=== snakemake output (tail) ===\n{text[-6000:]}\n=== squeue ===\n{jobs}\n"
                    f"=== sbatch and rule logs (tail) ===\n{slurm_logs}\n=== daemons ===\n{slurm.logs()}",
                    pytrace=False)
    return text


def vectors(path: Path) -> dict[str, np.ndarray]:
    frame = pl.read_parquet(path)
    return {g: np.asarray(v, dtype=np.float32) for g, v in zip(frame["guid"], frame["vector"].to_list())}


def test_slurm_profile_matches_local_run(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    local.mkdir()
    remote.mkdir()
    # One thread and 1 GB per job: two jobs share this 2-core node at a time; the same settings locally.
    small = {"threads": 1, "mem_mb": 1000}
    # predictions from the neural head (seeded torch training in each job), not the trivially stable logreg
    config = tiny_config(local, "demo", shards=SHARDS, demo={"n": 60, "seed": 0},
                         ablations={"modalities": [list(ENCODERS)]}, predict={"select": "text+image__concat_mlp"},
                         resources={r: small for r in EXPECTED})
    write_config(remote, config)  # the same tiny models (under local/models) and settings

    t0 = time.monotonic()
    snakemake(local, "predictions")
    t_local = time.monotonic() - t0

    t0 = time.monotonic()
    out = run_on_slurm(remote, cluster, "predictions")
    t_slurm = time.monotonic() - t0

    # --- one SLURM job per feature shard and encoder, one per ablation, and no job for the target rules ---
    jobs = cluster.jobs()
    comments = Counter(j["comment"] for j in jobs)
    assert all(j["state"] == "COMPLETED" for j in jobs), jobs
    per_rule = Counter(c.removeprefix("rule_").split("_wildcards_")[0] for c in comments.elements())
    for encoder in ENCODERS:
        for shard in range(SHARDS):
            assert comments[f"rule_extract_wildcards_{encoder}_{shard:03d}"] == 1, comments
    assert dict(per_rule) == EXPECTED, per_rule
    submitted = [line for line in out.splitlines() if "has been submitted with SLURM jobid" in line]
    assert len(submitted) == sum(EXPECTED.values()), submitted

    # --- identical outputs ---
    features = sorted((local / "results/demo/features").glob("*/*.parquet"))
    assert len(features) == SHARDS * len(ENCODERS)
    for path in features:
        rel = path.relative_to(local)
        mine, theirs = vectors(path), vectors(remote / rel)
        assert mine.keys() == theirs.keys(), rel
        for guid in mine:
            assert np.array_equal(mine[guid], theirs[guid]), f"{rel}: guid {guid} differs"
    pred = "results/demo/predictions.txt"
    assert (local / pred).read_bytes() == (remote / pred).read_bytes()
    # every ablation's validation metrics (both heads, every seed) came out the same too
    summary = [json.loads((w / "results/demo/summary.json").read_text()) for w in (local, remote)]
    for s in summary:  # what a fit cost (seconds, memory) is the machine's, not the result's
        for e in s["ablations"]:
            assert e.pop("cost")["parameters"] > 0
    assert summary[0] == summary[1]
    assert summary[0]["selected"] == "text+image__concat_mlp"

    print(f"\ncluster ready in {cluster.ready_s:.0f} s, local run {t_local:.0f} s, SLURM run {t_slurm:.0f} s; "
          "SLURM jobs per rule: "
          + ", ".join(f"{r}={n}" for r, n in sorted(per_rule.items()))
          + "\n" + "\n".join(f"  {j['id']:>4} {j['state']} {j['comment']}" for j in jobs))

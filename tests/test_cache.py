"""Stage 1 cache behaviour, on real Snakemake runs over a generated lab-layout set of 200 samples in 2 shards."""

from __future__ import annotations

import re
import shutil

import numpy as np
import polars as pl
import pytest

from mmpipe.core.shards import read_shards
from mmpipe.ingest.demo import make_demo
from mmpipe.ingest.split import shard_of
from workflow import count, planned_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A workdir whose features were extracted once."""
    work = tmp_path_factory.mktemp("cache")
    make_demo(work / "mydata", n=200, seed=3)
    tiny_config(work, "mydata", shards=2)
    proc = snakemake(work, "features")
    jobs = planned_jobs(proc)
    assert count(jobs, "extract") == 4 and count(jobs, "manifest") == 1
    return work


@pytest.fixture
def work(built, tmp_path):
    """A private copy of the built workdir (mtimes and Snakemake metadata kept)."""
    dst = tmp_path / "w"
    shutil.copytree(built, dst, symlinks=True)
    return dst


def test_second_run_has_nothing_to_do(work):
    proc = snakemake(work, "features")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert planned_jobs(proc) == []


def test_stage2_setting_plans_no_extraction(work):
    import yaml

    config = yaml.safe_load((work / "config.yaml").read_text())
    config["heads"]["concat_mlp"]["hidden"] = 77
    config["training"]["seeds"] = [5]
    write_config(work, config)
    assert planned_jobs(snakemake(work, "features", "-n")) == []
    jobs = planned_jobs(snakemake(work, "predictions", "-n"))
    assert count(jobs, "extract") == 0 and count(jobs, "manifest") == 0
    assert count(jobs, "ablation") > 0


def listed(work) -> set[str]:
    return {g for f in ("train.txt", "test_without_label.txt")
            for g in pl.read_csv(work / "mydata" / f, schema_overrides={"guid": pl.String})["guid"]}


def features(work, encoder: str) -> dict[str, np.ndarray]:
    guids, X, _ = read_shards(sorted((work / "results/mydata/features" / encoder).glob("*.parquet")))
    return dict(zip(guids, X))


def clear_logs(work) -> None:
    for log in (work / "logs/mydata/extract").rglob("*.log"):
        log.unlink()


def encoded_reused(work, encoder: str) -> tuple[int, int]:
    """The "encoded N, reused M" counts of the extraction jobs that ran since ``clear_logs``, summed."""
    counts = [tuple(map(int, m.groups())) for log in (work / "logs/mydata/extract" / encoder).glob("*.log")
              for m in re.finditer(r"encoded (\d+), reused (\d+)", log.read_text())]
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def test_new_samples_cost_only_themselves(work):
    """Add 3 samples, then 1% more: only they are encoded; kept vectors keep their bytes, and every vector matches
    a from-scratch extraction of the grown set."""
    before = {enc: features(work, enc) for enc in ("text", "image")}
    for n, added in ((203, 3), (205, 2)):  # 3 samples, then 1% of 200
        old = listed(work)
        clear_logs(work)
        make_demo(work / "mydata", n=n, seed=3)
        new_guids = listed(work) - old
        assert len(new_guids) == added
        jobs = planned_jobs(snakemake(work, "features"))
        expected = {f"{shard_of(g, 2):03d}" for g in new_guids}
        for enc in ("text", "image"):
            assert {wc["shard"] for r, wc in jobs if r == "extract" and wc["encoder"] == enc} == expected
            assert encoded_reused(work, enc)[0] == added  # the job logs: "encoded N, reused M"
            after = features(work, enc)
            assert set(after) == listed(work)
            for g, v in before[enc].items():
                assert after[g].tobytes() == v.tobytes(), g
    # the same grown set from scratch: the new vectors agree to 1e-5
    fresh = work.parent / "fresh"
    shutil.copytree(work / "mydata", fresh / "mydata")
    shutil.copytree(work / "models", fresh / "models")
    shutil.copy(work / "config.yaml", fresh / "config.yaml")
    snakemake(fresh, "features")
    for enc in ("text", "image"):
        grown, scratch = features(work, enc), features(fresh, enc)
        assert set(grown) == set(scratch)
        assert max(float(np.abs(grown[g] - scratch[g]).max()) for g in grown) < 1e-5


def test_changed_and_removed_samples(work):
    """A changed text is re-encoded (and seen by planning, though raw files are not rule inputs); a sample taken
    off its list disappears from the features."""
    train = work / "mydata" / "train.txt"
    lines = train.read_text().splitlines(keepends=True)
    changed, removed = (line.split(",")[0] for line in lines[1:3])
    (work / "mydata" / "data" / f"{changed}.txt").write_text("a completely different tweet", encoding="utf-8")
    train.write_text("".join(line for line in lines if not line.startswith(f"{removed},")))
    plan = planned_jobs(snakemake(work, "features", "-n"))
    assert count(plan, "manifest") == 1
    before = features(work, "text")
    clear_logs(work)
    snakemake(work, "features")
    after = features(work, "text")
    assert removed not in after and set(after) == set(before) - {removed}
    assert after[changed].tobytes() != before[changed].tobytes()
    assert all(after[g].tobytes() == before[g].tobytes() for g in after if g != changed)
    assert encoded_reused(work, "text")[0] == 1


def test_text_max_length_reruns_only_text_extraction(work):
    import yaml

    config = yaml.safe_load((work / "config.yaml").read_text())
    config["encoders"]["text"]["max_length"] = 16
    write_config(work, config)
    jobs = planned_jobs(snakemake(work, "features", "-n"))
    assert count(jobs, "extract", encoder="text") == 2
    assert count(jobs, "extract", encoder="image") == 0 and count(jobs, "manifest") == 0


def test_deleted_shard_is_rebuilt_alone(work):
    victim = work / "results/mydata/features/image/001.parquet"
    others = {p: p.stat().st_mtime_ns for p in (work / "results/mydata/features").rglob("*.parquet") if p != victim}
    victim.unlink()
    jobs = planned_jobs(snakemake(work, "features"))
    assert jobs == [("extract", {"encoder": "image", "shard": "001"})]
    assert victim.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in others.items())


def test_truncated_shard_is_detected_and_rebuilt_alone(work):
    victim = work / "results/mydata/features/text/001.parquet"
    good = victim.read_bytes()
    others = {p: p.read_bytes() for p in (work / "results/mydata/features").rglob("*.parquet") if p != victim}
    victim.write_bytes(good[: len(good) // 2])  # e.g. a copy cut short by a full disk
    proc = snakemake(work, "features")
    assert f"{victim.relative_to(work)} was unreadable" in proc.stderr
    assert planned_jobs(proc) == [("extract", {"encoder": "text", "shard": "001"})]
    assert victim.read_bytes() == good  # rebuilt to the same bytes
    assert all(p.read_bytes() == b for p, b in others.items())

"""Stage 1 cache behaviour, on real Snakemake runs over a generated lab-layout set of 200 samples in 2 shards."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

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


def test_new_samples_rerun_only_their_shards(work):
    def listed() -> set[str]:
        return {g for f in ("train.txt", "test_without_label.txt")
                for g in pl.read_csv(work / "mydata" / f, schema_overrides={"guid": pl.String})["guid"]}

    before = {p: p.stat().st_mtime_ns for p in (work / "results/mydata/features").rglob("*.parquet")}
    old = listed()
    make_demo(work / "mydata", n=203, seed=3)
    new_guids = listed() - old
    assert len(new_guids) == 3 and old <= listed()
    jobs = planned_jobs(snakemake(work, "features"))
    expected = {f"{shard_of(g, 2):03d}" for g in new_guids}
    for encoder in ("text", "image"):
        ran = {wc["shard"] for r, wc in jobs if r == "extract" and wc["encoder"] == encoder}
        assert ran == expected and len(ran) <= 2
    after = {p: p.stat().st_mtime_ns for p in before}
    changed = {p.stem for p, t in after.items() if t != before[p]}
    assert changed == expected
    feats = pl.concat([pl.read_parquet(p) for p in (work / "results/mydata/features/text").glob("*.parquet")])
    assert new_guids <= set(feats["guid"]) and feats.height == len(old) + 3


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

"""End to end: the default config on the generated demo set, offline, up to predictions."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
import yaml

from conftest import REPO
from mmpipe.core.shards import read_meta
from workflow import count, planned_jobs, snakemake, tiny_config, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The repo's own config.yaml (real offline encoders, every head) on the demo set, in 2 shards to save time."""
    work = tmp_path_factory.mktemp("demo")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    write_config(work, {**config, "shards": 2})
    snakemake(work, "predictions", "decode_report")
    return work


def test_demo_reaches_predictions_offline(demo):
    res = demo / "results" / "demo"
    test_list = pl.read_csv(res / "source" / "test_without_label.txt", schema_overrides={"guid": pl.String})
    pred = pl.read_csv(res / "predictions.txt", schema_overrides={"guid": pl.String})
    assert pred.columns == ["guid", "tag"]
    assert pred["guid"].to_list() == test_list["guid"].to_list()
    classes = yaml.safe_load((REPO / "config.yaml").read_text())["labels"]["classes"]
    assert set(pred["tag"]) <= set(classes)
    probs = pl.read_parquet(res / "predictions.parquet")
    assert probs["guid"].to_list() == pred["guid"].to_list()
    p = probs.select([f"p_{c}" for c in classes]).to_numpy()
    assert abs(p.sum(axis=1) - 1).max() < 1e-5
    # the tag is the most probable class
    assert [classes[i] for i in p.argmax(axis=1)] == probs["tag"].to_list()


def test_demo_features_and_reports(demo):
    res = demo / "results" / "demo"
    assert read_meta(next((res / "features" / "text").glob("*.parquet")))["dim"] == 384
    assert read_meta(next((res / "features" / "image").glob("*.parquet")))["dim"] == 1280
    summary = json.loads((res / "summary.json").read_text())
    names = {a["name"] for a in summary["ablations"]}
    assert len(names) == 3 * 9  # text, image, text+image x every head
    for name in names:
        assert (res / "ablations" / name / "report.md").stat().st_size > 0
        assert (res / "ablations" / name / "confusion.png").exists()
    assert summary["selected"] in names
    decode = json.loads((res / "reports" / "decode.json").read_text())
    assert len(decode["encodings"]) >= 4 and decode["lossy"] == []
    assert decode["unlisted_files"] > 0


def test_demo_second_run_has_nothing_to_do(demo):
    proc = snakemake(demo, "predictions", "decode_report")
    assert planned_jobs(proc) == []


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A demo run with tiny encoders and two heads, for the stage 2 cache checks."""
    work = tmp_path_factory.mktemp("stage2")
    tiny_config(work, "demo", shards=4, demo={"n": 60, "seed": 1})
    snakemake(work, "predictions")
    return work


def test_head_hyperparameter_reruns_only_that_head(small, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(small, work, symlinks=True)
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["heads"]["concat_mlp"]["hidden"] = 48
    write_config(work, config)
    jobs = planned_jobs(snakemake(work, "predictions"))
    ablations = {wc["ablation"] for r, wc in jobs if r == "ablation"}
    assert ablations == {"text__concat_mlp", "image__concat_mlp", "text+image__concat_mlp"}
    assert count(jobs, "extract") == 0 and count(jobs, "manifest") == 0
    assert count(jobs, "summary") == 1 and count(jobs, "predict") == 1
    assert planned_jobs(snakemake(work, "predictions")) == []

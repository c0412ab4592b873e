"""The model bundle (``results/<ds>/model``) and ``mmpipe predict`` on new raw samples, on a real workflow run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from workflow import count, planned_jobs, snakemake, write_config

import yaml


def mmpipe(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mmpipe.cli", *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"mmpipe {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def paths(tiny_bundle):
    res = tiny_bundle / "results" / "demo"
    return res / "model", res / "source", res


def _tags(path: Path) -> list[tuple[str, str]]:
    df = pl.read_csv(path, schema_overrides={"guid": pl.String})
    return list(zip(df["guid"], df["tag"]))


def test_bundle_says_what_it_holds(paths):
    bundle, _, res = paths
    model = json.loads((bundle / "model.json").read_text())
    summary = json.loads((res / "summary.json").read_text())
    assert model["selected"] == summary["selected"] == "text+image__concat_mlp"
    assert model["classes"] == ["negative", "neutral", "positive"] and model["task"] == "classification"
    assert model["mmpipe_version"] and model["format"] == 1
    heads = {h["ablation"]: h for h in model["heads"]}
    assert list(heads)[0] == "text+image__concat_mlp"
    # one fallback per other modality set: the best-ranked ablation on it
    assert sorted(tuple(h["modalities"]) for h in model["heads"][1:]) == [("image",), ("text",), ("text_ft",)]
    for h in model["heads"]:
        assert h["seeds"] == [0, 1] and all((bundle / f).is_file() for f in h["files"])
    for h in model["heads"][1:]:
        ranked = [e["name"] for e in summary["ablations"] if e["modalities"] == h["modalities"]]
        assert h["ablation"] == ranked[0]
    for name, enc in model["encoders"].items():
        shard = next((res / "features" / name).glob("*.parquet"))
        from mmpipe.core.shards import read_meta

        assert enc["fingerprint_id"] == read_meta(shard)["fingerprint_id"] and enc["spec"]["backend"]
    assert "image" in model["missing_modalities"] and "text__" in model["missing_modalities"]["image"]
    assert json.loads((bundle / "config.json").read_text())["encoders"].keys() == model["encoders"].keys()


def test_predict_on_the_training_folder_gives_the_workflow_tags(paths, tmp_path):
    bundle, source, res = paths
    expected = _tags(res / "predictions.txt")
    mmpipe("predict", str(bundle), str(source), "-o", str(tmp_path / "p.csv"))
    assert _tags(tmp_path / "p.csv") == expected
    # the same from scratch, encoding every sample again
    mmpipe("predict", str(bundle), str(source), "--no-cache", "-o", str(tmp_path / "fresh.csv"))
    assert _tags(tmp_path / "fresh.csv") == expected
    a, b = pl.read_csv(tmp_path / "p.csv"), pl.read_csv(tmp_path / "fresh.csv")
    probs = [c for c in a.columns if c.startswith("p_")]
    assert len(probs) == 3 and (a.select(probs).to_numpy() - b.select(probs).to_numpy()).max() < 1e-5
    assert set(a["served_by"]) == {"text+image__concat_mlp"}


def test_inputs_tables_files_and_formats(paths, tmp_path):
    bundle, source, res = paths
    expected = dict(_tags(res / "predictions.txt"))
    guids = list(expected)[:4]
    data = source / "data"
    table = tmp_path / "new.csv"
    table.write_text("guid,text_file,image\n" + "".join(f"n{g},{data}/{g}.txt,{data}/{g}.jpg\n" for g in guids))
    mmpipe("predict", str(bundle), str(table), "-o", str(tmp_path / "t.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [(r["guid"], r["tag"]) for r in rows] == [(f"n{g}", expected[g]) for g in guids]
    # loose files paired by stem, written as Parquet
    loose = tmp_path / "loose"
    loose.mkdir()
    for g in guids:
        shutil.copy(data / f"{g}.txt", loose)
        shutil.copy(data / f"{g}.jpg", loose)
    mmpipe("predict", str(bundle), str(loose), "-o", str(tmp_path / "l.parquet"))
    got = pl.read_parquet(tmp_path / "l.parquet")
    assert dict(zip(got["guid"], got["tag"])) == {g: expected[g] for g in guids}
    # one sample from the command line
    out = mmpipe("predict", str(bundle), "--text-file", str(data / f"{guids[0]}.txt"), "--image",
                 str(data / f"{guids[0]}.jpg")).stdout
    assert out.splitlines() == ["guid,tag", f"{guids[0]},{expected[guids[0]]}"]


def test_a_missing_modality_is_served_by_a_fallback(paths, tmp_path):
    bundle, source, _ = paths
    model = json.loads((bundle / "model.json").read_text())
    text_head = next(h["ablation"] for h in model["heads"] if set(h["modalities"]) <= {"text", "text_ft"})
    image_head = next(h["ablation"] for h in model["heads"] if h["modalities"] == ["image"])
    table = tmp_path / "partial.jsonl"
    table.write_text(json.dumps({"guid": "t", "text": "what a lovely day"}) + "\n"
                     + json.dumps({"guid": "i", "image": str(source / "data" / "1.jpg")}) + "\n")
    mmpipe("predict", str(bundle), str(table), "-o", str(tmp_path / "p.jsonl"))
    rows = {r["guid"]: r for r in map(json.loads, (tmp_path / "p.jsonl").read_text().splitlines())}
    assert rows["t"]["served_by"] == text_head and rows["i"]["served_by"] == image_head
    assert abs(sum(v for k, v in rows["t"].items() if k.startswith("p_")) - 1) < 1e-6


def test_bad_input_gets_one_clear_line(paths, tmp_path):
    bundle, source, _ = paths
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    proc = mmpipe("predict", str(bundle), "--text", "fine", "--image", str(broken), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "broken.jpg" in proc.stderr and "cannot read image" in proc.stderr
    proc = mmpipe("predict", str(bundle), "--text", "fine", "--image", str(tmp_path / "absent.jpg"), check=False)
    assert proc.returncode == 2 and "absent.jpg is missing" in proc.stderr
    proc = mmpipe("predict", str(tmp_path), str(source), check=False)
    assert proc.returncode == 2 and "not a model bundle" in proc.stderr
    # --skip-bad predicts the good samples and keeps a row for the bad one
    table = tmp_path / "mixed.csv"
    table.write_text(f"guid,text,image\ngood,nice,{source}/data/1.jpg\nbad,nice,{broken}\n")
    proc = mmpipe("predict", str(bundle), str(table), "--skip-bad", "-o", str(tmp_path / "m.csv"), check=False)
    assert proc.returncode == 1 and "skipped" in proc.stderr
    out = pl.read_csv(tmp_path / "m.csv")
    assert out["guid"].to_list() == ["good", "bad"] and out["tag"][0] and out["tag"][1] is None
    assert "cannot read image" in out["error"][1]


def test_new_samples_of_an_adapted_encoder_get_the_mean_over_its_fold_adapters(paths):
    """Without the cache, the bundle's adapted encoder gives the test samples the vectors the workflow gave them."""
    from mmpipe.core.shards import read_shards
    from mmpipe.inference.predictor import Predictor, manifest_rows

    bundle, source, res = paths
    rows = manifest_rows(res / "manifest.parquet", "test", source)
    fresh, _ = Predictor(bundle, use_cache=False).features(rows, {"text_ft": list(range(len(rows)))})
    guids, X, _ = read_shards(sorted((res / "features" / "text_ft").glob("*.parquet")))
    cached = dict(zip(guids, X))
    assert abs(fresh["text_ft"] - [cached[r["guid"]] for r in rows]).max() < 1e-5


def test_encoder_mismatch_names_the_encoder(paths, tmp_path):
    bundle, source, _ = paths
    other = tmp_path / "model"
    shutil.copytree(bundle, other)
    model = json.loads((other / "model.json").read_text())
    model["encoders"]["text"]["spec"]["max_length"] = 8  # this installation would encode differently
    model["cache"] = None
    (other / "model.json").write_text(json.dumps(model))
    proc = mmpipe("predict", str(other), str(source), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "encoder 'text' does not match the bundle" in line and "max_length" in line


def test_a_changed_head_reruns_only_that_head_and_the_bundle(tiny_bundle, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(tiny_bundle, work, symlinks=True)
    assert planned_jobs(snakemake(work, "-n", "model", "predictions")) == []
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["heads"]["concat_mlp"]["hidden"] = 48
    write_config(work, config)
    jobs = planned_jobs(snakemake(work, "-n", "predictions"))
    ablations = {wc["ablation"] for r, wc in jobs if r == "ablation"}
    assert ablations == {f"{m}__concat_mlp" for m in ("text", "image", "text+image", "text_ft")}
    assert count(jobs, "extract") == 0 and count(jobs, "manifest") == 0 and count(jobs, "adapter") == 0
    assert count(jobs, "summary") == 1 and count(jobs, "model") == 1 and count(jobs, "predict") == 1

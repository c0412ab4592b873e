"""Data set layouts on small generated fixtures: the features index (JSON, JSONL, CSV, Parquet), a CMU-MOSI
(Poria) folder, annotation files with train/val/test folders, and text tables; bad input names file and line;
one end-to-end ``features`` run per layout; smoke tests on the real data sets in ../shared/data when present.
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import SHARED
from mmpipe.ingest import layouts, manifest
from mmpipe.core.config import validate
from mmpipe.core.errors import BadSampleError, ConfigError

REGRESSION = {"scheme": "regression", "range": [-3, 3]}
DIMS = {"text_features": 8, "audio_features": 5, "video_features": 6}


def config(layout: str, labels: dict | None = None, **extra) -> dict:
    return validate({"data": "x", "layout": layout, "labels": labels or {},
                     "encoders": {"e": {"backend": "imported", "field": "audio_features"}}, **extra})


# --------------------------------------------------------------------------- features: index form
def mosei_records(n: int = 24, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        split = "train" if i < 14 else "valid" if i < 18 else "test"
        rec = {"id": f"v{i // 4}_{i % 4}", "video_id": f"v{i // 4}", "split": split,
               "label": round(float(rng.uniform(-3, 3)), 3), "text": f"utterance {i} was fine"}
        for name, d in DIMS.items():
            rec[name] = [round(float(x), 4) for x in rng.normal(size=d)]
        out.append(rec)
    return out


def write_index(root: Path, records: list[dict], form: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if form in ("json", "json_samples"):
        path = root / "index.json"
        body = records if form == "json" else {"samples": records}
        path.write_text(json.dumps(body, indent=1))
    elif form == "jsonl":
        path = root / "index.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif form in ("csv", "csv_wide"):
        path = root / "index.csv"
        rows = []
        for r in records:
            row = {k: v for k, v in r.items() if k not in DIMS}
            for name in DIMS:
                if form == "csv":
                    row[name] = json.dumps(r[name])
                else:
                    row.update({f"{name}_{j}": v for j, v in enumerate(r[name])})
            rows.append(row)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif form == "parquet":
        path = root / "index.parquet"
        pl.DataFrame(records).write_parquet(path)
    else:
        raise ValueError(form)
    return path


@pytest.mark.parametrize("form", ["json", "json_samples", "jsonl", "csv", "csv_wide", "parquet"])
def test_index_forms(tmp_path, form):
    recs = mosei_records()
    write_index(tmp_path, recs, form)
    read = layouts.get("vectors").read(tmp_path, config("vectors", REGRESSION))
    assert not read.problems and len(read.samples) == 24
    by = {s.guid: s for s in read.samples}
    for r in recs:
        s = by[r["id"]]
        assert s.split == {"train": "train", "valid": "val", "test": "test"}[r["split"]]
        assert s.score == pytest.approx(r["label"]) and s.label == ("positive" if r["label"] >= 0 else "negative")
        assert s.group == r["video_id"] and s.text == r["text"]
        assert set(s.vectors) == set(DIMS)
        for name in DIMS:
            np.testing.assert_allclose(s.vectors[name], r[name], atol=1e-6)


def test_index_manifest_slices_carry_vectors(tmp_path):
    recs = mosei_records()
    write_index(tmp_path / "d", recs, "parquet")
    cfg = config("vectors", REGRESSION)
    res = manifest.build(tmp_path / "d", cfg)
    m = res.manifest
    assert m.schema["vector:audio_features"] == pl.Array(pl.Float32, 5)
    assert (m["split"] == "val").sum() == 4  # the index's own validation split is kept, nothing carved
    shards = [tmp_path / f"s{i}.parquet" for i in range(3)]
    manifest.write(res, tmp_path / "m.parquet", shards, tmp_path / "log.json")
    assert not [c for c in pl.read_parquet(tmp_path / "m.parquet").columns if c.startswith("vector:")]
    sl = pl.concat([pl.read_parquet(p) for p in shards])
    assert {"vector:text_features", "vector:audio_features", "vector:video_features"} <= set(sl.columns)
    assert sl.height == 24
    # a changed vector changes that sample's content hash only
    recs2 = copy.deepcopy(recs)
    recs2[3]["audio_features"][0] += 1.0
    write_index(tmp_path / "d", recs2, "parquet")
    m2 = manifest.build(tmp_path / "d", cfg).manifest
    diff = m.join(m2, on="guid").filter(pl.col("content_hash") != pl.col("content_hash_right"))["guid"].to_list()
    assert diff == [recs[3]["id"]]


def test_index_options_and_classification(tmp_path):
    recs = mosei_records(8)
    for i, r in enumerate(recs):
        r["uid"] = r.pop("id")
        r["emo"] = ["happy", "sad"][i % 2]
        r["wav"] = None
    write_index(tmp_path, recs, "jsonl")
    cfg = config("vectors", {"classes": ["happy", "sad"]},
                 layout_options={"id": "uid", "label": "emo", "vectors": ["audio_features"]})
    read = layouts.get("vectors").read(tmp_path, cfg)
    assert not read.problems and {s.label for s in read.samples} == {"happy", "sad"}
    assert all(set(s.vectors) == {"audio_features"} and s.score is None for s in read.samples)
    with pytest.raises(ConfigError, match="unknown layout_options"):
        layouts.get("vectors").read(tmp_path, config("vectors", layout_options={"colour": "red"}))


@pytest.mark.parametrize("form, line, mutate, needle", [
    ("jsonl", 5, lambda rs: rs[4].update(label="abc"), "not a number"),
    ("jsonl", 3, lambda rs: rs[2].update(label=7.5), "outside labels.range"),
    ("csv", 4, lambda rs: rs[2].update(audio_features=[1.0, 2.0, 3.0, 4.0]), "has 4 values, but 5"),
    ("csv", 6, lambda rs: rs[4].update(split="holdout"), "unknown split 'holdout'"),
    ("parquet", 2, lambda rs: rs[1].update(video_features=[float("nan")] * 6), "NaN"),
    ("json", None, lambda rs: rs[6].update(id=rs[1]["id"]), "duplicate id"),
])
def test_index_bad_input_names_file_and_line(tmp_path, form, line, mutate, needle):
    recs = mosei_records(10)
    mutate(recs)
    path = write_index(tmp_path, recs, form)
    if line is None:  # JSON: the line of the 7th record's "id"
        text = path.read_text()
        at = -1
        for _ in range(7):
            at = text.index('"id"', at + 1)
        line = text.count("\n", 0, at) + 1
    with pytest.raises(BadSampleError) as err:
        manifest.build(tmp_path, config("vectors", REGRESSION))
    assert f"{path}:{line}" in str(err.value) and needle in str(err.value)
    skipped = manifest.build(tmp_path, config("vectors", REGRESSION, on_bad_sample="skip"))
    assert skipped.manifest.height == 9 and skipped.skipped[0].line == line


# --------------------------------------------------------------------------- features: CMU-MOSI (Poria) form
def write_mosi(root: Path, seed: int = 0) -> dict:
    """A miniature cmu_mosi_poria2017 folder: 6 videos (4 train, 2 test), shuffled feature rows."""
    rng = np.random.default_rng(seed)
    dims = {"text": 7, "audio": 4, "video": 5}
    utts = []
    for v in range(6):
        for seg in range(1, 6):
            score = round(float(rng.uniform(-3, 3)), 1)
            utts.append({"utterance_id": f"vid{v}_{seg}", "video_id": f"vid{v}", "segment": seg,
                         "split": "train" if v < 4 else "test", "binary_label": int(score >= 0),
                         "sentiment_score": score, "transcript": f"IT WAS {'GOOD' if score >= 0 else 'BAD'} {seg}"})
    vectors = {}
    for split in ("train", "test"):
        part = [u for u in utts if u["split"] == split]
        order = rng.permutation(len(part))
        for r, i in enumerate(order):
            part[i]["row_in_split_feature_csv"] = r
        for m, d in dims.items():
            mat = np.zeros((len(part), d + 1))
            for u in part:
                vec = rng.normal(size=d).round(5)
                vectors[(u["utterance_id"], m)] = vec
                mat[u["row_in_split_feature_csv"]] = [*vec, u["binary_label"]]
            (root / "features" / m).mkdir(parents=True, exist_ok=True)
            np.savetxt(root / "features" / m / f"{m}_{split}0.csv", mat, delimiter=",", fmt="%.6g")
    cols = ["row", "utterance_id", "video_id", "segment", "split", "row_in_split_feature_csv", "binary_label",
            "sentiment_score", "transcript"]
    with open(root / "mosi_utterances.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for i, u in enumerate(utts):
            w.writerow({"row": i, **u})
    return {"utts": utts, "vectors": vectors}


def test_mosi_poria_form(tmp_path):
    truth = write_mosi(tmp_path)
    cfg = config("vectors", {**REGRESSION, "classes": ["negative", "positive"]}, split={"val_fraction": 0.5})
    read = layouts.get("vectors").read(tmp_path, cfg)
    assert not read.problems and not read.unlisted and len(read.samples) == 30
    by = {s.guid: s for s in read.samples}
    for u in truth["utts"]:
        s = by[u["utterance_id"]]
        assert (s.split, s.group, s.text) == (u["split"], u["video_id"], u["transcript"])
        assert s.score == u["sentiment_score"] and s.label == ("positive" if u["binary_label"] else "negative")
        for m in ("text", "audio", "video"):
            np.testing.assert_allclose(s.vectors[m], truth["vectors"][(u["utterance_id"], m)], atol=1e-5)
    m = manifest.build(tmp_path, cfg).manifest
    sides = m.filter(pl.col("split") != "test").group_by("group").agg(pl.col("split").n_unique())
    assert sides["split"].max() == 1  # validation is carved by video: no video on both sides
    assert set(m.filter(pl.col("split") != "test")["split"]) == {"train", "val"}
    assert layouts.source_files("vectors", tmp_path)[0].endswith("mosi_utterances.csv")
    only_av = layouts.get("vectors").read(tmp_path, config("vectors", REGRESSION,
                                                            layout_options={"vectors": ["audio", "video"]}))
    assert set(only_av.samples[0].vectors) == {"audio", "video"}


def test_mosi_poria_bad_input(tmp_path):
    truth = write_mosi(tmp_path)
    u = next(x for x in truth["utts"] if x["split"] == "train")
    path = tmp_path / "features" / "audio" / "audio_train0.csv"
    rows = path.read_text().splitlines()
    r = u["row_in_split_feature_csv"]
    cells = rows[r].split(",")
    cells[-1] = str(1 - u["binary_label"])
    rows[r] = ",".join(cells)
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(BadSampleError) as err:
        manifest.build(tmp_path, config("vectors", REGRESSION))
    assert f"{path}:{r + 1}" in str(err.value) and u["utterance_id"] in str(err.value)
    (tmp_path / "features" / "video" / "video_test0.csv").unlink()
    with pytest.raises(BadSampleError, match="video_test0.csv: feature file is missing"):
        manifest.build(tmp_path, config("vectors", REGRESSION))


# --------------------------------------------------------------------------- annotations (TriModalFusion form)
def write_annotations(root: Path, n_per_split: dict[str, int] | None = None) -> dict[str, Path]:
    import soundfile as sf
    from PIL import Image

    from mmpipe.ingest.demo import demo_video_frames, write_mp4

    n_per_split = n_per_split or {"train": 6, "val": 2, "test": 3}
    files = {}
    k = 0
    for split, n in n_per_split.items():
        d = root / split
        for sub in ("speech", "video", "images"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        samples = []
        for _ in range(n):
            k += 1
            label = k % 3
            sid = f"s{k:03d}"
            t = np.arange(8000) / 16000
            sf.write(d / "speech" / f"{sid}.wav", (0.3 * np.sin(2 * np.pi * (110 + 60 * label) * t)), 16000)
            write_mp4(d / "video" / f"{sid}.mp4", demo_video_frames(0, k, ["negative", "neutral", "positive"][label]))
            Image.fromarray(np.full((24, 24, 3), 80 * label, np.uint8)).save(d / "images" / f"{sid}.jpg")
            samples.append({"id": sid, "speech_path": f"speech/{sid}.wav", "video_path": f"video/{sid}.mp4",
                            "image_path": f"images/{sid}.jpg", "label": label,
                            "transcription": f"sample {k} feels {['bad', 'okay', 'good'][label]}",
                            "metadata": {"duration": 0.5, "fps": 10}})
        files[split] = d / "annotations.json"
        files[split].write_text(json.dumps({"samples": samples}, indent=2))
    return files


ANN_LABELS = {"classes": ["negative", "neutral", "positive"]}


def test_annotations_layout(tmp_path):
    files = write_annotations(tmp_path)
    (tmp_path / "train" / "speech" / "orphan.wav").write_bytes((tmp_path / "train/speech/s001.wav").read_bytes())
    read = layouts.get("annotations").read(tmp_path, config("annotations", ANN_LABELS))
    assert not read.problems and len(read.samples) == 11
    assert read.unlisted == ["train/speech/orphan.wav"]
    s = next(x for x in read.samples if x.guid == "s001")
    assert s.label == "neutral" and s.split == "train" and s.text.startswith("sample 1")
    assert s.audio_path == (tmp_path / "train/speech/s001.wav").resolve() and s.video_path.suffix == ".mp4"
    m = manifest.build(tmp_path, config("annotations", ANN_LABELS)).manifest
    assert dict(m.group_by("split").len().rows()) == {"train": 6, "val": 2, "test": 3}  # val kept, none carved
    assert m.filter(pl.col("guid") == "s001")["audio_path"].item() == "train/speech/s001.wav"
    assert str(files["train"]) in layouts.source_files("annotations", tmp_path)


def test_annotations_bad_input_names_file_and_line(tmp_path):
    files = write_annotations(tmp_path, {"train": 3, "test": 1})
    doc = json.loads(files["train"].read_text())
    doc["samples"][1]["speech_path"] = "speech/missing.wav"
    files["train"].write_text(json.dumps(doc, indent=2))
    line = next(i for i, t in enumerate(files["train"].read_text().splitlines(), 1) if '"id": "s002"' in t)
    with pytest.raises(BadSampleError) as err:
        manifest.build(tmp_path, config("annotations", ANN_LABELS))
    assert f"{files['train']}:{line}" in str(err.value) and "missing.wav is missing" in str(err.value)
    doc["samples"][1]["speech_path"] = "speech/s001.wav"
    (tmp_path / "train/speech/s001.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    files["train"].write_text(json.dumps(doc, indent=2))
    with pytest.raises(BadSampleError, match="cannot read audio"):
        manifest.build(tmp_path, config("annotations", ANN_LABELS))
    doc["samples"][2]["label"] = 9
    files["train"].write_text(json.dumps(doc, indent=2))
    problems = layouts.get("annotations").read(tmp_path, config("annotations", ANN_LABELS)).problems
    assert len(problems) == 1 and "unknown label '9'" in str(problems[0]) and f"{files['train']}:" in str(problems[0])


def test_annotations_root_files_with_split_key(tmp_path):
    (tmp_path / "clips").mkdir()
    samples = [{"id": i, "transcription": f"text {i}", "label": "pos" if i % 2 else "neg",
                "split": ["train", "dev", "test"][i % 3]} for i in range(9)]
    (tmp_path / "annotations.json").write_text(json.dumps(samples))
    read = layouts.get("annotations").read(tmp_path, config("annotations"))
    assert [s.split for s in read.samples][:3] == ["train", "val", "test"] and read.samples[4].guid == "4"


# --------------------------------------------------------------------------- table
def write_table(path: Path, header: list[str], rows: list[list], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_table_single_file_with_split_and_id(tmp_path):
    rows = [[f"u{i}", f"text number {i}", ["joy", "anger", "neutral"][i // 3 % 3], ["train", "dev", "test"][i % 3]]
            for i in range(12)]
    write_table(tmp_path / "emotions.csv", ["id", "text", "label", "split"], rows)
    read = layouts.get("table").read(tmp_path, config("table"))
    assert [s.guid for s in read.samples][:2] == ["u0", "u1"] and read.samples[1].split == "val"
    m = manifest.build(tmp_path, config("table")).manifest
    assert dict(m.group_by("split").len().rows()) == {"train": 4, "val": 4, "test": 4}


def test_table_without_split_or_id(tmp_path):
    rows = [[f"sentence {i} is here", ["pos", "neg"][i % 2]] for i in range(40)]
    write_table(tmp_path / "data.csv", ["sentence", "sentiment"], rows)
    read = layouts.get("table").read(tmp_path, config("table"))
    assert read.samples[0].guid == "data-2" and {s.split for s in read.samples} == {"train"}
    m = manifest.build(tmp_path, config("table")).manifest
    assert set(m["split"]) == {"train", "val"} and m.height == 40


def test_table_files_per_split_meld_style(tmp_path):
    header = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"]
    for split, n in (("train", 8), ("dev", 3), ("test", 4)):
        rows = [[i + 1, f"line {i}\nof {split}" if i == 1 else f"You\u2019re line {i}", "Joey",
                 ["joy", "anger"][i % 2], "positive", i // 2, i % 2] for i in range(n)]
        write_table(tmp_path / f"{split}_sent_emo.csv", header, rows)
    cfg = config("table", {"classes": ["anger", "joy"]},
                 layout_options={"text": "Utterance", "label": "Emotion", "id": ["Dialogue_ID", "Utterance_ID"],
                                 "group": "Dialogue_ID"})
    read = layouts.get("table").read(tmp_path, cfg)
    guids = [s.guid for s in read.samples]
    assert guids[:3] == ["train_0_0", "train_0_1", "train_1_0"] and "val_0_0" in guids and len(guids) == 15
    third = read.samples[2]
    assert third.line == 5 and third.text == "You\u2019re line 2"  # the quoted two-line cell above counts twice
    m = manifest.build(tmp_path, cfg).manifest
    assert dict(m.group_by("split").len().rows()) == {"train": 8, "val": 3, "test": 4}


def test_table_bad_input_and_encodings(tmp_path):
    rows = [["fine text", "joy"], ["another", "rage"], ["", "joy"]]
    path = write_table(tmp_path / "t.csv", ["text", "label"], rows)
    cfg = config("table", {"classes": ["joy", "anger"]})
    with pytest.raises(BadSampleError) as err:
        manifest.build(tmp_path, cfg)
    assert f"{path}:3" in str(err.value) and "unknown label 'rage'" in str(err.value)
    write_table(tmp_path / "t.csv", ["text", "label"], [["fine text", "joy"], ["another", "anger"], ["", "joy"]])
    with pytest.raises(BadSampleError) as err:
        manifest.build(tmp_path, cfg)
    assert f"{path}:4" in str(err.value) and "is empty" in str(err.value)
    write_table(tmp_path / "t.csv", ["text", "label"], [["caf\u00e9 \u201cgood\u201d", "joy"]], encoding="cp1252")
    assert layouts.get("table").read(tmp_path, cfg).samples[0].text == "caf\u00e9 \u201cgood\u201d"
    write_table(tmp_path / "other.csv", ["text", "label"], [["x", "joy"]])
    with pytest.raises(BadSampleError, match="several tables"):
        layouts.get("table").read(tmp_path, cfg)


# --------------------------------------------------------------------------- end to end, one run per layout
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    from tiny_models import tiny_image_model, tiny_text_model

    root = tmp_path_factory.mktemp("tiny")
    return {"text": tiny_text_model(root / "text"), "image": tiny_image_model(root / "image")}


def run_features(work: Path, cfg: dict):
    from workflow import planned_jobs, snakemake, write_config

    write_config(work, cfg)
    return planned_jobs(snakemake(work, "features"))


def read_features(work: Path, ds: str, enc: str):
    from mmpipe.core.shards import read_shards

    return read_shards(sorted((work / "results" / ds / "features" / enc).glob("*.parquet")))


@pytest.mark.slow
def test_e2e_features_index_imported_and_cache(tmp_path):
    from mmpipe.ingest.split import shard_of
    from workflow import count

    recs = mosei_records(20)
    write_index(tmp_path / "mosei", recs, "parquet")
    cfg = {"data": "mosei", "layout": "vectors", "labels": REGRESSION, "shards": 2,
           "encoders": {"audio": {"backend": "imported", "field": "audio_features"}}}
    jobs = run_features(tmp_path, cfg)
    assert count(jobs, "extract") == 2
    guids, X, meta = read_features(tmp_path, "mosei", "audio")
    assert X.shape == (20, 5) and meta["modality"] == "audio" and meta["fingerprint"]["backend"] == "imported"
    by = dict(zip(guids, X))
    np.testing.assert_allclose(by[recs[0]["id"]], recs[0]["audio_features"], atol=1e-6)
    new = mosei_records(21)[20]
    write_index(tmp_path / "mosei", recs + [new], "parquet")
    jobs = run_features(tmp_path, cfg)
    shard = f"{shard_of(new['id'], 2):03d}"
    assert [(r, wc["shard"]) for r, wc in jobs if r == "extract"] == [("extract", shard)]  # only the new one's
    guids, X, _ = read_features(tmp_path, "mosei", "audio")
    assert X.shape == (21, 5) and new["id"] in guids


@pytest.mark.slow
def test_e2e_features_mosi_own_text(tmp_path, tiny):
    write_mosi(tmp_path / "mosi")
    cfg = {"data": "mosi", "layout": "vectors", "layout_options": {"vectors": ["audio", "video"]},
           "labels": {**REGRESSION, "classes": ["negative", "positive"]}, "shards": 1,
           "encoders": {"text": {"backend": "hf_text", "model": str(tiny["text"]), "max_length": 16},
                        "video": {"backend": "imported", "field": "video"}}}
    run_features(tmp_path, cfg)
    dims = {e: read_features(tmp_path, "mosi", e)[1].shape for e in ("text", "video")}
    assert dims == {"text": (30, 32), "video": (30, 5)}
    m = pl.read_parquet(tmp_path / "results/mosi/manifest.parquet")
    assert m["score"].null_count() == 0 and set(m["label"]) == {"negative", "positive"}


@pytest.mark.slow
def test_e2e_features_annotations_real_audio_and_video(tmp_path, tiny):
    write_annotations(tmp_path / "tri")
    cfg = {"data": "tri", "layout": "annotations", "labels": ANN_LABELS, "shards": 1,
           "encoders": {"audio": {"backend": "librosa", "stats": ["mean", "std"]},
                        "video": {"backend": "video", "fps": 5, "max_frames": 4,
                                  "image_encoder": {"backend": "hf_image", "model": str(tiny["image"])}}}}
    run_features(tmp_path, cfg)
    shapes = {e: read_features(tmp_path, "tri", e)[1].shape for e in ("audio", "video")}
    assert shapes == {"audio": (11, 170), "video": (11, 16)}
    _, A, _ = read_features(tmp_path, "tri", "audio")
    assert np.isfinite(A).all() and np.unique(A[:, 0]).size > 1


@pytest.mark.slow
def test_e2e_features_table(tmp_path, tiny):
    rows = [[f"u{i}", f"good day {i}" if i % 2 else f"bad day {i}", ["pos", "neg"][i % 2]] for i in range(30)]
    write_table(tmp_path / "tweets" / "tweets.csv", ["id", "text", "label"], rows)
    cfg = {"data": "tweets", "layout": "table", "labels": {"classes": ["neg", "pos"]}, "shards": 2,
           "encoders": {"text": {"backend": "hf_text", "model": str(tiny["text"]), "max_length": 16}}}
    run_features(tmp_path, cfg)
    guids, X, _ = read_features(tmp_path, "tweets", "text")
    assert sorted(guids) == sorted(f"u{i}" for i in range(30)) and X.shape == (30, 32)


# --------------------------------------------------------------------------- the real data sets (skip when absent)
MOSI = SHARED / "cmu_mosi_poria2017"
MELD = SHARED / "meld_text"


@pytest.mark.skipif(not (MOSI / "mosi_utterances.csv").is_file(), reason="no ../shared/data/cmu_mosi_poria2017")
def test_real_mosi():
    from mmpipe.core.config import load

    cfg = load(Path(__file__).resolve().parents[1] / "config/examples/mosi.yaml")
    res = manifest.build(MOSI, cfg)
    m = res.manifest
    assert m.height == 2199 and not res.skipped and not res.unlisted
    assert (m["split"] == "test").sum() == 752 and (m["split"] != "test").sum() == 1447
    assert {c: m.schema[c].size for c in m.columns if c.startswith("vector:")} == \
        {"vector:text": 100, "vector:audio": 73, "vector:video": 100}
    trainval = m.filter(pl.col("split") != "test")
    assert trainval.group_by("group").agg(pl.col("split").n_unique())["split"].max() == 1
    assert trainval["group"].n_unique() == 62 and m["score"].min() >= -3 and m["score"].max() <= 3


@pytest.mark.skipif(not (MELD / "train_sent_emo.csv").is_file(), reason="no ../shared/data/meld_text")
def test_real_meld():
    from mmpipe.core.config import load

    cfg = load(Path(__file__).resolve().parents[1] / "config/examples/meld.yaml")
    m = manifest.build(MELD, cfg).manifest
    assert dict(m.group_by("split").len().rows()) == {"train": 9989, "val": 1109, "test": 2610}
    assert set(m["label"]) == set(cfg["labels"]["classes"]) and m["guid"].n_unique() == m.height


def test_example_configs_validate():
    from mmpipe.core.config import load
    from mmpipe.encoders import ENCODERS

    examples = sorted((Path(__file__).resolve().parents[1] / "config" / "examples").glob("*.yaml"))
    assert {"mosi.yaml", "mosi_own_text.yaml", "meld.yaml", "demo_av.yaml"} <= {p.name for p in examples}
    for path in examples:
        cfg = load(path)
        assert cfg["layout"] in layouts.LAYOUTS, path
        for name, spec in cfg["encoders"].items():
            assert spec["backend"] in ENCODERS, (path, name)


def test_table_dialogue_context_turns(tmp_path):
    """text.context_turns: each utterance gets the texts of the turns before it in its dialogue (never another
    dialogue's, never a label), the slices carry it, and the content hash covers it."""
    header = ["Utterance", "Emotion", "Dialogue_ID", "Utterance_ID"]
    rows = [[f"d{d} turn {u}", ["joy", "anger"][(d + u) % 2], d, u] for d in range(3) for u in range(4)]
    write_table(tmp_path / "train_sent_emo.csv", header, rows)
    opts = {"text": "Utterance", "label": "Emotion", "id": ["Dialogue_ID", "Utterance_ID"], "group": "Dialogue_ID"}
    cfg = config("table", {"classes": ["anger", "joy"]}, layout_options=opts, text={"context_turns": 2})
    m = manifest.build(tmp_path, cfg).manifest
    ctx = dict(zip(m["guid"], m["text_context"]))
    assert ctx["1_0"] is None and ctx["1_1"] == "d1 turn 0" and ctx["1_3"] == "d1 turn 1 d1 turn 2"
    assert ctx["2_0"] is None  # the previous dialogue's last turn is not context
    plain = manifest.build(tmp_path, config("table", {"classes": ["anger", "joy"]}, layout_options=opts)).manifest
    assert "text_context" not in plain.columns
    h0, h1 = (dict(zip(x["guid"], x["content_hash"])) for x in (plain, m))
    assert h0["1_0"] == h1["1_0"] and h0["1_1"] != h1["1_1"]  # no context, same content
    rows[5][0] = "d1 turn 1, edited"  # a changed turn changes the content of the turns after it, and only those
    write_table(tmp_path / "train_sent_emo.csv", header, rows)
    h2 = dict(zip(*manifest.build(tmp_path, cfg).manifest.select("guid", "content_hash")))
    assert {g for g in h1 if h1[g] != h2[g]} == {"1_1", "1_2", "1_3"}
    result = manifest.build(tmp_path, cfg)
    shards = [tmp_path / f"slice{i}.parquet" for i in range(2)]
    manifest.write(result, tmp_path / "m.parquet", shards, tmp_path / "log.json")
    assert "text_context" in pl.read_parquet(shards[0]).columns


def test_table_dialogue_context_turns_after(tmp_path):
    """text.context_turns_after: the turns after each utterance in its dialogue follow the earlier ones behind
    " | "; the last turn of a dialogue has only the earlier ones, and a changed turn changes the hashes of the
    turns around it."""
    header = ["Utterance", "Emotion", "Dialogue_ID", "Utterance_ID"]
    rows = [[f"d{d} turn {u}", "joy", d, u] for d in range(2) for u in range(4)]
    write_table(tmp_path / "train_sent_emo.csv", header, rows)
    opts = {"text": "Utterance", "label": "Emotion", "id": ["Dialogue_ID", "Utterance_ID"], "group": "Dialogue_ID"}
    cfg = config("table", {"classes": ["anger", "joy"]}, layout_options=opts,
                 text={"context_turns": 1, "context_turns_after": 2})
    m = manifest.build(tmp_path, cfg).manifest
    ctx = dict(zip(m["guid"], m["text_context"]))
    assert ctx["0_0"] == "| d0 turn 1 d0 turn 2"
    assert ctx["0_1"] == "d0 turn 0 | d0 turn 2 d0 turn 3"
    assert ctx["0_3"] == "d0 turn 2" and ctx["1_0"] == "| d1 turn 1 d1 turn 2"  # never the next dialogue's turns
    only_after = config("table", {"classes": ["anger", "joy"]}, layout_options=opts, text={"context_turns_after": 1})
    assert manifest.build(tmp_path, only_after).manifest["text_context"].to_list()[:4] == [
        "| d0 turn 1", "| d0 turn 2", "| d0 turn 3", None]
    h1 = dict(zip(m["guid"], m["content_hash"]))
    rows[2][0] = "d0 turn 2, edited"
    write_table(tmp_path / "train_sent_emo.csv", header, rows)
    h2 = dict(zip(*manifest.build(tmp_path, cfg).manifest.select("guid", "content_hash")))
    assert {g for g in h1 if h1[g] != h2[g]} == {"0_0", "0_1", "0_2", "0_3"}


def test_predict_inputs_get_the_manifests_dialogue_context(tmp_path):
    """New samples for ``mmpipe predict``: a table with a group column gets the context (and content hash) that the
    manifest gives the same rows."""
    from mmpipe.inference.inputs import check_samples, read_input

    header = ["Utterance", "Emotion", "Dialogue_ID", "Utterance_ID"]
    rows = [[f"d{d} turn {u}", "joy", d, u] for d in range(2) for u in range(3)]
    write_table(tmp_path / "data" / "train_sent_emo.csv", header, rows)
    opts = {"text": "Utterance", "label": "Emotion", "id": ["Dialogue_ID", "Utterance_ID"], "group": "Dialogue_ID"}
    cfg = config("table", {"classes": ["anger", "joy"]}, layout_options=opts, text={"context_turns": 1})
    m = manifest.build(tmp_path / "data", cfg).manifest
    write_table(tmp_path / "new.csv", ["guid", "text", "group"], [[f"{d}_{u}", t, d] for t, _, d, u in rows])
    got, bad = check_samples(read_input(tmp_path / "new.csv", cfg), cfg)
    assert not bad
    assert [r["text_context"] for r in got] == m["text_context"].to_list() == [None, "d0 turn 0", "d0 turn 1",
                                                                               None, "d1 turn 0", "d1 turn 1"]
    assert [r["content_hash"] for r in got] == m["content_hash"].to_list()


def test_table_speakers_name_the_turns_of_the_context(tmp_path):
    """layout_options.speaker: the manifest keeps each row's speaker, every context turn reads "<speaker>: <text>"
    and the before part ends with the sample's own speaker; a renamed speaker changes the content of the turns
    around it; ``mmpipe predict`` tables with a speaker column get the same context."""
    from mmpipe.inference.inputs import check_samples, read_input

    header = ["Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID"]
    rows = [[f"d{d} turn {u}", ["Ross", "Monica"][u % 2], "joy", d, u] for d in range(2) for u in range(3)]
    write_table(tmp_path / "data" / "train_sent_emo.csv", header, rows)
    opts = {"text": "Utterance", "label": "Emotion", "id": ["Dialogue_ID", "Utterance_ID"], "group": "Dialogue_ID",
            "speaker": "Speaker"}
    cfg = config("table", {"classes": ["anger", "joy"]}, layout_options=opts,
                 text={"context_turns": 1, "context_turns_after": 1})
    m = manifest.build(tmp_path / "data", cfg).manifest
    assert m["speaker"].to_list()[:3] == ["Ross", "Monica", "Ross"]
    ctx = dict(zip(m["guid"], m["text_context"]))
    assert ctx["0_0"] == "Ross: | Monica: d0 turn 1"
    assert ctx["0_1"] == "Ross: d0 turn 0 Monica: | Ross: d0 turn 2"
    assert ctx["0_2"] == "Monica: d0 turn 1 Ross:" and ctx["1_0"] == "Ross: | Monica: d1 turn 1"
    h1 = dict(zip(m["guid"], m["content_hash"]))
    rows[1][1] = "Chandler"
    write_table(tmp_path / "data" / "train_sent_emo.csv", header, rows)
    m2 = manifest.build(tmp_path / "data", cfg).manifest
    assert {g for g, h in zip(m2["guid"], m2["content_hash"]) if h1[g] != h} == {"0_0", "0_1", "0_2"}
    plain = manifest.build(tmp_path / "data", config("table", {"classes": ["anger", "joy"]}, layout_options=opts,
                                                     text={"context_turns": 0})).manifest
    assert "text_context" not in plain.columns and plain["speaker"].to_list()[1] == "Chandler"

    write_table(tmp_path / "new.csv", ["guid", "text", "group", "speaker"],
                [[f"{d}_{u}", t, d, s] for t, s, _, d, u in rows])
    got, bad = check_samples(read_input(tmp_path / "new.csv", cfg), cfg)
    assert not bad
    assert [r["text_context"] for r in got] == m2["text_context"].to_list()
    assert [r["content_hash"] for r in got] == m2["content_hash"].to_list()

"""Manifest building: decoding, checks of bad input, stable validation split and shards."""

from __future__ import annotations

import json

import polars as pl
import pytest

from conftest import write_lab
from mmpipe.ingest import manifest
from mmpipe.core.errors import BadSampleError
from mmpipe.ingest.split import is_validation, shard_of

TAGS = ["negative", "neutral", "positive"]


def test_manifest_columns_encodings_and_test_labels(tmp_path, lab_config):
    texts = {"1": "caf\u00e9 \u201cgood\u201d".encode("cp1252"), "2": "\u201c\u597d\u201d great".encode("gb18030"),
             "3": "\ufeffplain".encode("utf-8"), "4": "fine".encode("utf-8")}
    write_lab(tmp_path, {"1": "positive", "2": "negative", "3": "neutral"}, ["4"], texts)
    m = manifest.build(tmp_path, lab_config).manifest
    assert m.columns == list(manifest.SCHEMA)
    rows = {r["guid"]: r for r in m.iter_rows(named=True)}
    assert rows["1"]["text"] == "caf\u00e9 \u201cgood\u201d" and rows["1"]["text_encoding"] == "cp1252"
    assert rows["2"]["text"].endswith("great") and rows["2"]["text_encoding"] == "gb18030"
    assert rows["3"]["text"] == "plain" and rows["3"]["text_encoding"] == "utf-8-sig"
    assert rows["4"]["split"] == "test" and rows["4"]["label"] is None
    assert {rows[g]["split"] for g in "123"} <= {"train", "val"}
    assert rows["1"]["image_path"] == "data/1.jpg" and rows["1"]["audio_path"] is None
    assert not any(r["text_lossy"] for r in rows.values())


def test_unlisted_files_are_counted_not_encoded(tmp_path, lab_config):
    write_lab(tmp_path, {"1": "positive"}, ["2"])
    (tmp_path / "data" / "99.txt").write_text("orphan")
    (tmp_path / "data" / "99.jpg").write_bytes((tmp_path / "data" / "1.jpg").read_bytes())
    res = manifest.build(tmp_path, lab_config)
    assert res.unlisted == ["99.jpg", "99.txt"]
    assert "99" not in res.manifest["guid"].to_list()


@pytest.mark.parametrize("case, needle", [
    ("missing", "2.jpg is missing"),
    ("bad_image", "cannot read image"),
    ("empty_text", "2.txt is empty"),
    ("duplicate", "duplicate guid 1"),
    ("unknown_tag", "unknown tag 'happy'"),
])
def test_bad_input_names_file_and_line(tmp_path, lab_config, case, needle):
    train = {"1": "positive", "2": "negative", "3": "neutral"}
    write_lab(tmp_path, train, ["4"])
    data = tmp_path / "data"
    if case == "missing":
        (data / "2.jpg").unlink()
    elif case == "bad_image":
        (data / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    elif case == "empty_text":
        (data / "2.txt").write_bytes(b"   \n")
    elif case == "duplicate":
        (tmp_path / "train.txt").write_text("guid,tag\n1,positive\n2,negative\n1,neutral\n3,neutral\n")
    elif case == "unknown_tag":
        (tmp_path / "train.txt").write_text("guid,tag\n1,positive\n2,happy\n3,neutral\n")
    with pytest.raises(BadSampleError) as err:
        manifest.build(tmp_path, lab_config)
    msg = str(err.value)
    assert needle in msg
    line = 4 if case == "duplicate" else 3  # the second '1' / guid 2
    assert f"train.txt:{line}" in msg

    lab_config["on_bad_sample"] = "skip"
    res = manifest.build(tmp_path, lab_config)
    assert len(res.skipped) == 1 and needle in str(res.skipped[0])
    kept = set(res.manifest["guid"])
    assert "4" in kept and "3" in kept


def test_skipped_samples_are_listed_in_problem_log(tmp_path, lab_config):
    write_lab(tmp_path, {"1": "positive", "2": "negative"}, ["3"])
    (tmp_path / "data" / "2.jpg").unlink()
    lab_config["on_bad_sample"] = "skip"
    res = manifest.build(tmp_path, lab_config)
    shards = [tmp_path / "out" / f"{i}.parquet" for i in range(4)]
    manifest.write(res, tmp_path / "out" / "m.parquet", shards, tmp_path / "out" / "problems.json")
    log = json.loads((tmp_path / "out" / "problems.json").read_text())
    assert log["skipped"][0]["guid"] == "2" and log["skipped"][0]["line"] == 3
    assert pl.read_parquet(tmp_path / "out" / "m.parquet").height == 2


def test_validation_split_is_stratified_and_stable():
    guids = [str(i) for i in range(6000)]
    labels = [TAGS[i % 3] for i in range(6000)]
    val = {g for g, t in zip(guids, labels) if is_validation(g, t, 0.2, seed=7)}
    for tag in TAGS:
        share = sum(1 for g, t in zip(guids, labels) if t == tag and g in val) / 2000
        assert 0.17 < share < 0.23, (tag, share)
    # growing the set never moves an existing guid; a different seed gives a different cut
    assert all(is_validation(g, t, 0.2, seed=7) == (g in val) for g, t in zip(guids, labels))
    other = {g for g, t in zip(guids, labels) if is_validation(g, t, 0.2, seed=8)}
    assert other != val


def test_group_split_keeps_groups_together():
    groups = {f"u{i}": f"video{i // 10}" for i in range(400)}
    side = {}
    for g, grp in groups.items():
        side.setdefault(grp, set()).add(is_validation(g, "positive", 0.3, seed=1, group=grp))
    assert all(len(v) == 1 for v in side.values())
    assert 0 < sum(True in v for v in side.values()) < len(side)


def test_shards_are_stable_and_rewritten_only_when_changed(tmp_path, lab_config):
    assert [shard_of(str(g), 8) for g in range(50)] == [shard_of(str(g), 8) for g in range(50)]
    train = {str(i): TAGS[i % 3] for i in range(1, 41)}
    write_lab(tmp_path / "d", train, ["41", "42"])
    out = tmp_path / "out"
    shards = [out / f"{i}.parquet" for i in range(8)]
    res = manifest.build(tmp_path / "d", lab_config)
    assert sorted(manifest.write(res, out / "m.parquet", shards, out / "p.json")) == list(range(8))
    assert manifest.write(res, out / "m.parquet", shards, out / "p.json") == []
    # a new sample touches exactly its own shard
    write_lab(tmp_path / "d", {**train, "43": "positive"}, ["41", "42"])
    res = manifest.build(tmp_path / "d", lab_config)
    assert manifest.write(res, out / "m.parquet", shards, out / "p.json") == [shard_of("43", 8)]
    total = sum(pl.read_parquet(p).height for p in shards)
    assert total == 43
    assert pl.read_parquet(shards[0]).columns == manifest.SLICE_COLUMNS

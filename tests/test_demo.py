"""The demo data set: deterministic, stable under adding samples, as messy as the real data, and with text and
image carrying complementary evidence about the label."""

from __future__ import annotations

import collections
import colorsys
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mmpipe.ingest.decode import decode_file
from mmpipe.ingest.demo import (_HUES, _WORDS, DEFAULT_N, ENCODINGS, EVIDENCE, LABELS, demo_cues, demo_evidence,
                                demo_sample, demo_split, demo_text, encoding_of_demo_text, label_of_demo, make_demo)
from mmpipe.ingest.split import is_validation
from mmpipe.reporting.summary import MIN_VAL_PER_CLASS, MIN_VAL_SAMPLES

REPO = Path(__file__).resolve().parents[1]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "guid,tag"
    return [tuple(line.split(",")) for line in lines[1:]]


@pytest.fixture(scope="module")
def demo300(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("d300"), n=300, seed=0)


@pytest.fixture(scope="module")
def demo90(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("d90"), n=90, seed=0)


def test_same_seed_same_bytes(demo90, tmp_path):
    again = make_demo(tmp_path / "again", n=90, seed=0)
    assert _files(again) == _files(demo90)
    other = make_demo(tmp_path / "other", n=90, seed=1)
    assert _files(other) != _files(demo90)


def test_size_and_layout(demo90):
    files = _files(demo90)
    assert sum(map(len, files.values())) < 2_000_000
    assert len([f for f in files if f.startswith("data/")]) == 2 * 93
    assert {f for f in files if not f.startswith("data/")} == {"train.txt", "test_without_label.txt"}


def test_adding_samples_keeps_old_ones(demo300, tmp_path):
    bigger = make_demo(tmp_path / "d303", n=303, seed=0)
    old, new = _files(demo300), _files(bigger)
    data_old = {k: v for k, v in old.items() if k.startswith("data/")}
    assert {k: new[k] for k in data_old} == data_old
    assert set(new) - set(old) == {f"data/{g}.{ext}" for g in (304, 305, 306) for ext in ("txt", "jpg")}
    for name in ("train.txt", "test_without_label.txt"):
        rows_old, rows_new = _rows(demo300 / name), _rows(bigger / name)
        assert rows_new[: len(rows_old)] == rows_old
        assert {g for g, _ in rows_new[len(rows_old):]} <= {"304", "305", "306"}
    listed_new = {g for name in ("train.txt", "test_without_label.txt") for g, _ in _rows(bigger / name)}
    assert listed_new >= {"304", "305", "306"}
    # Shrinking back removes the extra files and restores the old lists exactly.
    make_demo(bigger, n=300, seed=0)
    assert _files(bigger) == old


def test_lists(demo300):
    train, test = _rows(demo300 / "train.txt"), _rows(demo300 / "test_without_label.txt")
    guids = [g for g, _ in train + test]
    assert len(guids) == len(set(guids)) == 300
    assert {t for _, t in test} == {"null"}
    assert {t for _, t in train} == set(LABELS)
    assert len(test) == 60  # one in each block of five
    for g, tag in train:
        assert tag == label_of_demo(0, int(g)) and demo_split(0, int(g)) == "train"
    assert all(demo_split(0, int(g)) == "test" for g, _ in test)
    on_disk = {p.stem for p in (demo300 / "data").glob("*.txt")}
    assert on_disk == {p.stem for p in (demo300 / "data").glob("*.jpg")}
    unlisted = on_disk - set(guids)
    assert unlisted == {"1", "2", "3"}
    assert sorted(map(int, on_disk)) == list(range(1, 304))


def _sentiment_words(text: str) -> set[str]:
    """The classes whose sentiment words occur (as whole words) in ``text``."""
    return {lab for lab, words in _WORDS.items() if any(re.search(rf"\b{w}\b", text.lower()) for w in words)}


def test_labels_are_mixed_and_learnable(demo300):
    train = _rows(demo300 / "train.txt")
    counts = collections.Counter(t for _, t in train)
    assert counts["positive"] > counts["negative"] > counts["neutral"] > 10
    # a text shows its label's sentiment words exactly when its latent text cue says so, and no other class's
    shown = 0
    for g, t in train:
        cue = demo_cues(0, int(g))[0]
        words = _sentiment_words(decode_file(demo300 / "data" / f"{g}.txt").text)
        assert words == ({t} if cue else set()), (g, cue, words)
        shown += cue is not None
    assert 0.35 < shown / len(train) < 0.65


def _lookup_accuracy(cues: list[tuple], labels: list[str]) -> float:
    """Fit the best rule from ``cues`` to the label (majority label per cue value) on the first half, score it
    on the second half: how well the label can be recovered from that information at all."""
    half = len(labels) // 2
    table: dict[tuple, collections.Counter] = collections.defaultdict(collections.Counter)
    for c, y in zip(cues[:half], labels[:half]):
        table[c][y] += 1
    prior = collections.Counter(labels[:half]).most_common(1)[0][0]
    pred = [table[c].most_common(1)[0][0] if c in table else prior for c in cues[half:]]
    return float(np.mean([p == y for p, y in zip(pred, labels[half:])]))


def test_modalities_are_complementary():
    """From the generator's own latents (no encoders): the label is recovered far better from what the text
    and the image show together than from either alone, which is what the demo is there to show."""
    guids = range(1, 4001)
    labels = [label_of_demo(0, g) for g in guids]
    cues = [demo_cues(0, g) for g in guids]
    evidence = collections.Counter(demo_evidence(0, g) for g in guids)
    assert set(evidence) == set(EVIDENCE) and evidence["text"] > 1000 and evidence["image"] > 1000
    for g, (t, i) in zip(guids, cues):  # a cue, where there is one, is the label itself
        assert t in (None, labels[g - 1]) and i in (None, labels[g - 1])
    acc_text = _lookup_accuracy([(t,) for t, _ in cues], labels)
    acc_image = _lookup_accuracy([(i,) for _, i in cues], labels)
    acc_both = _lookup_accuracy(cues, labels)
    majority = _lookup_accuracy([()] * len(labels), labels)
    assert majority < acc_text < 0.75 and majority < acc_image < 0.75
    assert acc_both > max(acc_text, acc_image) + 0.2 and acc_both > 0.9


def test_images_show_their_cue(demo300):
    """An image with a cue has its label's hue (saturated); one without is grey (its typical colour, the
    per-channel median, has next to no saturation)."""
    seen = collections.Counter()
    for g in range(1, 304):
        s = demo_sample(0, g)
        if s.image_kind not in ("RGB-JPEG", "RGB-PNG", "RGBA-PNG"):
            continue
        with Image.open(demo300 / "data" / f"{g}.jpg") as im:
            rgb = np.median(np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3), axis=0) / 255
        hue, sat, _ = colorsys.rgb_to_hsv(*rgb)
        if s.image_cue is None:
            assert sat < 0.12, g
        else:
            assert sat > 0.35, g
            assert min(abs(hue - _HUES[s.image_cue]), 1 - abs(hue - _HUES[s.image_cue])) < 0.08, g
        seen[s.image_cue] += 1
    assert seen[None] > 20 and all(seen[lab] > 10 for lab in LABELS)


def test_default_demo_validation_is_big_enough_to_rank_on():
    """config.yaml's demo size gives a validation split the summary does not warn about."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    n, seed = config["demo"]["n"], config["demo"]["seed"]
    assert n == DEFAULT_N
    val = collections.Counter()
    for g in range(4, n + 4):  # the three unlisted guids come first
        label = label_of_demo(seed, g)
        if demo_split(seed, g) == "train" and is_validation(str(g), label, config["split"]["val_fraction"],
                                                             config["seed"]):
            val[label] += 1
    assert sum(val.values()) >= MIN_VAL_SAMPLES
    assert min(val[lab] for lab in LABELS) >= MIN_VAL_PER_CLASS


def test_n_test_override(tmp_path):
    root = make_demo(tmp_path / "d", n=20, seed=3, n_test=7, n_unlisted=0)
    assert len(_rows(root / "test_without_label.txt")) == 7 and len(_rows(root / "train.txt")) == 13
    assert sorted(int(p.stem) for p in (root / "data").glob("*.txt")) == list(range(1, 21))


def test_every_text_decodes_to_the_intended_text(demo300):
    seen = collections.Counter()
    for g in range(1, 304):
        want_text, want_enc = demo_text(0, g), encoding_of_demo_text(0, g)
        dec = decode_file(demo300 / "data" / f"{g}.txt")
        assert (dec.text, dec.encoding, dec.lossy) == (want_text, want_enc, False), g
        seen[want_enc] += 1
    assert set(seen) == set(ENCODINGS)
    assert seen["utf-8"] < 303 * 0.6  # a good share of the texts are not UTF-8


def test_text_quirks(demo300):
    texts = [demo_text(0, g) for g in range(1, 304)]
    assert sum(t.startswith("RT @") for t in texts) > 10
    assert sum("http://t.co/" in t for t in texts) > 50
    assert sum(any(ord(c) > 0xFFFF for c in t) for t in texts) > 20  # emoji
    for g in range(1, 304):
        s = demo_sample(0, g)
        raw = (demo300 / "data" / f"{g}.txt").read_bytes()
        assert raw == s.text_bytes
        if s.encoding in ("gb18030", "cp1252", "latin-1"):
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
        if s.encoding == "cp1252":
            assert any(0x80 <= b <= 0x9F for b in raw)
        if s.encoding == "utf-8-sig":
            assert raw.startswith(b"\xef\xbb\xbf")


def test_images_vary_and_open(demo300):
    kinds, sizes = collections.Counter(), set()
    for g in range(1, 304):
        path = demo300 / "data" / f"{g}.jpg"
        with Image.open(path) as im:
            im.load()
            kinds[(im.format, im.mode)] += 1
            sizes.add(im.size)
            assert 32 <= min(im.size) and max(im.size) <= 320
    assert set(kinds) == {("JPEG", "RGB"), ("JPEG", "L"), ("JPEG", "CMYK"), ("PNG", "RGBA"), ("PNG", "RGB")}
    assert len(sizes) > 100
    assert len({w / h for w, h in sizes}) > 10


def test_cli(tmp_path):
    out = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "mmpipe.ingest.demo", str(out), "--n", "12", "--seed", "2"], check=True,
                   capture_output=True)
    assert _files(out) == _files(make_demo(tmp_path / "api", n=12, seed=2))

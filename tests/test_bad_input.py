"""Every kind of bad input gets a clear verdict, in ``on_bad_sample: fail`` and ``skip``: the matrix.

Each case writes a small lab-layout fixture with one fault and builds the manifest as the workflow's manifest job
does (``mmpipe.ingest.manifest.build``, then ``write``). A verdict is either an error whose message names the file
(and line, or guid) and what is wrong, with nothing written; or a manifest without the bad sample and with the
problem listed (skip); or ``ok`` (the input is fine and read correctly, e.g. a UTF-16 list or Shift-JIS text).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from conftest import write_lab
from mmpipe.core.errors import BadSampleError, MmpipeError
from mmpipe.ingest import manifest

TRAIN = {str(i): ["negative", "neutral", "positive"][i % 3] for i in range(1, 13)}
TEST = ["20", "21"]


def _lab(root: Path) -> Path:
    return write_lab(root, TRAIN, TEST)


def binary_text(root):
    rng = random.Random(0)
    (root / "data" / "3.txt").write_bytes(bytes(rng.randrange(256) for _ in range(300)))


def nul_text(root):
    (root / "data" / "3.txt").write_bytes(b"\x00" * 64)


def unsafe_guid(root):
    (root / "train.txt").write_text((root / "train.txt").read_text() + "../x,positive\n")


def dup_test_guid(root):
    (root / "test_without_label.txt").write_text((root / "test_without_label.txt").read_text() + "3,null\n")


def bad_test_sample(root):
    (root / "data" / "20.jpg").unlink()


def two_images(root):
    Image.new("RGB", (8, 8), "red").save(root / "data" / "3.png")


def empty_train(root):
    (root / "train.txt").write_text("guid,tag\n")


def missing_folder(root):
    import shutil

    shutil.rmtree(root)


def truncated_image(root):
    data = (root / "data" / "3.jpg").read_bytes()
    (root / "data" / "3.jpg").write_bytes(data[: len(data) // 3])


def empty_text(root):
    (root / "data" / "3.txt").write_bytes(b"   \n")


def unknown_tag(root):
    (root / "train.txt").write_text((root / "train.txt").read_text() + "13,happy\n")


def utf16_list(root):
    text = (root / "train.txt").read_text()
    (root / "train.txt").write_bytes(text.encode("utf-16"))  # Excel's "Unicode text"


def shift_jis_text(root):
    (root / "data" / "3.txt").write_bytes("今日はとても良い天気ですね。散歩に行きましょう！".encode("shift_jis"))


def animated_gif(root):
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    frames[0].save(root / "data" / "3.jpg", format="GIF", save_all=True, append_images=frames[1:])


# kind -> (fault, fail-mode verdict, skip-mode verdict); a verdict is "ok", "skip" (left out and listed) or the
# words the error must hold. The first word of an error verdict is the file it must name.
MATRIX: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "random bytes as text": (binary_text, "3.txt|is not text", "skip"),
    "NUL bytes as text": (nul_text, "3.txt|is not text (64 NUL byte(s)", "skip"),
    "guid that is a path": (unsafe_guid, "train.txt|not a plain file name", "skip"),
    "test guid also in train": (dup_test_guid, "test_without_label.txt|duplicate guid 3",
                                "test_without_label.txt|a test sample cannot be left out"),
    "bad test sample": (bad_test_sample, "test_without_label.txt|20.jpg is missing",
                        "test_without_label.txt|a test sample cannot be left out"),
    "two images for one guid": (two_images, "3.png|two image files", "skip"),
    "empty train list": (empty_train, "|no labelled training samples", "|no labelled training samples"),
    "missing data folder": (missing_folder, "train.txt|the data folder is missing",
                            "train.txt|the data folder is missing"),
    "truncated image": (truncated_image, "train.txt|cannot read image", "skip"),
    "empty text": (empty_text, "train.txt|is empty", "skip"),
    "unknown tag": (unknown_tag, "train.txt|unknown tag 'happy'", "skip"),
    "UTF-16 list": (utf16_list, "ok", "ok"),
    "Shift-JIS text": (shift_jis_text, "ok", "ok"),
    "animated GIF named .jpg": (animated_gif, "ok", "ok"),
}


def _config(lab_config, mode):
    return {**lab_config, "on_bad_sample": mode}


@pytest.mark.parametrize("mode", ["fail", "skip"])
@pytest.mark.parametrize("kind", list(MATRIX))
def test_bad_input_matrix(kind, mode, tmp_path, lab_config):
    fault, fail_verdict, skip_verdict = MATRIX[kind]
    root = _lab(tmp_path / "lab")
    fault(root)
    verdict = fail_verdict if mode == "fail" else skip_verdict
    out = tmp_path / "results"
    config = _config(lab_config, mode)
    if verdict in ("ok", "skip"):
        res = manifest.build(root, config)
        manifest.write(res, out / "manifest.parquet", [out / "shards" / "000.parquet"], out / "problems.json")
        guids = set(res.manifest["guid"])
        assert set(TEST) <= guids  # every test guid keeps its row
        if verdict == "skip":  # left out, and listed with its file and problem
            assert res.skipped and not {p.guid for p in res.skipped if p.guid} & guids
            assert all(p.file and p.problem for p in res.skipped)
        else:
            assert not res.skipped and len(guids) == len(TRAIN) + len(TEST)
        return
    file, words = verdict.split("|")
    with pytest.raises(MmpipeError) as info:
        res = manifest.build(root, config)
        manifest.write(res, out / "manifest.parquet", [out / "shards" / "000.parquet"], out / "problems.json")
    message = str(info.value)
    assert words in message and file in message, message
    assert "\n" not in message.split(":", 1)[0]
    assert not (out / "manifest.parquet").exists()  # nothing that looks complete


def test_what_ok_means(tmp_path, lab_config):
    """The ``ok`` cases are read right, not just accepted."""
    root = _lab(tmp_path / "a")
    utf16_list(root)
    shift_jis_text(root)
    animated_gif(root)
    res = manifest.build(root, lab_config)
    row = res.manifest.filter(res.manifest["guid"] == "3").row(0, named=True)
    assert row["text"] == "今日はとても良い天気ですね。散歩に行きましょう！" and not row["text_lossy"]
    assert sorted(res.manifest.filter(res.manifest["split"] != "test")["guid"]) == sorted(TRAIN)
    assert res.multi_frame == ["data/3.jpg"]


def test_class_only_in_validation_or_test_is_refused(tmp_path):
    """A class with no training sample (here: given only in the layout's own validation split)."""
    from mmpipe.core.config import validate

    (tmp_path / "t.csv").write_text("id,text,label\n" + "".join(
        f"u{i},text {i},{'joy' if i % 2 else 'anger'}\n" for i in range(8)))
    (tmp_path / "v.csv").write_text("id,text,label\nv1,text,fear\n")
    config = validate({"data": str(tmp_path), "layout": "table",
                       "layout_options": {"files": {"train": "t.csv", "val": "v.csv"}},
                       "labels": {"classes": ["anger", "fear", "joy"]}, "encoders": {"t": {"backend": "hf_text"}}})
    with pytest.raises(BadSampleError, match="fear have 1 val sample"):
        manifest.build(tmp_path, config)


def test_non_finite_vectors_are_refused_at_write_and_read(tmp_path):
    from mmpipe.core.shards import ShardError, read_shards, write_shard

    X = np.ones((3, 4), np.float32)
    X[1, 2] = np.inf
    with pytest.raises(ShardError, match=r"encoder 'text' gave NaN or infinite vectors for 1 sample\(s\) \(b\)"):
        write_shard(tmp_path / "a.parquet", ["a", "b", "c"], X, {"encoder": "text"})
    assert not (tmp_path / "a.parquet").exists()
    write_shard(tmp_path / "ok.parquet", ["a", "b", "c"], np.ones((3, 4)), {"encoder": "text"})
    data = (tmp_path / "ok.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="cut.parquet: not a readable mmpipe feature shard .* rebuild it"):
        read_shards([tmp_path / "cut.parquet"])


def test_outputs_keep_the_umask(tmp_path):
    import os

    from mmpipe.core.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "r.txt", "x")
        assert (tmp_path / "r.txt").stat().st_mode & 0o777 == 0o644
        os.umask(0o002)
        write_text(tmp_path / "g.txt", "x")
        assert (tmp_path / "g.txt").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_a_failed_run_ends_with_the_mmpipe_error(tmp_path):
    """A real Snakemake run on a folder with a binary text: the console is short, its last lines hold the one-line
    mmpipe error (the traceback is in the job's log), and no manifest that looks complete is left."""
    import yaml

    from conftest import REPO
    from workflow import snakemake, write_config

    root = _lab(tmp_path / "lab")
    binary_text(root)
    write_config(tmp_path, {**yaml.safe_load((REPO / "config.yaml").read_text()), "data": str(root)})
    proc = snakemake(tmp_path, "predictions", "--workflow-profile", str(REPO / "profiles" / "default"), check=False)
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0 and len(console) < 5000, console
    tail = console.strip().splitlines()[-6:]
    assert any(line.startswith("mmpipe: ") and "3.txt is not text" in line and "train.txt:" in line
               for line in tail), tail
    assert "Traceback" not in console
    assert "Traceback" in (tmp_path / "logs" / "lab" / "manifest.log").read_text()
    assert not (tmp_path / "results" / "lab" / "manifest.parquet").exists()

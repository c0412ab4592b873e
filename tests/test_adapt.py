"""Cross-fitted adapted encoders (PEFT LoRA / DoRA, full fine-tuning) on a tiny BERT."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from mmpipe.core.errors import ConfigError
from mmpipe.core.shards import read_shards
from mmpipe.encoders.adapt import encode_crossfitted, settings, train_from_manifest
from mmpipe.fusion.cv import write_folds
from tiny_models import tiny_text_model
from workflow import count, planned_jobs, snakemake

WORDS = {"positive": "good great happy love nice", "negative": "bad sad awful hate terrible",
         "neutral": "okay fine neutral the day"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_text_model(tmp_path_factory.mktemp("tinybert") / "text")


def _manifest(path, n=60, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    classes = sorted(WORDS)
    labels = labels if labels is not None else [classes[i % 3] for i in range(n)]
    texts = [" ".join(rng.choice(WORDS[c].split(), 3)) + " " + " ".join(rng.choice(WORDS["neutral"].split(), 2))
             for c in labels]
    split = ["train"] * (n - 9) + ["test"] * 9
    pl.DataFrame({"guid": [f"g{i}" for i in range(n)], "split": split,
                  "label": [lab if s == "train" else None for lab, s in zip(labels, split)],
                  "text": texts}).write_parquet(path)
    return labels


def _spec(model_dir, **adapt):
    return {"backend": "hf_text", "model": str(model_dir), "max_length": 16, "batch_size": 16,
            "adapt": {"method": "lora", "r": 4, "alpha": 8, "epochs": 2, "batch_size": 8, "lr": 5e-3, **adapt}}


def _crossfit(tmp_path, tag, spec, manifest, folds):
    dirs = []
    for k in range(3):
        d = tmp_path / tag / f"fold{k}"
        train_from_manifest("text_ft", spec, str(manifest), str(folds), k, d, sorted(WORDS), False, threads=1)
        dirs.append(d)
    m = pl.read_parquet(manifest)
    fold_of = dict(zip(*pl.read_parquet(folds).select("guid", "r0").to_dict(as_series=False).values()))
    vec, fp = encode_crossfitted(spec, dirs, m["guid"].to_list(), m["text"].to_list(), fold_of, 1, progress=False)
    return m["guid"].to_list(), vec, fp, fold_of


def test_settings_fill_defaults_and_name_the_problem():
    a = settings({"backend": "hf_text", "adapt": {"method": "dora"}})
    assert a["method"] == "dora" and a["rslora"] is True and a["lr"] == 5e-4
    assert settings({"backend": "hf_text", "adapt": {"method": "full"}})["lr"] == 8e-5
    with pytest.raises(ConfigError, match="encoders.t.adapt: method"):
        settings({"backend": "hf_text", "adapt": {"method": "qlora"}}, "t")
    with pytest.raises(ConfigError, match="unknown setting"):
        settings({"backend": "hf_text", "adapt": {"rank": 4}}, "t")
    with pytest.raises(ConfigError, match="not 'hf_image'"):
        settings({"backend": "hf_image", "adapt": {}}, "t")


def test_permuting_fold_labels_changes_no_feature_of_that_fold(tmp_path, model_dir):
    """Cross-fitting by construction: a sample's feature comes from the adapter that never saw its label."""
    manifest, folds = tmp_path / "manifest.parquet", tmp_path / "folds.parquet"
    labels = _manifest(manifest)
    write_folds(str(manifest), str(folds), {"method": "cv", "folds": 3, "repeats": 1}, seed=0)
    spec = _spec(model_dir)
    guids, before, fp, fold_of = _crossfit(tmp_path, "a", spec, manifest, folds)
    assert before.shape == (60, 32 + 3) and before.dtype == np.float32
    np.testing.assert_allclose(before[:, 32:].sum(1), 1.0, atol=1e-5)  # class probabilities of the fold head
    # permute the labels of fold 0 among its own samples (the folds stay as they were)
    in0 = [i for i, g in enumerate(guids) if fold_of.get(g) == 0]
    rng = np.random.default_rng(1)
    permuted = list(labels)
    for i, j in zip(in0, rng.permutation(in0)):
        permuted[i] = labels[j]
    assert permuted != labels
    m = pl.read_parquet(manifest)  # the same texts, fold 0's labels shuffled
    m.with_columns(pl.Series("label", [lab if s == "train" else None for lab, s in zip(permuted, m["split"])])
                   ).write_parquet(manifest)
    _, after, fp2, _ = _crossfit(tmp_path, "b", spec, manifest, folds)
    assert np.array_equal(before[in0], after[in0]), "a fold-0 feature depends on the labels of fold 0"
    others = [i for i, g in enumerate(guids) if fold_of.get(g) in (1, 2)]
    assert not np.array_equal(before[others], after[others]), "the other folds' adapters saw fold 0's labels"
    outside = [i for i, g in enumerate(guids) if g not in fold_of]  # test: the mean over the 3 adapters
    assert len(outside) == 9 and not np.array_equal(before[outside], after[outside])
    assert fp["adapters"] != fp2["adapters"] and fp["labels"] != fp2["labels"]


@pytest.mark.parametrize("method", ["dora", "full"])
def test_dora_and_full_fine_tuning_train_and_encode(tmp_path, model_dir, method):
    manifest, folds = tmp_path / "manifest.parquet", tmp_path / "folds.parquet"
    _manifest(manifest, n=30)
    write_folds(str(manifest), str(folds), {"method": "cv", "folds": 3, "repeats": 1}, seed=0)
    spec = _spec(model_dir, method=method, epochs=1)
    d = tmp_path / "fold0"
    meta = train_from_manifest("t", spec, str(manifest), str(folds), 0, d, sorted(WORDS), False, threads=1)
    assert json.loads((d / "adapter.json").read_text())["weights"] == meta["weights"]
    assert (d / ("encoder.pt" if method == "full" else "adapter")).exists()
    assert meta["n_train"] == len(pl.read_parquet(folds).filter(pl.col("r0") != 0))


def test_workflow_trains_one_adapter_per_fold_and_heads_never_retrain_it(tiny_bundle, tmp_path):
    """A real Snakemake run (the shared bundle fixture): adapters are fold targets, the bundle carries them, and
    changing a head reruns no adapter and no extraction."""
    import shutil

    import yaml

    from workflow import write_config

    res = tiny_bundle / "results/demo"
    for k in range(2):
        assert (res / f"adapters/text_ft/fold{k}/adapter.json").exists()
    guids, X, meta = read_shards(sorted((res / "features/text_ft").glob("*.parquet")))
    assert X.shape[1] == 32 + 3 and meta["fingerprint"]["folds"] == 2
    metrics = json.loads((res / "ablations/text_ft__logreg/metrics.json").read_text())
    assert metrics["cv"]["macro_f1"]["mean"] > 0 and len(metrics["folds"]) == 2
    model = json.loads((res / "model/model.json").read_text())
    assert [json.loads((res / "model" / a / "adapter.json").read_text())["fold"]
            for a in model["encoders"]["text_ft"]["adapters"]] == [0, 1]
    work = tmp_path / "w"
    shutil.copytree(tiny_bundle, work, symlinks=True)
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["heads"]["logreg"] = {"C": 0.5}
    write_config(work, config)
    jobs = planned_jobs(snakemake(work, "predictions", "-n"))
    assert count(jobs, "adapter") == 0 and count(jobs, "extract") == 0
    assert count(jobs, "ablation", ablation="text_ft__logreg") == 1
    assert count(jobs, "ablation", ablation="text_ft__concat_mlp") == 0


def test_adapter_trains_and_encodes_with_dialogue_context(tmp_path, model_dir):
    """``context: true``: the fold adapters train on (text, context) pairs from the manifest's ``text_context``, and
    the cross-fitted features see the context."""
    manifest, folds = tmp_path / "manifest.parquet", tmp_path / "folds.parquet"
    _manifest(manifest, n=30)
    write_folds(str(manifest), str(folds), {"method": "cv", "folds": 3, "repeats": 1}, seed=0)
    m = pl.read_parquet(manifest)
    spec = {**_spec(model_dir, epochs=1), "context": True}
    metas = {}
    for tag, ctx in (("none", [None] * 30), ("ctx", ["awful hate" if i % 2 else "happy love" for i in range(30)])):
        m.with_columns(pl.Series("text_context", ctx, dtype=pl.String)).write_parquet(manifest)
        d = tmp_path / tag / "fold0"
        metas[tag] = train_from_manifest("t", spec, str(manifest), str(folds), 0, d, sorted(WORDS), False, threads=1)
        fold_of = {g: 0 for g in m["guid"]}
        items = list(zip(m["text"].to_list(), ctx))
        metas[tag]["vec"] = encode_crossfitted(spec, [d], m["guid"].to_list(), items, fold_of, 1, progress=False)[0]
    assert metas["none"]["weights"] != metas["ctx"]["weights"]  # the context was in the training input
    assert not np.allclose(metas["none"]["vec"], metas["ctx"]["vec"], atol=1e-4)

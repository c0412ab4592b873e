"""Regression labels (CMU-MOSI-style sentiment scores): MMSA metrics, regression heads, context features,
majority baselines, summary and predictions, and a small end-to-end run on a MOSI-like folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mmpipe.core.errors import ConfigError
from mmpipe.fusion.ablation import majority_baseline, run_ablation
from mmpipe.fusion.context import add_context, group_mean_others, sequence_index, with_context
from mmpipe.fusion.dataset import SplitData
from mmpipe.fusion.heads import HEADS, build_head, load_head
from mmpipe.fusion.heads.sklearn_base import SklearnHead
from mmpipe.fusion.metrics import regression_metrics
from mmpipe.fusion.predict import predict
from mmpipe.reporting.summary import summarize

FAST = {"threads": 1}


# ---------------------------------------------------------------- metrics (MMSA conventions)

def test_regression_metrics_by_hand():
    t = [-2.4, -0.4, 0.0, 0.0, 0.6, 1.5, 2.5]
    p = [-1.6, 0.2, -0.3, 0.0, 0.4, 2.5, 4.0]
    m = regression_metrics(t, p)
    # has-0: negative (< 0) vs non-negative (>= 0) on all 7: wrong at -0.4 -> 0.2 and 0.0 -> -0.3
    assert m["acc2_has0"] == pytest.approx(5 / 7)
    # F1 weighted: negative class P=R=1/2 (support 2), non-negative P=R=4/5 (support 5)
    assert m["f1_has0"] == pytest.approx((2 * 0.5 + 5 * 0.8) / 7)
    # non-0: the two true zeros are dropped; wrong only at -0.4 -> 0.2
    assert m["acc2_non0"] == pytest.approx(4 / 5) and m["n_non0"] == 5
    # F1 weighted: negative P=1 R=1/2 -> 2/3 (support 2), positive P=3/4 R=1 -> 6/7 (support 3)
    assert m["f1_non0"] == pytest.approx((2 * 2 / 3 + 3 * 6 / 7) / 5)
    # Acc-7: clip to [-3, 3] (4.0 -> 3), round half to even as np.round (1.5 -> 2, 2.5 -> 2):
    # truth [-2, 0, 0, 0, 1, 2, 2] vs pred [-2, 0, 0, 0, 0, 2, 3]
    assert m["acc7"] == pytest.approx(5 / 7)
    # Acc-5: clip to [-2, 2]: truth [-2, 0, 0, 0, 1, 2, 2] vs pred [-2, 0, 0, 0, 0, 2, 2]
    assert m["acc5"] == pytest.approx(6 / 7)
    assert m["mae"] == pytest.approx((0.8 + 0.6 + 0.3 + 0 + 0.2 + 1.0 + 1.5) / 7)  # predictions not clipped
    tt, pp = np.array(t), np.array(p)
    dt, dp = tt - tt.mean(), pp - pp.mean()
    r = (dt * dp).sum() / np.sqrt((dt ** 2).sum() * (dp ** 2).sum())
    assert m["corr"] == pytest.approx(r)
    assert m["confusion_matrix"] == [[1, 1], [1, 4]] and m["n"] == 7
    json.dumps(m)


def test_regression_metrics_edge_cases():
    assert regression_metrics([1, 2, 3], [2, 4, 6])["corr"] == pytest.approx(1.0)
    assert regression_metrics([1, 2, 3], [3, 2, 1])["corr"] == pytest.approx(-1.0)
    m = regression_metrics([1.0, -1.0, 2.0], [0.0, -1.0, 0.0])  # a predicted 0 is non-negative (has-0)...
    assert m["acc2_has0"] == 1.0 and m["acc2_non0"] == pytest.approx(1 / 3)  # ...but not positive (non-0)
    assert regression_metrics([1.0, -1.0], [0.5, 0.5])["corr"] is None  # constant prediction: undefined
    assert regression_metrics([1.0, -1.0, 0.3], [0.35] * 3)["corr"] is None
    assert regression_metrics([-3.4, 3.6], [-2.6, 9.0])["acc7"] == 1.0  # both clipped to -3 / 3
    with pytest.raises(ValueError):
        regression_metrics([1.0], [np.nan])


# ---------------------------------------------------------------- context features

def test_group_mean_excludes_self_and_never_crosses_groups():
    X = np.arange(12, dtype=np.float32).reshape(6, 2) ** 2
    g = np.array(["a", "b", "a", "b", "b", "c"], dtype=object)
    C = group_mean_others(X, g)
    np.testing.assert_allclose(C[0], X[2])  # a: the other one only
    np.testing.assert_allclose(C[2], X[0])
    np.testing.assert_allclose(C[1], (X[3] + X[4]) / 2)  # b: the two others, never itself
    np.testing.assert_allclose(C[4], (X[1] + X[3]) / 2)
    np.testing.assert_allclose(C[5], 0)  # c: alone -> zeros
    out = add_context({"m": X}, g, "group_mean")
    assert out["m"].shape == (6, 4) and np.array_equal(out["m"][:, :2], X)
    assert add_context({"m": X}, g, "none")["m"] is X
    with pytest.raises(ValueError):
        add_context({"m": X}, None, "group_mean")
    with pytest.raises(ValueError):
        add_context({"m": X}, g, "lstm")


def test_with_context_keeps_splits_apart():
    """The same group name in train and test: each split's context uses its own rows only."""
    X = {"m": np.array([[1.0], [3.0]], dtype=np.float32)}
    Xt = {"m": np.array([[10.0], [20.0], [30.0]], dtype=np.float32)}
    d = SplitData(["n", "p"], X, np.array([0, 1]), X, np.array([0, 1]), Xt, None,
                  g_train=np.array(["v", "v"], dtype=object), g_val=np.array(["v", "v"], dtype=object),
                  g_test=np.array(["v", "v", "v"], dtype=object))
    c = with_context(d, "group_mean")
    np.testing.assert_allclose(c.X_train["m"][:, 1], [3.0, 1.0])
    np.testing.assert_allclose(c.X_test["m"][:, 1], [25.0, 20.0, 15.0])
    assert c.g_test is d.g_test and c.select(["m"]).g_train is d.g_train


def test_sequence_index_orders_guids_naturally():
    seq = sequence_index(np.array(["v", "v", "w", "v"], dtype=object), ["v_10", "v_2", "w_1", "v_1"])
    assert seq[:, 1].tolist() == [2, 1, 0, 0]
    assert seq[0, 0] == seq[1, 0] == seq[3, 0] != seq[2, 0]
    assert sequence_index(np.array(["a", "a"]))[:, 1].tolist() == [0, 1]  # no guids: row order
    with pytest.raises(ValueError):
        sequence_index(None, ["x"])


# ---------------------------------------------------------------- heads

def planted_regression(n_groups: int, seed: int, per_group: int = 6):
    """Scores in [-3, 3] carried by three modalities (a 12-d, b 10-d, c 8-d), each seeing a different part;
    utterances come in groups (videos) that share a group-level offset."""
    rng = np.random.default_rng(seed)
    geo = np.random.default_rng(7)
    n = n_groups * per_group
    groups = np.repeat([f"s{seed}v{i}" for i in range(n_groups)], per_group).astype(object)
    guids = [f"{g}_{k + 1}" for g, k in zip(groups, np.tile(np.arange(per_group), n_groups))]
    parts = rng.normal(size=(n, 3)) + np.repeat(rng.normal(size=(n_groups, 3)), per_group, axis=0)
    score = np.clip(parts.sum(1), -3, 3)

    def modality(d, j):
        u = geo.normal(size=d)
        return (rng.normal(size=(n, d)) * 0.7 + parts[:, j:j + 1] * u * 1.5 + 0.3).astype(np.float32)

    return {"a": modality(12, 0), "b": modality(10, 1), "c": modality(8, 2)}, score, groups, guids


@pytest.fixture(scope="module")
def reg3():
    return planted_regression(40, 0), planted_regression(15, 1), planted_regression(15, 2)


@pytest.mark.parametrize("head", HEADS.names())
def test_each_head_learns_a_planted_regression_signal(head, reg3, tmp_path):
    (X, y, g, gu), (Xv, yv, gv, guv), (Xt, yt, gt, gut) = reg3
    model = build_head(head, {**FAST, "task": "regression", "seed": 0})
    kw = {"groups": sequence_index(g, gu), "groups_val": sequence_index(gv, guv)} if model.uses_groups else {}
    kt = {"groups": sequence_index(gt, gut)} if model.uses_groups else {}
    model.fit(X, y, Xv, yv, **kw)
    pred = model.predict(Xt, **kt)
    assert pred.shape == (len(yt),) and pred.dtype == np.float64
    assert np.corrcoef(pred, yt)[0, 1] > 0.5
    with pytest.raises(TypeError):
        model.predict_proba(Xt, **kt)
    model.save(tmp_path / "m.pt")
    again = load_head(head, tmp_path / "m.pt")
    assert again.task == "regression" and np.array_equal(again.predict(Xt, **kt), pred)
    # every head records what it chose on validation MAE: the epochs, or the candidate C
    assert model.history_ and "val_mae" in model.history_[0]
    assert (model.best_epoch_ is None) == isinstance(model, SklearnHead)  # the baselines have no epochs


def test_regression_options():
    with pytest.raises(ConfigError, match="loss"):
        build_head("concat_mlp", {"task": "regression", "loss": "ce"})
    with pytest.raises(ConfigError, match="smote"):
        build_head("svm", {"task": "regression", "smote": True})
    with pytest.raises(ConfigError, match="task"):
        build_head("logreg", {"task": "ranking"})
    for loss in ("mse", "huber"):
        build_head("concat_mlp", {"task": "regression", "loss": loss})


def test_context_gru_uses_the_sequence():
    """A score that depends on the NEIGHBOURS' features only: a per-row head cannot see it, context_gru can."""
    rng = np.random.default_rng(0)

    def make(n_groups, seed):
        r = np.random.default_rng(seed)
        x = r.normal(size=(n_groups, 6, 4)).astype(np.float32)
        y = np.zeros((n_groups, 6))
        y[:, 1:] += x[:, :-1, 0]  # the previous utterance's feature 0
        groups = np.repeat([f"g{seed}_{i}" for i in range(n_groups)], 6).astype(object)
        guids = [f"{g}_{k}" for g, k in zip(groups, np.tile(np.arange(6), n_groups))]
        return {"m": x.reshape(-1, 4)}, y.reshape(-1), sequence_index(groups, guids)

    (X, y, s), (Xv, yv, sv), (Xt, yt, st) = make(60, 1), make(20, 2), make(20, 3)
    del rng
    gru = build_head("context_gru", {**FAST, "task": "regression"}).fit(X, y, Xv, yv, groups=s, groups_val=sv)
    flat = build_head("concat_mlp", {**FAST, "task": "regression"}).fit(X, y, Xv, yv)
    assert np.corrcoef(gru.predict(Xt, groups=st), yt)[0, 1] > 0.8
    assert np.corrcoef(flat.predict(Xt), yt)[0, 1] < 0.3
    with pytest.raises(ValueError):
        gru.predict(Xt)


def test_context_gru_classifies_seeded_and_round_trips(reg3, tmp_path):
    (X, y, g, gu), (Xv, yv, gv, guv), (Xt, yt, gt, gut) = reg3
    cls = lambda s: np.digitize(s, [-0.5, 0.5])  # noqa: E731  (3 classes)
    s, sv, st = sequence_index(g, gu), sequence_index(gv, guv), sequence_index(gt, gut)
    fit = lambda seed: build_head("context_gru", {**FAST, "seed": seed, "class_weight": "balanced"}).fit(  # noqa: E731
        X, cls(y), Xv, cls(yv), groups=s, groups_val=sv)
    m = fit(0)
    P = m.predict_proba(Xt, groups=st)
    assert P.shape == (len(yt), 3) and np.allclose(P.sum(1), 1, atol=1e-5)
    assert (P.argmax(1) == cls(yt)).mean() > 0.6 and "val_macro_f1" in m.history_[0]
    assert np.array_equal(fit(0).predict_proba(Xt, groups=st), P)  # same seed, same probabilities
    m.save(tmp_path / "g.pt")
    assert np.array_equal(load_head("context_gru", tmp_path / "g.pt").predict_proba(Xt, groups=st), P)
    with pytest.raises(ValueError):
        build_head("context_gru", FAST).fit(X, cls(y))  # no groups


# ---------------------------------------------------------------- ablation, summary, predictions

def split_data(reg3, labelled_test: bool = True) -> SplitData:
    (X, y, g, gu), (Xv, yv, gv, guv), (Xt, yt, gt, gut) = reg3
    cls = lambda s: (np.asarray(s) >= 0).astype(np.int64)  # noqa: E731
    return SplitData(["negative", "positive"], X, cls(y), Xv, cls(yv), Xt, cls(yt) if labelled_test else None,
                     gu, guv, gut, y, yv, yt if labelled_test else None, g, gv, gt)


def test_ablation_summary_predict_regression(reg3, tmp_path):
    data = split_data(reg3)
    files = []
    runs = (("svm", "svm", {}, [0]), ("mlp_ctx", "concat_mlp", {"context": "group_mean"}, [0]),
            ("gru", "context_gru", {}, [0, 1]))
    for name, head, params, seeds in runs:
        r = run_ablation(data, f"a+b+c__{name}", ["a", "b", "c"], head, {**FAST, **params}, seeds,
                         tmp_path / name, task="regression")
        assert r["task"] == "regression" and r["context"] == ("group_mean" if "ctx" in name else "none")
        assert {"acc2_has0", "acc2_non0", "f1_has0", "f1_non0", "acc7", "mae", "corr"} <= set(r["test"])
        assert r["test"]["corr"]["mean"] > 0.5
        assert r["majority_baseline"]["prediction"] == pytest.approx(float(np.median(data.s_train)))
        report = (tmp_path / name / "report.md").read_text()
        assert "Acc-2 non-0" in report and "Majority baseline" in report
        files.append(tmp_path / name / "metrics.json")
    assert r["params"] == FAST and r["best_epochs"][0] is not None  # the GRU early-stopped on val MAE

    s = summarize(files, tmp_path / "report.md", tmp_path / "summary.json")
    assert s["task"] == "regression" and s["selection_metric"] == "val_mae"
    maes = [a["val"]["mae"]["mean"] for a in s["ablations"]]
    assert maes == sorted(maes)  # lower is better
    assert s["majority_baseline"]["rule"] == "median training score"
    md = (tmp_path / "report.md").read_text()
    assert "majority baseline" in md and "## Test scores" in md and "val Acc-2 non-0" in md and "test MAE" in md

    for refit in (False, True):
        txt, pq = tmp_path / f"p{refit}.txt", tmp_path / f"p{refit}.parquet"
        scores = predict(data, tmp_path / "gru", refit, txt, pq, task="regression")
        lines = txt.read_text().splitlines()
        assert lines[0] == "guid,tag" and [ln.split(",")[0] for ln in lines[1:]] == data.guids_test
        df = pl.read_parquet(pq)
        assert df.columns == ["guid", "tag", "score"] and np.allclose(df["score"].to_numpy(), scores)
        assert df["tag"].to_list() == ["positive" if v >= 0 else "negative" for v in scores]
        assert np.corrcoef(scores, data.s_test)[0, 1] > 0.5
    predict(data, tmp_path / "mlp_ctx", False, tmp_path / "c.txt", tmp_path / "c.parquet")  # context re-applied
    with pytest.raises(ValueError):
        predict(data, tmp_path / "svm", False, tmp_path / "x.txt", tmp_path / "x.parquet", task="classification")


def test_majority_baseline_classification():
    X = {"m": np.zeros((5, 1), np.float32)}
    d = SplitData(["a", "b", "c"], X, np.array([1, 1, 2, 0, 1]), X, np.array([1, 0, 1, 1, 2]), X,
                  np.array([0, 0, 1, 2, 1]))
    b = majority_baseline(d)
    assert b["prediction"] == "b" and b["val"]["accuracy"] == pytest.approx(0.6)
    assert b["test"]["accuracy"] == pytest.approx(0.4)
    assert b["test"]["weighted_f1"] == pytest.approx(0.4 * (2 * 0.4 / 1.4))


def test_classification_summary_shows_the_majority_baseline(reg3, tmp_path):
    data = split_data(reg3)
    r = run_ablation(data, "a__logreg", ["a"], "logreg", FAST, [0], tmp_path / "lr")
    assert r["task"] == "classification" and r["majority_baseline"]["rule"] == "most frequent training class"
    s = summarize([tmp_path / "lr" / "metrics.json"], tmp_path / "s.md", tmp_path / "s.json")
    assert s["selection_metric"] == "val_macro_f1" and s["majority_baseline"]["prediction"] in data.classes
    md = (tmp_path / "s.md").read_text()
    row = next(ln for ln in md.splitlines() if "majority baseline" in ln)
    assert row.count("|") == 4 + 6 + 1  # rank, name, modalities, head + val and test acc / macro-F1 / weighted-F1


# ---------------------------------------------------------------- end to end (snakemake, features layout)

def write_mosi_like(root: Path, seed: int = 0) -> None:
    """A miniature cmu_mosi_poria2017 folder (mosi_poria form) with a planted signal: 10 train videos,
    4 test videos, 6 utterances each; text carries the score, audio half of it."""
    rng = np.random.default_rng(seed)
    dims = {"text": 6, "audio": 4}
    dirs = {m: rng.normal(size=d) for m, d in dims.items()}
    utts = []
    for v in range(14):
        offset = rng.normal()
        for seg in range(1, 7):
            score = float(np.clip(round(offset + rng.normal(), 1), -3, 3))
            utts.append({"utterance_id": f"vid{v}_{seg}", "video_id": f"vid{v}", "segment": seg,
                         "split": "train" if v < 10 else "test", "binary_label": int(score >= 0),
                         "sentiment_score": score, "transcript": f"UTTERANCE {seg}"})
    for split in ("train", "test"):
        part = [u for u in utts if u["split"] == split]
        for r, u in enumerate(part):
            u["row_in_split_feature_csv"] = r
        for m, d in dims.items():
            w = 1.0 if m == "text" else 0.5
            mat = np.array([[*(w * u["sentiment_score"] * dirs[m] + rng.normal(size=d) * 0.5), u["binary_label"]]
                            for u in part])
            (root / "features" / m).mkdir(parents=True, exist_ok=True)
            np.savetxt(root / "features" / m / f"{m}_{split}0.csv", mat, delimiter=",", fmt="%.6g")
    cols = ["row", "utterance_id", "video_id", "segment", "split", "row_in_split_feature_csv", "binary_label",
            "sentiment_score", "transcript"]
    with open(root / "mosi_utterances.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for i, u in enumerate(utts):
            w.writerow({"row": i, **u})


@pytest.mark.slow
def test_e2e_mosi_like_regression(tmp_path):
    from workflow import snakemake, write_config

    write_mosi_like(tmp_path / "mosi")
    cfg = {"data": "mosi", "layout": "vectors",
           "layout_options": {"format": "mosi_poria", "vectors": ["text", "audio"]},
           "labels": {"scheme": "regression", "range": [-3, 3], "classes": ["negative", "positive"]},
           "split": {"val_fraction": 0.2}, "shards": 1,
           "encoders": {"text": {"backend": "imported", "field": "text"},
                        "audio": {"backend": "imported", "field": "audio"}},
           "heads": {"gru": {"head": "context_gru", "max_epochs": 20}},
           "training": {"seeds": [0, 1]},
           "ablations": {"modalities": [["text", "audio"]]}}
    write_config(tmp_path, cfg)
    snakemake(tmp_path, "predictions")
    res = tmp_path / "results" / "mosi"
    m = pl.read_parquet(res / "manifest.parquet")
    val_videos = set(m.filter(pl.col("split") == "val")["group"])
    assert val_videos and not val_videos & set(m.filter(pl.col("split") == "train")["group"])  # carved by video
    s = json.loads((res / "summary.json").read_text())
    assert s["task"] == "regression" and s["selection_metric"] == "cv_mae" and len(s["ablations"]) == 1
    folds = pl.read_parquet(res / "folds.parquet").join(m.select("guid", "group"), on="guid")
    for r in ("r0", "r1"):  # cross-validation keeps every video in one fold
        assert folds.group_by("group").agg(pl.col(r).n_unique())[r].max() == 1
    for a in s["ablations"]:
        assert a["test"]["corr"]["mean"] > 0.5 and a["test"]["acc2_has0"]["mean"] > 0.6
    assert s["majority_baseline"]["test"]["corr"] is None
    pred = pl.read_parquet(res / "predictions.parquet")
    assert pred.columns == ["guid", "tag", "score"] and pred.height == 24
    lines = (res / "predictions.txt").read_text().splitlines()
    assert lines[0] == "guid,tag" and {ln.split(",")[1] for ln in lines[1:]} <= {"negative", "positive"}

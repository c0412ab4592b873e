"""Stage 2 around the heads: metrics, plots, ablation runs, the summary, predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mmpipe.fusion.ablation import run_ablation
from mmpipe.fusion.dataset import SplitData
from mmpipe.fusion.heads import HEADS
from mmpipe.fusion.metrics import aggregate, classification_metrics
from mmpipe.reporting.plots import confusion_png, curve_kind, curve_png
from mmpipe.fusion.predict import predict
from mmpipe.reporting.summary import summarize

CLASSES = ["negative", "neutral", "positive"]
PNG = b"\x89PNG\r\n\x1a\n"
FAST = {"threads": 1, "max_epochs": 15, "patience": 4}


def make_data(labelled_test: bool = True, seed: int = 0) -> SplitData:
    rng = np.random.default_rng(seed)
    geo = np.random.default_rng(99)
    ca, cb = geo.normal(size=(3, 6)) * 1.5, geo.normal(size=(3, 10)) * 1.5

    def split(n):
        y = np.arange(n) % 3
        rng.shuffle(y)
        return {"text": (ca[y] + rng.normal(size=(n, 6))).astype(np.float32),
                "image": (cb[y] + rng.normal(size=(n, 10))).astype(np.float32)}, y

    (Xtr, ytr), (Xva, yva), (Xte, yte) = split(150), split(60), split(45)
    guids_test = [f"g{i:03d}" for i in rng.permutation(45)]  # deliberately not sorted
    return SplitData(CLASSES, Xtr, ytr, Xva, yva, Xte, yte if labelled_test else None,
                     [f"t{i}" for i in range(150)], [f"v{i}" for i in range(60)], guids_test)


# ---------------------------------------------------------------- metrics

def test_classification_metrics_from_predictions_and_probabilities():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(y, pred, CLASSES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class"]["neutral"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                         "f1": pytest.approx(0.8), "support": 2}
    assert m["macro_f1"] == pytest.approx(np.mean([0.5, 0.8, 2 / 3]))
    assert m["log_loss"] is None and m["n"] == 6
    proba = np.eye(3)[pred] * 0.7 + 0.1
    mp = classification_metrics(y, proba, CLASSES)
    assert mp["accuracy"] == m["accuracy"] and mp["macro_f1"] == m["macro_f1"]
    assert mp["log_loss"] > 0
    # a class absent from both truth and prediction still has a row (F1 0, support 0)
    m4 = classification_metrics([0, 1], [0, 1], ["a", "b", "c"])
    assert m4["per_class"]["c"]["support"] == 0 and len(m4["confusion_matrix"]) == 3
    json.dumps(mp)  # plain JSON types


def test_aggregate_uses_sample_std():
    runs = [classification_metrics([0, 1, 2, 0], p, CLASSES) for p in ([0, 1, 2, 0], [0, 1, 2, 1], [1, 1, 2, 1])]
    agg = aggregate(runs)
    accs = [1.0, 0.75, 0.5]
    assert agg["accuracy"]["mean"] == pytest.approx(0.75)
    assert agg["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert agg["n_runs"] == 3 and "log_loss" not in agg  # None values are skipped
    assert set(agg["per_class"]["negative"]) == {"precision", "recall", "f1", "support"}
    assert np.allclose(agg["confusion_matrix_mean"], np.mean([r["confusion_matrix"] for r in runs], axis=0))
    assert aggregate(runs[:1])["accuracy"]["std"] == 0.0


# ---------------------------------------------------------------- plots

EPOCHS = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "val_macro_f1": 0.4, "val_acc": 0.5},
          {"epoch": 2, "train_loss": 0.8, "val_loss": 1.0, "val_macro_f1": 0.5, "val_acc": 0.6}]
C_SEARCH = [{"C": 0.01, "val_macro_f1": 0.5, "chosen": False}, {"C": 0.1, "val_macro_f1": 0.7, "chosen": True},
            {"C": 1.0, "val_macro_f1": 0.6, "chosen": False}]


def test_plots_write_pngs(tmp_path):
    confusion_png([[3.5, 1.0, 0], [0, 2, 0], [1, 0, 0]], CLASSES, tmp_path / "c.png")
    curve_png({0: EPOCHS, 1: []}, tmp_path / "k.png", best_epochs={0: 2})
    curve_png({0: C_SEARCH}, tmp_path / "s.png")
    curve_png({0: []}, tmp_path / "none.png")  # a head that recorded nothing still gets a figure
    for f in ("c.png", "k.png", "s.png", "none.png"):
        assert (tmp_path / f).read_bytes()[:8] == PNG
    assert not list(tmp_path.glob(".*"))


def drawn(monkeypatch, histories, **kw) -> list:
    """The axes ``curve_png`` would save, as [(title, x label, [(x data, y data, marker), ...])]."""
    import mmpipe.reporting.plots as plots

    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figs.append(fig))
    curve_png(histories, "unused.png", **kw)
    return [(ax.get_title(), ax.get_xlabel(), [(list(ln.get_xdata()), list(ln.get_ydata()), ln.get_marker())
                                              for ln in ax.lines]) for ax in figs[0].axes]


def test_c_search_curve_shows_each_candidate_and_the_choice(monkeypatch):
    assert curve_kind({0: C_SEARCH}) == "C" and curve_kind({0: EPOCHS}) == "epoch" and curve_kind({0: []}) == "none"
    (title, xlabel, lines), = drawn(monkeypatch, {0: C_SEARCH, 1: C_SEARCH[:2]})
    assert "candidate C" in title and "★ chosen" in title and xlabel.startswith("C")
    curves = [ln for ln in lines if len(ln[0]) > 1]
    stars = [ln for ln in lines if ln[2] == "*"]
    assert [c[:2] for c in curves] == [([0.01, 0.1, 1.0], [0.5, 0.7, 0.6]), ([0.01, 0.1], [0.5, 0.7])]
    assert [s[:2] for s in stars] == [([0.1], [0.7]), ([0.1], [0.7])]
    # the epoch curves are unchanged: loss panel and macro-F1 panel with the best epoch starred
    (_, ep_x, loss), (_, _, f1) = drawn(monkeypatch, {0: EPOCHS}, best_epochs={0: 2})
    assert ep_x == "epoch" and len(loss) == 2 and ([2], [0.5], "*") in f1


# ---------------------------------------------------------------- ablation

@pytest.fixture(scope="module")
def ablations(tmp_path_factory):
    """A small grid: two heads x (text, image, text+image), 2 seeds; shared by the later tests."""
    root = tmp_path_factory.mktemp("ablations")
    data = make_data()
    results = {}
    for head in ("concat_mlp", "svm"):
        for mods in (["text"], ["image"], ["text", "image"]):
            name = f"{head}-{'+'.join(mods)}"
            params = {k: v for k, v in FAST.items() if k in HEADS.get(head).defaults}  # as the grid passes them
            results[name] = run_ablation(data, name, mods, head, params, [0, 1], root / name)
    return data, root, results


def test_run_ablation_writes_report_metrics_and_pngs(ablations):
    data, root, results = ablations
    out = root / "concat_mlp-text+image"
    for f in ("metrics.json", "report.md", "confusion.png", "confusion_test.png", "curve.png",
              "model_seed0.pt", "model_seed1.pt"):
        assert (out / f).exists(), f
    for f in ("confusion.png", "confusion_test.png", "curve.png"):
        assert (out / f).read_bytes()[:8] == PNG
    m = json.loads((out / "metrics.json").read_text())
    assert m == json.loads(json.dumps(results["concat_mlp-text+image"]))
    assert m["head"] == "concat_mlp" and m["modalities"] == ["text", "image"] and m["classes"] == CLASSES
    assert m["params"] == {k: v for k, v in FAST.items() if k in HEADS.get(m["head"]).defaults}
    assert m["seeds"] == [0, 1] and len(m["per_seed"]) == 2
    assert len(m["best_epochs"]) == 2 and all(isinstance(e, int) for e in m["best_epochs"])
    assert len(m["fit_seconds"]) == 2
    for split in ("val", "test"):
        assert {"accuracy", "macro_f1", "weighted_f1"} <= set(m[split])
        assert {"mean", "std"} == set(m[split]["macro_f1"])
    assert m["val"]["accuracy"]["mean"] > 0.8  # the planted signal is easy
    assert m["per_seed"][0]["history"] and m["per_seed"][0]["refit_params"] == {"epochs": m["best_epochs"][0]}
    report = (out / "report.md").read_text()
    for link in ("(confusion.png)", "(curve.png)", "(confusion_test.png)", "(model_seed0.pt)"):
        assert link in report
    assert "Training curves" in report and "Choice of C" not in report
    assert "concat_mlp" in report and "± " in report and "negative" in report
    assert not list(out.glob(".*.tmp"))


def test_run_ablation_with_unlabelled_test(tmp_path, caplog):
    data = make_data(labelled_test=False)
    with caplog.at_level("INFO", logger="mmpipe.fusion.ablation"):
        m = run_ablation(data, "u", ["text"], "logreg", {"threads": 1}, [0], tmp_path / "u")
    assert m["test"] is None and m["per_seed"][0]["test"] is None and m["best_epochs"] == [None]
    assert (tmp_path / "u" / "curve.png").exists() and not (tmp_path / "u" / "confusion_test.png").exists()
    report = (tmp_path / "u" / "report.md").read_text()
    assert "unlabelled" in report
    # the curve of a C-search head is the validation score per candidate C, and the report says so
    hist = m["per_seed"][0]["history"]
    assert [h["C"] for h in hist] == [0.01, 0.1, 1.0] and sum(h["chosen"] for h in hist) == 1
    assert "Choice of C" in report and "Training curves" not in report
    # the job's log says what it did: samples per split, and per seed the fit time and the chosen C
    log = caplog.text
    assert "150 train, 60 val, 45 test" in log
    assert "seed 0: fit " in log and f'"C": {m["per_seed"][0]["refit_params"]["C"]}' in log
    with pytest.raises(KeyError):
        run_ablation(data, "bad", ["audio"], "logreg", {}, [0], tmp_path / "bad")


# ---------------------------------------------------------------- summary

def fake_metrics(root: Path, name: str, head: str, mods: list[str], val_f1: float, test: bool = True) -> Path:
    agg = lambda v: {m: {"mean": v, "std": 0.01} for m in ("accuracy", "macro_f1", "weighted_f1")}  # noqa: E731
    d = root / name
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({
        "name": name, "head": head, "modalities": mods, "params": {}, "seeds": [0],
        "val": agg(val_f1), "test": agg(val_f1 - 0.05) if test else None}))
    return d / "metrics.json"


def test_summarize_ranks_marks_best_and_compares_with_svm(tmp_path):
    files = [fake_metrics(tmp_path, "a", "concat_mlp", ["text"], 0.60),
             fake_metrics(tmp_path, "b", "concat_mlp", ["image"], 0.55),
             fake_metrics(tmp_path, "c", "concat_mlp", ["text", "image"], 0.70),
             fake_metrics(tmp_path, "d", "svm", ["image", "text"], 0.65),
             fake_metrics(tmp_path, "e", "svm", ["text"], 0.58)]
    s = summarize(files, tmp_path / "summary.md", tmp_path / "summary.json")
    assert [a["name"] for a in s["ablations"]] == ["c", "d", "a", "e", "b"]
    assert s["selected"] == "c" and s["selection_metric"] == "val_macro_f1"
    assert json.loads((tmp_path / "summary.json").read_text()) == s
    first = s["ablations"][0]
    assert {"name", "modalities", "head", "params", "val", "test"} <= set(first)
    assert first["val"]["macro_f1"] == {"mean": 0.70, "std": 0.01}
    cmp = s["baseline_comparison"]
    assert cmp["baseline"] == "d" and cmp["val_macro_f1_delta"] == pytest.approx(0.05)
    md = (tmp_path / "summary.md").read_text()
    assert "★ best" in md and md.index("★ best") < md.index("| 2 |")
    assert "[c](c/report.md)" in md
    assert "What each modality adds" in md and "+0.100" in md  # concat_mlp: 0.70 fused vs 0.60 text
    assert "beats the svm baseline" in md

    s2 = summarize(files, tmp_path / "s2.md", tmp_path / "s2.json", select="a")
    assert s2["selected"] == "a" and s2["baseline_comparison"]["baseline"] == "e"
    assert "✔ selected" in (tmp_path / "s2.md").read_text()
    with pytest.raises(KeyError):
        summarize(files, tmp_path / "s3.md", tmp_path / "s3.json", select="nope")


def test_summarize_without_test_or_svm(tmp_path):
    files = [fake_metrics(tmp_path, "x", "gated", ["text"], 0.5, test=False),
             fake_metrics(tmp_path, "y", "gated", ["text", "image"], 0.6, test=False)]
    s = summarize(files, tmp_path / "s.md", tmp_path / "s.json")
    assert s["selected"] == "y" and s["ablations"][0]["test"] is None
    md = (tmp_path / "s.md").read_text()
    assert "test macro-F1" not in md and "no svm ablation" in md


def test_summarize_real_ablations(ablations, tmp_path):
    _, root, results = ablations
    s = summarize(sorted(root.glob("*/metrics.json")), tmp_path / "summary.md", tmp_path / "summary.json")
    f1 = [a["val"]["macro_f1"]["mean"] for a in s["ablations"]]
    assert f1 == sorted(f1, reverse=True) and len(f1) == 6
    assert s["selected"] == s["ablations"][0]["name"]


# ---------------------------------------------------------------- predict

@pytest.mark.parametrize("refit", [False, True])
def test_predict_writes_guids_in_order_with_valid_tags(ablations, tmp_path, refit):
    data, root, _ = ablations
    txt, pq = tmp_path / "predictions.txt", tmp_path / "predictions.parquet"
    proba = predict(data, root / "concat_mlp-text+image", refit, txt, pq)
    lines = txt.read_text().splitlines()
    assert lines[0] == "guid,tag"
    rows = [ln.split(",") for ln in lines[1:]]
    assert [g for g, _ in rows] == data.guids_test
    assert all(t in CLASSES for _, t in rows)
    df = pl.read_parquet(pq)
    assert df.columns == ["guid", "tag", "p_negative", "p_neutral", "p_positive"]
    assert df["guid"].to_list() == data.guids_test and df["tag"].to_list() == [t for _, t in rows]
    P = df.select("p_negative", "p_neutral", "p_positive").to_numpy()
    assert np.allclose(P, proba) and np.allclose(P.sum(1), 1, atol=1e-6)
    assert (proba.argmax(1) == data.y_test).mean() > 0.8
    assert not list(tmp_path.glob(".*.tmp"))


def test_predict_without_refit_averages_the_saved_models(ablations, tmp_path):
    data, root, _ = ablations
    from mmpipe.fusion.heads import load_head

    d = data.select(["image"])
    expected = np.mean([load_head("svm", root / "svm-image" / f"model_seed{s}.pt").predict_proba(d.X_test)
                        for s in (0, 1)], axis=0)
    got = predict(data, root / "svm-image", False, tmp_path / "p.txt", tmp_path / "p.parquet")
    assert np.array_equal(got, expected)


def test_seed_ensemble_scores_what_predict_writes(ablations, tmp_path):
    """metrics.json's ``ensemble`` scores the mean of the seeds' outputs, which is what ``predict`` writes; the
    ablation report shows it beside the mean over seeds, and the summary says what the predictions score."""
    data, root, results = ablations
    from mmpipe.fusion.heads import load_head

    m = results["concat_mlp-text+image"]
    proba = predict(data, root / "concat_mlp-text+image", False, tmp_path / "p.txt", tmp_path / "p.parquet")
    want = classification_metrics(data.y_test, proba, CLASSES)
    for k in ("accuracy", "macro_f1", "weighted_f1", "log_loss"):
        assert m["ensemble"]["test"][k] == pytest.approx(want[k])
    # the ensemble is not the mean of the seeds' scores: the seeds' probabilities are averaged before scoring
    out = root / "concat_mlp-text+image"
    seed_probs = [load_head("concat_mlp", out / f"model_seed{s}.pt").predict_proba(data.X_val) for s in (0, 1)]
    assert not np.allclose(seed_probs[0], seed_probs[1])
    val = classification_metrics(data.y_val, np.mean(seed_probs, axis=0), CLASSES)
    assert m["ensemble"]["val"]["log_loss"] == pytest.approx(val["log_loss"])
    assert m["ensemble"]["val"]["log_loss"] != pytest.approx(m["val"]["log_loss"]["mean"])
    report = (root / "concat_mlp-text+image" / "report.md").read_text()
    assert f"| test, seed ensemble | {want['accuracy']:.3f} | {want['macro_f1']:.3f} |" in report
    s = summarize([root / "concat_mlp-text+image" / "metrics.json"], tmp_path / "s.md", tmp_path / "s.json")
    assert s["ablations"][0]["ensemble"] == m["ensemble"]
    md = (tmp_path / "s.md").read_text()
    assert (f"average its 2 seeds' outputs (with `predict.refit: false`, the default); that seed ensemble scores "
            f"macro-F1 test {want['macro_f1']:.3f}, validation {val['macro_f1']:.3f}.") in md


def test_one_seed_has_no_ensemble(tmp_path):
    m = run_ablation(make_data(), "one", ["text"], "logreg", {"threads": 1}, [0], tmp_path / "one")
    assert m["ensemble"] is None and "seed ensemble" not in (tmp_path / "one" / "report.md").read_text()


def test_predict_refit_uses_the_best_epoch(ablations, tmp_path, monkeypatch):
    data, root, results = ablations
    import mmpipe.fusion.predict as P

    seen = []
    real = P.build_head

    def spy(name, params):
        seen.append(params)
        return real(name, params)

    monkeypatch.setattr(P, "build_head", spy)
    predict(data, root / "concat_mlp-text", True, tmp_path / "p.txt", tmp_path / "p.parquet")
    assert [p["epochs"] for p in seen] == results["concat_mlp-text"]["best_epochs"]
    assert [p["seed"] for p in seen] == [0, 1]

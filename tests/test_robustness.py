"""The robustness target: corruptions, modality dropout, held-out honesty, the records, the report, the workflow."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mmpipe.core.errors import ConfigError
from mmpipe.fusion import ablation as ablation_mod
from mmpipe.fusion import cv
from mmpipe.fusion import robustness as rb
from mmpipe.fusion.ablation import run_ablation
from mmpipe.fusion.dataset import SplitData
from mmpipe.fusion.heads import build_head
from mmpipe.reporting.robustness_report import ranked_runs, render, table_rows, write_robustness

CLASSES = ["negative", "neutral", "positive"]
FAST = {"threads": 1, "max_epochs": 8, "patience": 3, "device": "cpu"}
CONF = {**rb.DEFAULTS, "rates": [0.0, 0.5, 1.0], "noise": [0.0, 1.0], "seeds": [0, 1],
        "task": "classification", "metric": "macro_f1", "higher_is_better": True}


def features(n: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.normal(3.0, 2.0, size=(n, 5)).astype(np.float32),
            "b": rng.normal(-1.0, 0.5, size=(n, 3)).astype(np.float32)}


def make_data(n_pool: int = 120, n_test: int = 45, regression: bool = False, seed: int = 0) -> SplitData:
    rng = np.random.default_rng(seed)
    ca, cb = rng.normal(size=(3, 6)) * 1.5, rng.normal(size=(3, 4)) * 1.5

    def split(n):
        y = np.arange(n) % 3
        rng.shuffle(y)
        X = {"text": (ca[y] + rng.normal(size=(n, 6))).astype(np.float32),
             "image": (cb[y] + rng.normal(size=(n, 4))).astype(np.float32)}
        return X, y, (y - 1 + 0.3 * rng.normal(size=n)).astype(np.float64)

    n_val = n_pool // 4
    (Xtr, ytr, s_tr), (Xva, yva, s_va), (Xte, yte, s_te) = split(n_pool - n_val), split(n_val), split(n_test)
    return SplitData(CLASSES, Xtr, ytr, Xva, yva, Xte, yte, [f"t{i}" for i in range(len(ytr))],
                     [f"v{i}" for i in range(len(yva))], [f"e{i}" for i in range(len(yte))],
                     *((s_tr, s_va, s_te) if regression else (None, None, None)))


def pool_folds(d: SplitData, k: int = 3, regression: bool = False) -> np.ndarray:
    t = np.concatenate([d.s_train, d.s_val]) if regression else np.concatenate([d.y_train, d.y_val])
    return cv.make_folds(cv.strata(None if regression else t, t if regression else None), None, k, 1, seed=5)


# ---- corruptions -------------------------------------------------------------------------------------------
def test_fill_by_mean_or_zero_and_removing_one_modality():
    X = features()
    stats = rb.training_stats(X, np.arange(100))
    assert np.allclose(stats["a"][0], X["a"][:100].mean(axis=0), atol=1e-5)
    means, zeros = rb.fill_vectors(stats, "mean"), rb.fill_vectors(stats, "zero")
    assert np.allclose(means["b"], X["b"][:100].mean(axis=0), atol=1e-5) and not zeros["a"].any()
    out = rb.remove_modality(X, "a", means)
    assert np.allclose(out["a"], means["a"]) and np.array_equal(out["b"], X["b"])
    assert not rb.remove_modality(X, "b", zeros)["b"].any()
    with pytest.raises(ValueError):
        rb.fill_vectors(stats, "median")


def test_missing_rate_zero_changes_nothing_and_one_fills_everything():
    X = features()
    fills = rb.fill_vectors(rb.training_stats(X), "mean")
    u = rb.Draws(0, 400, {"a": 5, "b": 3}).uniforms
    same = rb.missing_at_random(X, 0.0, u, fills)
    assert all(np.array_equal(same[m], X[m]) for m in X)
    for rate in (1.0, 0.999999):
        gone = rb.missing_at_random(X, rate, u, fills)
        assert all(np.allclose(gone[m], fills[m]) for m in X)
    half = rb.missing_at_random(X, 0.5, u, fills)
    filled = np.stack([(half[m] != X[m]).any(axis=1) for m in X], axis=1)
    assert 0.4 < filled.mean() < 0.6  # each (sample, modality) independently
    assert filled.all(axis=1).mean() == pytest.approx(0.25, abs=0.07)
    less = np.stack([(rb.missing_at_random(X, 0.2, u, fills)[m] != X[m]).any(axis=1) for m in X], axis=1)
    assert not (less & ~filled).any()  # a seed's masks are nested across rates


def test_noise_scale_follows_the_training_std():
    X = features(4000)
    X["a"][:, 0] = 7.0  # a constant feature: std 0, no noise
    stats = rb.training_stats(X)
    draws = rb.Draws(3, 4000, {"a": 5, "b": 3})
    assert all(np.array_equal(v, X[m]) for m, v in rb.add_noise(X, 0.0, draws.normals, stats).items())
    for s in (0.5, 2.0):
        noisy = rb.add_noise(X, s, draws.normals, stats)
        for m in X:
            ratio = (noisy[m] - X[m]).std(axis=0) / np.where(stats[m][1] > 0, stats[m][1], 1)
            assert np.allclose(ratio[stats[m][1] > 0], s, rtol=0.06)
        assert np.array_equal(noisy["a"][:, 0], X["a"][:, 0])


def test_draws_and_scores_are_deterministic():
    a, b, c = rb.Draws(1, 50, {"a": 5, "b": 3}), rb.Draws(1, 50, {"a": 5, "b": 3}), rb.Draws(2, 50, {"a": 5, "b": 3})
    assert np.array_equal(a.uniforms, b.uniforms) and np.array_equal(a.normals["a"], b.normals["a"])
    assert not np.array_equal(a.uniforms, c.uniforms)
    assert not np.array_equal(a.uniforms, rb.Draws(1, 50, {"a": 5, "b": 3}, stream=1).uniforms)
    assert np.array_equal(a.rows(np.array([3, 7])).uniforms, a.uniforms[[3, 7]])
    X = features(50)
    y = (X["a"][:, 0] > 3).astype(int)
    model = build_head("logreg", {"n_classes": 2}).fit(X, y)
    from mmpipe.fusion.metrics import classification_metrics

    def run():
        return rb.corruption_scores(model.predict_proba, lambda p: classification_metrics(y, p, ["0", "1"])["macro_f1"],
                                    X, rb.training_stats(X), [a, c], CONF)

    first = run()
    assert first == run()
    assert first["missing"][0.0] == [first["clean"]] * 2 and first["noise"][0.0] == [first["clean"]] * 2
    assert set(first["removed"]) == {"a", "b"} and len(first["missing"][0.5]) == 2


# ---- modality dropout --------------------------------------------------------------------------------------
def test_modality_dropout_changes_training_and_stays_deterministic():
    X = features(200)
    y = (X["a"][:, 0] + 4 * X["b"][:, 0] > -1).astype(int)

    def proba(md, **kw):
        head = build_head("concat_mlp", {**FAST, "n_classes": 2, "modality_dropout": md, **kw})
        return head.fit(X, y).predict_proba(X)

    off, on = proba(0.0), proba(0.5)
    assert not np.allclose(off, on)
    assert np.array_equal(on, proba(0.5))
    one = {"a": X["a"]}  # one modality: nothing is dropped
    fit = lambda md: build_head("gated", {**FAST, "n_classes": 2, "modality_dropout": md}).fit(  # noqa: E731
        one, y).predict_proba(one)
    assert np.array_equal(fit(0.0), fit(0.5))


def test_modality_dropout_never_drops_every_modality_and_is_checked():
    import torch

    head = build_head("concat_mlp", {"modality_dropout": 0.9})
    head.device_ = torch.device("cpu")
    keep = head._modality_keep((5000,), 3, torch.Generator().manual_seed(0))
    assert keep.any(dim=1).all() and 0.05 < keep.float().mean() < 0.5
    assert build_head("concat_mlp", {})._modality_keep((10,), 2, torch.Generator()) is None
    for bad in (1.0, -0.1, True, "x"):
        with pytest.raises(ConfigError, match="modality_dropout"):
            build_head("cross_attention", {"modality_dropout": bad})
    build_head("context_gru", {"modality_dropout": 0.3})  # supported there too


def test_context_gru_trains_with_modality_dropout_deterministically():
    from mmpipe.fusion.context import sequence_index

    X = features(60)
    y = (X["a"][:, 0] > 3).astype(int)
    seq = sequence_index(np.array([str(i // 6) for i in range(60)], dtype=object), [str(i) for i in range(60)])
    fit = lambda md: build_head("context_gru", {**FAST, "n_classes": 2, "modality_dropout": md}).fit(  # noqa: E731
        X, y, groups=seq).predict_proba(X, groups=seq)
    on = fit(0.5)
    assert np.array_equal(on, fit(0.5)) and not np.allclose(on, fit(0.0))


# ---- settings and plan -------------------------------------------------------------------------------------
def test_settings_resolve_the_metric_and_refuse_a_mismatch():
    s = rb.settings({"labels": {}, "selection": {"metric": None}})
    assert (s["metric"], s["higher_is_better"], s["fill"], s["modality_dropout"]) == ("macro_f1", True, "mean", 0.3)
    r = rb.settings({"labels": {"scheme": "regression"}, "selection": {}, "robustness": {"modality_dropout": None}})
    assert (r["metric"], r["higher_is_better"], r["task"], r["modality_dropout"]) == ("mae", False, "regression", 0.0)
    with pytest.raises(ConfigError, match="does not apply"):
        rb.settings({"labels": {}, "selection": {"metric": "mae"}})
    with pytest.raises(ConfigError, match="rates"):
        rb.settings({"labels": {}, "selection": {}, "robustness": {"rates": [0.5, 1.5]}})


def test_plan_prefers_the_selected_modalities_and_skips_stacks():
    def entry(head, mods, variant=None):
        return {"head": head, "variant": variant or head, "modalities": mods}

    grid = {"text__svm": entry("svm", ["text"]), "text+image__svm": entry("svm", ["text", "image"]),
            "text+image+aux__svm": entry("svm", ["text", "image", "aux"]),
            "text+image__mlp": entry("concat_mlp", ["text", "image"], "mlp"),
            "text+image+aux__mlp": entry("concat_mlp", ["text", "image", "aux"], "mlp"),
            "text__lr": entry("logreg", ["text"], "lr"),
            "text+image__st": entry("stack", ["text", "image"], "st")}
    p = rb.plan(grid, "text+image__svm")
    assert p["ablations"] == ["text+image__svm", "text+image__mlp"]
    assert {s["name"] for s in p["skipped"]} == {"lr", "text+image__st"}
    p = rb.plan(grid, "text__svm")  # unimodal selected: itself, then each head's largest fused subset
    assert p["ablations"] == ["text__svm", "text+image+aux__svm", "text+image+aux__mlp"]
    p = rb.plan(grid, "text+image__st")
    assert "text+image__st" not in p["ablations"] and "stack" in p["skipped"][0]["why"]
    assert rb.evaluable(grid) == [n for n in grid if n != "text+image__st"]


# ---- honesty: no held-out row is ever fitted -----------------------------------------------------------------
def test_fold_fits_never_see_their_held_out_rows(tmp_path, monkeypatch):
    d = make_data(n_test=0)
    d.y_test = None
    folds = pool_folds(d)
    spec = {"head": "concat_mlp", "variant": "concat_mlp", "modalities": ["text", "image"], "params": FAST,
            "seeds": [0]}
    (tmp_path / "metrics.json").write_text("{}")
    seen = []
    real = ablation_mod.fit_fold

    def spy(head, params, seed, n_classes, task, fold):
        model, s = real(head, params, seed, n_classes, task, fold)
        seen.append((fold, model.predict_proba({m: a[fold.held] for m, a in fold.X.items()})))
        return model, s

    monkeypatch.setattr(ablation_mod, "fit_fold", spy)
    selection = {"method": "cv", "inner_val": 0.2}
    rb.evaluate_ablation(d, "x", spec, CONF, selection, folds, tmp_path, threads=1)
    original = list(seen)
    assert len(original) == 2 * 3  # as configured and with modality dropout, 3 folds each
    for fold, _ in original:
        assert not set(fold.held) & (set(fold.fit) | set(fold.stop))
        assert set(fold.held) == set(np.flatnonzero(folds[0] == folds[0][fold.held[0]]))
    # permute the labels of fold 0's held-out rows: that fold's fits predict exactly the same
    held = np.flatnonzero(folds[0] == 0)
    y = np.concatenate([d.y_train, d.y_val])
    perm = y.copy()
    perm[held] = np.random.default_rng(1).permutation(y[held])
    assert not np.array_equal(perm, y)
    n_tr = len(d.y_train)
    d.y_train, d.y_val = perm[:n_tr], perm[n_tr:]
    seen.clear()
    rb.evaluate_ablation(d, "x", spec, CONF, selection, folds, tmp_path, threads=1)
    pairs = [(a, b) for a, b in zip(original, seen) if set(a[0].held) == set(held)]
    assert len(pairs) == 2
    for (fa, pa), (fb, pb) in pairs:
        assert np.array_equal(fa.fit, fb.fit) and np.array_equal(pa, pb)


# ---- one ablation end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Robustness records of a logreg and a concat_mlp ablation (cross-validated, labelled test)."""
    root = tmp_path_factory.mktemp("robust")
    d = make_data()
    folds = pool_folds(d)
    selection = {"method": "cv", "folds": 3, "repeats": 1, "inner_val": 0.2}
    out = []
    for head, params in (("logreg", {"threads": 1}), ("concat_mlp", FAST)):
        name = f"text+image__{head}"
        spec = {"head": head, "variant": head, "modalities": ["text", "image"], "params": params, "seeds": [0, 1]}
        run_ablation(d, name, spec["modalities"], head, params, spec["seeds"], root / name, selection=selection,
                     folds=folds)
        out.append(rb.evaluate_ablation(d, name, spec, CONF, selection, folds, root / name, threads=1))
    return out


def test_records_hold_every_corruption_on_held_out_and_test_rows(records):
    lr, mlp = records
    assert [r["training"] for r in lr["runs"]] == ["as configured"]
    assert [r["training"] for r in mlp["runs"]] == ["as configured", "modality dropout 0.3"]
    for rec in records:
        assert rec["evaluated_on"] == "cv" and rec["n_folds"] == 3 and rec["test_labelled"]
        assert rec["runs"][0]["consistency"]["max_abs_diff"] == pytest.approx(0.0, abs=1e-9)  # the very same fits
        for run in rec["runs"]:
            for split in ("held_out", "test"):
                s = run[split]
                assert [p["rate"] for p in s["missing"]] == CONF["rates"]
                assert [p["strength"] for p in s["noise"]] == CONF["noise"]
                assert s["missing"][0]["mean"] == s["clean"] and s["missing"][0]["std"] == 0
                assert set(s["removed"]) == {"text", "image"}
                assert all(len(p["scores"]) == 2 for p in s["missing"])
                assert s["auc_missing"] == pytest.approx(np.mean([p["mean"] for p in s["missing"]]))
                # every modality missing for every sample: a constant prediction, no better than the clean data
                assert s["missing"][-1]["mean"] <= s["clean"] + 1e-9


def test_a_tuned_ablation_is_evaluated_with_the_parameters_it_fitted_with(tmp_path):
    """A `tuned: true` ablation's grid entry holds the configured parameters; its metrics.json the tuned ones."""
    d = make_data()
    folds = pool_folds(d)
    selection = {"method": "cv", "folds": 3, "repeats": 1, "inner_val": 0.2}
    tuned = {**FAST, "hidden": 16, "lr": 3e-3}
    run_ablation(d, "t", ["text", "image"], "concat_mlp", tuned, [0], tmp_path, selection=selection, folds=folds)
    spec = {"head": "concat_mlp", "variant": "t", "modalities": ["text", "image"], "params": FAST, "seeds": [0],
            "tuned": True}
    rec = rb.evaluate_ablation(d, "t", spec, {**CONF, "modality_dropout": None}, selection, folds, tmp_path, threads=1)
    assert rec["runs"][0]["consistency"]["max_abs_diff"] == pytest.approx(0.0, abs=1e-9)


def test_regression_and_split_selection_are_supported(tmp_path):
    d = make_data(regression=True)
    conf = {**CONF, "task": "regression", "metric": "mae", "higher_is_better": False}
    spec = {"head": "concat_mlp", "variant": "concat_mlp", "modalities": ["text", "image"], "params": FAST,
            "seeds": [0]}
    run_ablation(d, "r", spec["modalities"], "concat_mlp", FAST, [0], tmp_path, task="regression",
                 selection={"method": "split"})
    rec = rb.evaluate_ablation(d, "r", spec, conf, {"method": "split"}, None, tmp_path, threads=1)
    assert rec["evaluated_on"] == "val" and rec["n_held_out"] == [len(d.y_val)] and rec["metric"] == "mae"
    assert rec["runs"][0]["consistency"]["max_abs_diff"] == pytest.approx(0.0, abs=1e-9)
    assert all(r["held_out"]["clean"] > 0 and r["test"]["clean"] > 0 for r in rec["runs"])
    best = ranked_runs([rec])
    assert best[0][1]["held_out"]["auc_missing"] <= best[-1][1]["held_out"]["auc_missing"]  # MAE: lower first


def test_report_table_and_plot(records, tmp_path):
    plan = {"selected": records[1]["name"], "ablations": [r["name"] for r in records],
            "skipped": [{"name": "a+b__stack", "why": rb.SKIP_STACK}]}
    paths = []
    for r in records:
        paths.append(tmp_path / f"{r['name']}.json")
        paths[-1].write_text(json.dumps(r))
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    write_robustness(tmp_path / "plan.json", paths, tmp_path / "t.csv", tmp_path / "r.png", tmp_path / "r.md")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert len(rows) == len(table_rows(records))
    for r in records:
        for run in r["runs"]:
            for split in ("cv", "test"):
                levels = [float(x["level"]) for x in rows if x["ablation"] == r["name"] and x["split"] == split
                          and x["training"] == run["training"] and x["corruption"] == "missing"]
                assert levels == CONF["rates"]
    md = (tmp_path / "r.md").read_text()
    best, run = ranked_runs(records)[0]
    assert f"**Most robust head:** `{best['name']}` ({run['training']})" in md
    assert "What modality dropout buys" in md and "a+b__stack" in md and "robustness" in render(plan, records, "x.png")
    assert "## Test split" in md
    off = [{**r, "modality_dropout": 0.0, "runs": r["runs"][:1]} for r in records]
    assert "`robustness.modality_dropout` is off" in render(plan, off)


# ---- the workflow --------------------------------------------------------------------------------------------
def test_robustness_target_on_the_demo(tmp_path):
    """`snakemake robustness` on a 90-sample demo (tiny encoders, 2 folds): about 45 s on 2 busy cores."""
    from workflow import planned_jobs, snakemake, tiny_config

    tiny_config(tmp_path, "demo", shards=1, demo={"n": 90, "seed": 0}, selection={"folds": 2, "repeats": 1},
                training={"seeds": [0]}, heads={"logreg": {}, "concat_mlp": {"max_epochs": 15, "patience": 4}},
                robustness={"seeds": [0, 1], "noise": [0.0, 1.0]})
    snakemake(tmp_path, "robustness")
    out = tmp_path / "results/demo/robustness"
    assert (out / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    plan = json.loads((out / "plan.json").read_text())
    assert "text+image__logreg" in plan["ablations"] and "text+image__concat_mlp" in plan["ablations"]
    rows = list(csv.DictReader((out / "table.csv").open()))
    rates = rb.DEFAULTS["rates"]
    runs = {(r["ablation"], r["training"]) for r in rows}
    assert {a for a, _ in runs} == set(plan["ablations"])
    assert ("text+image__concat_mlp", "modality dropout 0.3") in runs
    for a, training in runs:
        levels = [float(r["level"]) for r in rows if (r["ablation"], r["training"]) == (a, training)
                  and r["corruption"] == "missing"]
        assert levels == rates, (a, training)
    assert "Most robust head" in (out / "report.md").read_text()
    again = snakemake(tmp_path, "robustness", "-n")
    assert planned_jobs(again) == [] and "Nothing to be done" in again.stdout + again.stderr

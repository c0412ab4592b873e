"""The stack head inside a cross-validated ablation: nested, honest, and better than its members here."""

from __future__ import annotations

import numpy as np

from mmpipe.fusion import cv
from mmpipe.fusion.ablation import run_ablation
from mmpipe.fusion.dataset import SplitData
from mmpipe.fusion.grid import ablation_grid
from mmpipe.fusion.heads import load_head


def _data(n=240, seed=0):
    """Modality a shows the label for half the samples, b for the other half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    half = rng.random(n) < 0.5
    a, b = (rng.normal(size=(n, 8)).astype(np.float32) for _ in range(2))
    a[half, y[half]] += 3
    b[~half, y[~half]] += 3
    g = [f"g{i}" for i in range(n)]
    tr, va, te = slice(0, 180), slice(180, 220), slice(220, n)
    X = lambda s: {"a": a[s], "b": b[s]}  # noqa: E731
    return SplitData(["x", "y", "z"], X(tr), y[tr], X(va), y[va], X(te), y[te], g[tr], g[va], g[te]), y[:220]


def test_stack_cross_validated_beats_each_member_and_reports_them(tmp_path):
    d, y_pool = _data()
    folds = cv.make_folds(y_pool, None, 5, 1, 0)
    sel = {"method": "cv", "folds": 5, "repeats": 1}
    members = [{"name": "a__logreg", "head": "logreg", "modalities": ["a"], "params": {}},
               {"name": "b__logreg", "head": "logreg", "modalities": ["b"], "params": {}}]
    r = run_ablation(d, "a+b__stack", ["a", "b"], "stack", {"members": members}, [0], tmp_path / "s", selection=sel,
                     folds=folds)
    own = {m: run_ablation(d, f"{m}__logreg", [m], "logreg", {}, [0], tmp_path / m, selection=sel,
                           folds=folds)["cv"]["macro_f1"]["mean"] for m in "ab"}
    assert r["cv"]["macro_f1"]["mean"] > max(own.values()) + 0.05
    report = r["per_seed"][0]["members"]
    assert [m["name"] for m in report] == ["a__logreg", "b__logreg"]
    assert all(m["stack_without_macro_f1"] is not None for m in report)
    assert "## What each member adds" in (tmp_path / "s" / "report.md").read_text()
    model = load_head("stack", tmp_path / "s" / "model_seed0.pt")
    assert model.predict_proba(d.X_test).shape == (20, 3)


def test_grid_turns_member_names_into_a_stack_ablation():
    config = {"encoders": {"text": {}, "image": {}}, "heads": {"svm": {}, "logreg": {},
                                                               "stack": {"members": ["text__svm", "image__logreg"]}},
              "training": {"seeds": [0], "class_weight": "balanced"}}
    grid = ablation_grid(config)
    s = grid["text+image__stack"]
    assert s["head"] == "stack" and s["modalities"] == ["text", "image"]
    assert [m["name"] for m in s["params"]["members"]] == ["text__svm", "image__logreg"]
    assert s["params"]["members"][0]["head"] == "svm" and not any(k.endswith("__stack") and k != "text+image__stack"
                                                                    for k in grid)

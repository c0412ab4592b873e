"""The stacking head: honest out-of-fold meta features, beats its members, round-trips, refits, reports."""

from __future__ import annotations

import numpy as np
import pytest

from mmpipe.core.errors import ConfigError
from mmpipe.fusion.heads import HEADS, build_head, load_head
from mmpipe.fusion.heads.common import fast_scores
from mmpipe.fusion.heads.logreg import LogReg
from mmpipe.fusion.heads.stack import Stack

FAST = {"threads": 1}
TWO = [{"name": "A", "head": "logreg", "modalities": ["a"], "params": {"C": [1.0, 10.0]}},
       {"name": "B", "head": "logreg", "modalities": ["b"], "params": {"C": [1.0, 10.0]}}]
CENTROIDS = np.random.default_rng(99).normal(size=(2, 3, 4)) * 3.0  # class geometry shared by every split


def halves(n: int, seed: int):
    """3 classes; modality ``a`` carries the label for half the rows, ``b`` for the other half (pure noise
    elsewhere). Either modality alone gets about 2/3 right; knowing which one to trust gets nearly all."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    by_a = rng.random(n) < 0.5
    a = rng.normal(size=(n, 4)) + np.where(by_a[:, None], CENTROIDS[0][y], 0.0)
    b = rng.normal(size=(n, 4)) + np.where(by_a[:, None], 0.0, CENTROIDS[1][y])
    return {"a": (a * 2 + 1).astype(np.float32), "b": (b - 0.5).astype(np.float32)}, y


@pytest.fixture(scope="module")
def data():
    return halves(300, 0), halves(90, 1), halves(300, 2)  # train, early-stopping / C choice, held-out


@pytest.fixture(scope="module")
def stack(data):
    (X, y), (Xv, yv), _ = data
    return build_head("stack", {**FAST, "members": TWO}).fit(X, y, Xv, yv)


def acc(model, X, y) -> float:
    return fast_scores(y, model.predict_proba(X).argmax(1), 3)[0]


def test_stack_beats_each_member_on_held_out_rows(data, stack):
    (X, y), (Xv, yv), (Xt, yt) = data
    alone = {m: acc(build_head("logreg", {**FAST, "C": [1.0, 10.0]}).fit({m: X[m]}, y, {m: Xv[m]}, yv), {m: Xt[m]}, yt)
             for m in "ab"}
    s = acc(stack, Xt, yt)
    assert max(alone.values()) < 0.75 and s > max(alone.values()) + 0.1, (s, alone)
    p = stack.predict_proba(Xt)
    assert p.shape == (len(yt), 3) and np.allclose(p.sum(1), 1) and (p >= 0).all()
    assert np.array_equal(stack.predict(Xt), p.argmax(1))
    assert stack.best_epoch_ is None


def test_members_report_has_one_entry_per_member(data, stack):
    (X, y), (Xv, yv), _ = data
    rep = stack.members_report_
    assert [r["name"] for r in rep] == ["A", "B"] and [r["modalities"] for r in rep] == [["a"], ["b"]]
    keys = {"name", "head", "modalities", "oof_accuracy", "oof_macro_f1", "meta_coef_abs_mean",
            "stack_without_macro_f1"}
    for r in rep:
        assert set(r) == keys and r["head"] == "logreg"
        assert 0.5 < r["oof_accuracy"] < 0.8 and 0 < r["oof_macro_f1"] < 0.8 and r["meta_coef_abs_mean"] > 0
        # without this member the stack is the other member alone: clearly worse than the whole stack
        assert r["stack_without_macro_f1"] < stack.stack_report_["oof_macro_f1"] - 0.1
    assert stack.stack_report_["oof_accuracy"] > 0.85 and stack.stack_report_["meta_C"] == 1.0
    # the member's own OOF scores are those of the out-of-fold columns of the meta matrix
    oof_a = stack.oof_[:, :3].argmax(1)
    assert rep[0]["oof_accuracy"] == pytest.approx((oof_a == y).mean())
    # one member: no "without" entry; a useless extra member gets a small coefficient and removing it costs nothing
    one = build_head("stack", {**FAST, "members": TWO[:1]}).fit(X, y)
    assert len(one.members_report_) == 1 and one.members_report_[0]["stack_without_macro_f1"] is None
    rng = np.random.default_rng(5)
    Xn = {**X, "noise": rng.normal(size=(len(y), 3)).astype(np.float32)}
    noisy = build_head("stack", {**FAST, "members": [*TWO, {"name": "N", "head": "logreg", "modalities": ["noise"],
                                                             "params": {"C": 0.01}}]}).fit(Xn, y)
    r = {e["name"]: e for e in noisy.members_report_}
    assert r["N"]["meta_coef_abs_mean"] < min(r["A"]["meta_coef_abs_mean"], r["B"]["meta_coef_abs_mean"])
    assert r["N"]["stack_without_macro_f1"] > r["A"]["stack_without_macro_f1"] + 0.1


def test_history_is_a_c_search_the_plots_can_draw(stack, data, tmp_path):
    from mmpipe.reporting.plots import curve_kind, curve_png

    (X, y), _, _ = data
    assert stack.history_ == [{"C": 1.0, "val_macro_f1": stack.stack_report_["oof_macro_f1"], "chosen": True}]
    many = build_head("stack", {**FAST, "members": TWO, "meta_C": [0.001, 1.0, 10.0]}).fit(X, y)
    assert [h["C"] for h in many.history_] == [0.001, 1.0, 10.0]
    assert [h["chosen"] for h in many.history_].count(True) == 1
    chosen = next(h for h in many.history_ if h["chosen"])
    assert chosen["C"] == many.C_ == many.refit_params()["meta_C"] == many.stack_report_["meta_C"]
    assert chosen["val_macro_f1"] == max(h["val_macro_f1"] for h in many.history_)
    assert curve_kind({0: stack.history_, 1: many.history_}) == "C"
    curve_png({0: stack.history_, 1: many.history_}, tmp_path / "c.png")
    assert (tmp_path / "c.png").exists()


# ---------------------------------------------------------------- honesty of the out-of-fold matrix

SPY_LOG: list[tuple[str, int, frozenset]] = []


def _rows(X) -> frozenset:
    a = np.ascontiguousarray(next(iter(X.values())))
    return frozenset(r.tobytes() for r in a)


@HEADS.register("_spy_logreg")
class SpyLogReg(LogReg):
    """logreg that logs the rows (by content) each instance was fitted on, validated on and asked about."""

    def fit(self, X, y, X_val=None, y_val=None, *, groups=None, groups_val=None):
        SPY_LOG.append(("fit", id(self), _rows(X)))
        SPY_LOG.append(("val", id(self), _rows(X_val) if X_val is not None else frozenset()))
        return super().fit(X, y, X_val, y_val)

    def predict_proba(self, X, *, groups=None):
        SPY_LOG.append(("predict", id(self), _rows(X)))
        return super().predict_proba(X)


def test_oof_member_outputs_never_come_from_a_member_that_saw_the_row(data):
    (X, y), (Xv, yv), _ = data
    members = [{"name": "A", "head": "_spy_logreg", "modalities": ["a"]},
               {"name": "B", "head": "_spy_logreg", "modalities": ["b"]}]
    SPY_LOG.clear()
    model = build_head("stack", {**FAST, "members": members, "inner_folds": 4}).fit(X, y, Xv, yv)
    log = list(SPY_LOG)
    fits = {i: rows for kind, i, rows in log if kind == "fit"}
    vals = {i: rows for kind, i, rows in log if kind == "val"}
    preds = [(i, rows) for kind, i, rows in log if kind == "predict"]
    assert len(fits) == 4 * 2 + 2  # inner fits + one refit per member on all rows
    for m in "ab":
        train = _rows({m: X[m]})
        inner = [(i, rows) for i, rows in preds if rows <= train]
        assert len(inner) == 4
        for i, rows in inner:
            assert not rows & fits[i]  # the rows it predicted are none of the rows it was fitted on
            assert rows | fits[i] == train
        covered = [r for _, rows in inner for r in rows]
        assert len(covered) == len(set(covered)) == len(y)  # every training row exactly once
    # the final members were refitted on all rows and predicted nothing during fit
    final = [i for i, rows in fits.items() if len(rows) == len(y)]
    assert len(final) == 2 and not {i for i, _ in preds} & set(final)
    assert {id(h) for h in model.member_heads_} == set(final)
    # the caller's early-stopping split went to every member fit, and it is the only data besides the training rows
    assert all(v == _rows({"v": Xv["a"]}) or v == _rows({"v": Xv["b"]}) for v in vals.values())
    SPY_LOG.clear()
    model.predict_proba(X)
    assert {i for _, i, _ in SPY_LOG} == set(final)


# ---------------------------------------------------------------- persistence, refit, defaults, seeds

def test_save_load_gives_identical_probabilities(data, stack, tmp_path):
    _, _, (Xt, _) = data
    path = tmp_path / "stack.pt"
    stack.save(path)
    assert path.exists() and not list(tmp_path.glob(".*.tmp")) and len(list(tmp_path.iterdir())) == 1
    again = load_head("stack", path)
    assert isinstance(again, Stack)
    assert np.array_equal(stack.predict_proba(Xt), again.predict_proba(Xt))
    assert np.array_equal(stack.predict_proba(Xt), again.predict_proba(dict(reversed(list(Xt.items())))))
    assert again.members_report_ == stack.members_report_ and again.history_ == stack.history_
    assert again.refit_params() == stack.refit_params() and again.get_params() == stack.get_params()
    with pytest.raises(ValueError, match="missing modalities"):
        again.predict_proba({"a": Xt["a"]})


def test_refit_params_repeat_the_choices_without_validation(data, stack):
    (X, y), _, (Xt, yt) = data
    rp = stack.refit_params()
    assert rp["meta_C"] == 1.0 and [m["name"] for m in rp["members"]] == ["A", "B"]
    assert [m["params"]["C"] for m in rp["members"]] == [h.C_ for h in stack.member_heads_]
    assert "seed" not in rp["members"][0]["params"]  # inherited parameters stay inherited
    refit = build_head("stack", {**stack.get_params(), **rp}).fit(X, y)
    assert [h.C_ for h in refit.member_heads_] == [h.C_ for h in stack.member_heads_]
    assert acc(refit, Xt, yt) > 0.85


def test_neural_and_svm_members_save_load_and_refit(data, tmp_path):
    (X, y), (Xv, yv), (Xt, yt) = data
    members = [*TWO, {"name": "mlp", "head": "concat_mlp", "modalities": ["a", "b"],
                      "params": {"max_epochs": 4, "patience": 2, "hidden": 16, "device": "cpu"}},
               {"name": "svm", "head": "svm", "params": {"C": 1.0}}]  # modalities left out: all of them
    model = build_head("stack", {**FAST, "members": members}).fit(X, y, Xv, yv)
    assert [r["name"] for r in model.members_report_] == ["A", "B", "mlp", "svm"]
    assert model.members_report_[3]["modalities"] == ["a", "b"]
    assert model.member_heads_[2].params["seed"] == 0 and model.member_heads_[2].params["threads"] == 1
    rp = model.refit_params()
    assert 1 <= rp["members"][2]["params"]["epochs"] <= 4
    model.save(tmp_path / "m.pt")
    again = load_head("stack", tmp_path / "m.pt")
    assert np.array_equal(model.predict_proba(Xt), again.predict_proba(Xt))
    refit = build_head("stack", {**model.get_params(), **rp}).fit(X, y)
    assert len(refit.member_heads_[2].history_) == rp["members"][2]["params"]["epochs"]
    assert acc(refit, Xt, yt) > 0.8


def test_default_members_seed_and_n_classes(data):
    (X, y), _, (Xt, yt) = data
    auto = build_head("stack", FAST).fit(X, y)  # members: null -> one logreg per modality
    assert [r["name"] for r in auto.members_report_] == ["a", "b"] and acc(auto, Xt, yt) > 0.85
    again = build_head("stack", FAST).fit(X, y)
    assert np.array_equal(auto.predict_proba(Xt), again.predict_proba(Xt))
    assert auto.members_report_ == again.members_report_ and auto.history_ == again.history_
    other = build_head("stack", {**FAST, "seed": 1}).fit(X, y)
    assert other.members_report_ != auto.members_report_  # another seed, other inner folds
    four = build_head("stack", {**FAST, "n_classes": 4}).fit(X, y)
    p = four.predict_proba(Xt)
    assert p.shape == (len(yt), 4) and (p.argmax(1) != 3).all()
    assert all(h.n_classes_ == 4 for h in four.member_heads_)


def test_regression_uses_a_ridge_meta_on_member_scores(data):
    (X, _), _, (Xt, _) = data
    rng = np.random.default_rng(3)
    score = lambda Z: Z["a"][:, 0] * 0.5 - Z["b"][:, 1]  # noqa: E731
    y, yt = score(X) + 0.1 * rng.normal(size=len(X["a"])), score(Xt)
    model = build_head("stack", {**FAST, "task": "regression", "members": TWO}).fit(X, y)
    pred = model.predict(Xt)
    assert pred.dtype == np.float64 and np.corrcoef(pred, yt)[0, 1] > 0.9
    assert "val_mae" in model.history_[0]
    assert {"oof_mae", "oof_corr", "meta_coef_abs_mean", "stack_without_mae"} <= set(model.members_report_[0])
    with pytest.raises(TypeError):
        model.predict_proba(Xt)


@pytest.mark.parametrize("params, match", [
    ({"members": []}, "members must be a non-empty list"),
    ({"members": "logreg"}, "members must be a non-empty list"),
    ({"members": ["logreg"]}, r"members\[0\] must be a mapping"),
    ({"members": [{"head": "logreg", "modalities": ["a"]}]}, "name must be"),
    ({"members": [TWO[0], {**TWO[1], "name": "A"}]}, "used twice"),
    ({"members": [{"name": "A", "modalities": ["a"]}]}, "head must be"),
    ({"members": [{"name": "A", "head": "no_such_head"}]}, "unknown head 'no_such_head'"),
    ({"members": [{**TWO[0], "modality": ["a"]}]}, "unknown key"),
    ({"members": [{**TWO[0], "modalities": "a"}]}, "modalities must be"),
    ({"members": [{**TWO[0], "modalities": []}]}, "modalities must be"),
    ({"members": [{**TWO[0], "params": {"C": "big"}}]}, r"members\[0\] \('A'\): head 'logreg': C must be"),
    ({"members": [{**TWO[0], "params": {"hiden": 3}}]}, "unknown parameter"),
    ({"members": [{**TWO[0], "params": {"task": "regression"}}]}, "task must be the stack's"),
    ({"members": [{"name": "g", "head": "context_gru"}]}, "sequence head"),
    ({"inner_folds": 1}, "inner_folds"),
    ({"inner_folds": 2.5}, "inner_folds"),
    ({"meta": "forest"}, "meta must be"),
    ({"meta_C": 0}, "meta_C"),
    ({"meta_C": []}, "meta_C"),
    ({"C": 1.0}, "unknown parameter"),
    ({"task": "ranking"}, "task"),
])
def test_bad_params_are_config_errors_naming_the_stack(params, match):
    with pytest.raises(ConfigError, match=match) as err:
        HEADS.get("stack").check_params(params)
    assert str(err.value).startswith("head 'stack': ") and "\n" not in str(err.value)


def test_check_params_needs_neither_torch_nor_sklearn():
    import subprocess
    import sys

    code = ("import sys; from mmpipe.fusion.heads.stack import Stack; "
            "Stack.check_params({'members': [{'name': 'A', 'head': 'logreg', 'modalities': ['a'], "
            "'params': {'C': [0.1, 1]}}, {'name': 'B', 'head': 'svm', 'modalities': ['b']}]}); "
            "bad = [m for m in ('torch', 'sklearn', 'joblib', 'imblearn') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_input_checks(data):
    (X, y), (Xv, yv), _ = data
    with pytest.raises(ValueError, match="not in X"):
        build_head("stack", {**FAST, "members": [{"name": "C", "head": "logreg", "modalities": ["c"]}]}).fit(X, y)
    with pytest.raises(ValueError, match="both X_val and y_val"):
        build_head("stack", {**FAST, "members": TWO}).fit(X, y, Xv)
    with pytest.raises(RuntimeError, match="fit"):
        build_head("stack", FAST).predict_proba(X)

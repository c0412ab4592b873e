"""Fusion heads: each learns a planted multimodal signal, round-trips through save/load, is seeded."""

from __future__ import annotations

import numpy as np
import pytest

from mmpipe.core.errors import ConfigError
from mmpipe.fusion.heads import HEADS, build_head, load_head
from mmpipe.fusion.heads.common import fast_scores
from mmpipe.fusion.heads.late_fusion import fit_simplex_weights, simplex_grid
from mmpipe.fusion.heads.neural import NeuralHead

ALL_HEADS = [h for h in HEADS.names() if not HEADS.get(h).uses_groups]  # sequence heads: tests/test_regression.py
NEURAL = [h for h in ALL_HEADS if issubclass(HEADS.get(h), NeuralHead)]
FAST = {"threads": 1}  # tests run beside other jobs: one thread avoids spin-waiting on a busy machine


def planted(n: int, seed: int, three: bool = False):
    """3 balanced classes. Modality ``a`` (16-d) separates class 0 from {1, 2}, ``b`` (24-d) separates
    class 2 from {0, 1}; each also carries a weak hint of the pair it cannot split. So either alone
    gets ~2/3 right, both together nearly all. With ``three``, the strong cues are spread over three
    modalities (``a`` 12-d: class 0 vs rest, ``b`` 10-d: class 2 vs rest, ``c`` 8-d: class 1 vs rest)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    rng.shuffle(y)
    geo = np.random.default_rng(1234)  # class geometry shared by every split

    def modality(d: int, strong: int, weak: float = 0.25):
        u = geo.normal(size=d)
        u /= np.linalg.norm(u)
        v = geo.normal(size=d)
        v /= np.linalg.norm(v)
        sign = np.where(y == strong, 1.0, -1.0)
        hint = np.where(y == (strong + 1) % 3, 1.0, np.where(y == (strong + 2) % 3, -1.0, 0.0))
        x = rng.normal(size=(n, d)) + 1.6 * sign[:, None] * u + weak * hint[:, None] * v
        return (x * 2.0 + 0.5).astype(np.float32)  # off-centre and scaled: standardisation must cope

    if three:
        X = {"a": modality(12, 0), "b": modality(10, 2), "c": modality(8, 1)}
    else:
        X = {"a": modality(16, 0), "b": modality(24, 2)}
    return X, y


@pytest.fixture(scope="module")
def two():
    return planted(360, 0), planted(240, 1)


@pytest.fixture(scope="module")
def three():
    return planted(360, 2, three=True), planted(240, 3, three=True)


@pytest.fixture(scope="module")
def fitted(two):
    """One fitted model per head on the two-modality data (seed 0), shared by several tests."""
    (X, y), (Xv, yv) = two
    return {h: build_head(h, {**FAST, "seed": 0}).fit(X, y, Xv, yv) for h in ALL_HEADS}


def acc(model, X, y) -> float:
    return fast_scores(y, model.predict_proba(X).argmax(1), 3)[0]


def test_registry_has_every_head():
    assert set(ALL_HEADS) >= {"concat_mlp", "proj_concat", "cross_attention", "late_fusion", "gated",
                              "tensor_fusion", "low_rank_fusion", "logreg", "svm"}


@pytest.mark.parametrize("head", ALL_HEADS)
def test_learns_planted_signal_from_two_modalities(head, two, fitted):
    (X, y), (Xv, yv) = two
    model = fitted[head]
    p = model.predict_proba(Xv)
    assert p.shape == (len(yv), 3)
    assert np.allclose(p.sum(1), 1, atol=1e-5) and (p >= 0).all()
    # chance is 1/3 and either modality alone tops out near 2/3: > 0.8 needs both
    assert acc(model, Xv, yv) > 0.8, head


@pytest.mark.parametrize("head", ALL_HEADS)
def test_learns_planted_signal_from_three_modalities(head, three):
    (X, y), (Xv, yv) = three
    model = build_head(head, {**FAST, "seed": 0}).fit(X, y, Xv, yv)
    assert acc(model, Xv, yv) > 0.75, head


@pytest.mark.parametrize("head", ALL_HEADS)
def test_single_modality_works(head, two):
    (X, y), (Xv, yv) = two
    model = build_head(head, {**FAST, "seed": 0}).fit({"a": X["a"]}, y, {"a": Xv["a"]}, yv)
    assert 0.5 < acc(model, {"a": Xv["a"]}, yv) < 0.8  # above chance, below what fusion reaches


@pytest.mark.parametrize("head", ALL_HEADS)
def test_save_load_gives_identical_probabilities(head, two, fitted, tmp_path):
    (_, _), (Xv, _) = two
    model = fitted[head]
    path = tmp_path / f"{head}.pt"
    model.save(path)
    assert path.exists() and not list(tmp_path.glob(".*.tmp"))
    again = load_head(head, path)
    assert np.array_equal(model.predict_proba(Xv), again.predict_proba(Xv))
    # dict order of the input does not matter: modalities are matched by name
    assert np.array_equal(model.predict_proba(Xv), again.predict_proba(dict(reversed(list(Xv.items())))))


@pytest.mark.parametrize("head", ALL_HEADS)
def test_same_seed_gives_identical_probabilities(head, two, fitted):
    (X, y), (Xv, yv) = two
    again = build_head(head, {**FAST, "seed": 0}).fit(X, y, Xv, yv)
    assert np.array_equal(fitted[head].predict_proba(Xv), again.predict_proba(Xv))
    assert again.best_epoch_ == fitted[head].best_epoch_ and again.refit_params() == fitted[head].refit_params()
    assert again.history_ == fitted[head].history_ and again.history_  # every head records what it chose


@pytest.mark.parametrize("head", NEURAL)
def test_neural_heads_keep_the_best_epoch_and_a_curve(head, two, fitted):
    (_, _), (Xv, yv) = two
    model = fitted[head]
    hist = model.history_
    assert hist and {"epoch", "train_loss", "val_loss", "val_macro_f1", "val_acc"} <= set(hist[0])
    best = model.best_epoch_
    assert 1 <= best <= len(hist) <= model.params["max_epochs"]
    f1s = [h["val_macro_f1"] for h in hist]
    assert f1s[best - 1] == max(f1s)
    if len(hist) < model.params["max_epochs"]:
        assert len(hist) - best == model.params["patience"]  # stopped by patience
    # the restored weights are the best epoch's: predicting val again reproduces its macro-F1
    if head != "late_fusion":  # late fusion re-weights modalities on val after training
        assert fast_scores(yv, model.predict_proba(Xv).argmax(1), 3)[1] == pytest.approx(f1s[best - 1])


def test_different_seed_changes_a_neural_head(two, fitted):
    (X, y), (Xv, yv) = two
    other = build_head("concat_mlp", {**FAST, "seed": 1}).fit(X, y, Xv, yv)
    assert not np.array_equal(fitted["concat_mlp"].predict_proba(Xv), other.predict_proba(Xv))


@pytest.mark.parametrize("head", ["concat_mlp", "low_rank_fusion"])
def test_without_validation_trains_exactly_epochs(head, two):
    (X, y), _ = two
    model = build_head(head, {**FAST, "epochs": 4}).fit(X, y)
    assert len(model.history_) == 4 and model.best_epoch_ == 4
    assert "val_loss" not in model.history_[0]
    assert model.refit_params() == {"epochs": 4}
    assert len(build_head(head, {**FAST, "max_epochs": 3}).fit(X, y).history_) == 3


def imbalanced(two):
    (X, y), (Xv, yv) = two
    keep = np.concatenate([np.where(y == 0)[0], np.where(y == 1)[0], np.where(y == 2)[0][:20]])
    return {m: a[keep] for m, a in X.items()}, y[keep], Xv, yv


@pytest.mark.parametrize("params", [
    {"smote": True},
    {"class_weight": "balanced"},
    {"loss": "focal", "focal_gamma": 2.0},
    {"loss": "focal", "label_smoothing": 0.1, "class_weight": "balanced", "smote": True},
    {"loss": "ce", "label_smoothing": 0.1},
])
def test_imbalance_options_run_and_learn(params, two):
    X, y, Xv, yv = imbalanced(two)
    model = build_head("concat_mlp", {**FAST, **params}).fit(X, y, Xv, yv)
    assert acc(model, Xv, yv) > 0.6  # balanced val, 20 training samples of class 2: chance is 1/3
    assert np.array_equal(model.predict_proba(Xv),
                          build_head("concat_mlp", {**FAST, **params}).fit(X, y, Xv, yv).predict_proba(Xv))


@pytest.mark.parametrize("head", ["logreg", "svm", "concat_mlp"])
def test_class_weight_helps_the_minority_class(head, two):
    X, y, Xv, yv = imbalanced(two)
    recall2 = {}
    for cw in (None, "balanced"):
        params = {**FAST, "class_weight": cw, **({} if head in NEURAL else {"C": 0.1})}
        p = build_head(head, params).fit(X, y).predict_proba(Xv).argmax(1)
        recall2[cw] = (p[yv == 2] == 2).mean()
    # 20 training samples of class 2 against 120 of each other class: weighting must raise its recall clearly
    assert recall2["balanced"] > recall2[None] + 0.1, recall2


@pytest.mark.parametrize("head", ["logreg", "svm"])
def test_baselines_take_smote_and_class_weight(head, two):
    X, y, Xv, yv = imbalanced(two)
    model = build_head(head, {**FAST, "smote": True, "class_weight": "balanced"}).fit(X, y, Xv, yv)
    assert acc(model, Xv, yv) > 0.7
    assert set(model.refit_params()) == {"C"}
    for option in ({"smote": True}, {"class_weight": "balanced"}):  # each option on its own changes the fit
        plain = build_head(head, {**FAST, "C": 0.1}).fit(X, y).predict_proba(Xv)
        assert not np.allclose(build_head(head, {**FAST, "C": 0.1, **option}).fit(X, y).predict_proba(Xv), plain)


def test_n_classes_covers_classes_missing_from_training(two):
    (X, y), (Xv, _) = two
    for head in ("concat_mlp", "logreg"):
        extra = {"max_epochs": 15} if head == "concat_mlp" else {}
        p = build_head(head, {**FAST, "n_classes": 4, **extra}).fit(X, y).predict_proba(Xv)
        assert p.shape == (len(Xv["a"]), 4) and p[:, 3].mean() < 0.1 and (p.argmax(1) != 3).all()


def test_device_auto_and_unknown_params(two):
    (X, y), (Xv, yv) = two
    model = build_head("gated", {**FAST, "device": "auto", "max_epochs": 2}).fit(X, y, Xv, yv)
    assert model.predict_proba(Xv).shape == (len(yv), 3)
    with pytest.raises(ConfigError, match="unknown parameter"):
        build_head("concat_mlp", {"hiden": 3})
    with pytest.raises(ConfigError, match="loss"):
        build_head("concat_mlp", {"loss": "hinge"})
    # the baselines take no neural training parameters (the grid passes `training:` keys only to heads that take them)
    with pytest.raises(ConfigError, match="unknown parameter"):
        build_head("svm", {"max_epochs": 5, "lr": 0.1, "device": "auto"})


def test_input_checks(two):
    (X, y), _ = two
    model = build_head("concat_mlp", {**FAST, "max_epochs": 1}).fit(X, y)
    with pytest.raises(ValueError, match="missing modalities"):
        model.predict_proba({"a": X["a"]})
    with pytest.raises(ValueError, match="different row counts"):
        build_head("logreg", FAST).fit({"a": X["a"], "b": X["b"][:-1]}, y)


def test_late_fusion_weights_come_from_validation(two):
    (X, y), (Xv, yv) = two
    rng = np.random.default_rng(0)
    noise = lambda n: rng.normal(size=(n, 8)).astype(np.float32)  # noqa: E731
    Xn, Xvn = {"a": X["a"], "noise": noise(len(y))}, {"a": Xv["a"], "noise": noise(len(yv))}
    model = build_head("late_fusion", {**FAST, "seed": 0}).fit(Xn, y, Xvn, yv)
    w = model.weights_
    assert len(w) == 2 and np.isclose(sum(w), 1) and w[0] > w[1]
    assert model.refit_params()["fusion_weights"] == w
    # refitting without validation with the found weights keeps them
    refit = build_head("late_fusion", {**FAST, **model.refit_params()}).fit(Xn, y)
    assert refit.weights_ == pytest.approx(w)
    single = build_head("late_fusion", {**FAST, "max_epochs": 3}).fit({"a": X["a"]}, y, {"a": Xv["a"]}, yv)
    assert single.weights_ == [1.0]


def test_simplex_grid_and_weight_fit():
    assert simplex_grid(1).tolist() == [[1.0]]
    g2 = simplex_grid(2)
    assert len(g2) == 21 and np.allclose(g2.sum(1), 1)
    g3 = simplex_grid(3)
    assert len(g3) == 231 and np.allclose(g3.sum(1), 1) and (g3 >= 0).all()
    assert len(simplex_grid(8)) <= 5000
    # modality 0 is right, modality 1 is uniform: all weight on modality 0
    y = np.array([0, 1, 2, 0])
    good = np.eye(3)[y] * 0.9 + 0.1 / 3
    probs = np.stack([good, np.full((4, 3), 1 / 3)], axis=1)
    assert fit_simplex_weights(probs, y).tolist() == [1.0, 0.0]


def test_tensor_fusion_caps_its_width_for_many_modalities():
    X, y = planted(120, 5, three=True)
    X = {**X, "d": X["a"][:, :5].copy(), "e": X["b"][:, :5].copy()}
    model = build_head("tensor_fusion", {**FAST, "max_epochs": 2}).fit(X, y)
    first = model.module_.mlp.net[0]
    assert first.in_features <= model.params["max_fused"]
    assert model.predict_proba(X).shape == (120, 3)


# ---------------------------------------------------------------- check_params and the C search

def test_check_params_names_the_head_and_the_keys():
    with pytest.raises(ConfigError) as err:
        HEADS.get("concat_mlp").check_params({"hiden": 3, "lr": 0.1, "zz": 1})
    msg = str(err.value)
    assert "\n" not in msg and "'concat_mlp'" in msg and "hiden, zz" in msg and "known: " in msg
    assert "in_dropout" in msg.split("known: ")[1]  # the head's own parameters are listed with the common ones
    assert HEADS.get("svm").check_params({"threads": 1})["C"] == [0.3, 1.0, 3.0]  # defaults filled in


@pytest.mark.parametrize("head, params, match", [
    ("concat_mlp", {"task": "ranking"}, "task"),
    ("concat_mlp", {"class_weight": "auto"}, "class_weight"),
    ("concat_mlp", {"task": "regression", "loss": "ce"}, "loss"),
    ("concat_mlp", {"device": "tpu"}, "device"),
    ("concat_mlp", {"batch_size": 0}, "batch_size"),
    ("gated", {"epochs": 2.5}, "epochs"),
    ("late_fusion", {"branch": "tree"}, "branch"),
    ("late_fusion", {"fusion_weights": [1, -1]}, "fusion_weights"),
    ("context_gru", {"smote": True}, "smote"),
    ("svm", {"task": "regression", "smote": True}, "smote"),
    ("svm", {"C": [1, 0]}, "C"),
    ("logreg", {"C": "big"}, "C"),
    ("svm", {"gamma": "auto"}, "gamma"),
])
def test_check_params_rejects_bad_values(head, params, match):
    with pytest.raises(ConfigError, match=match) as err:
        HEADS.get(head).check_params(params)
    assert f"head {head!r}" in str(err.value) and "\n" not in str(err.value)


def test_check_params_needs_neither_torch_nor_sklearn():
    import subprocess
    import sys

    code = ("import sys; from mmpipe.fusion.heads.logreg import LogReg; from mmpipe.fusion.heads.svm import SVM; "
            "LogReg.check_params({'C': [0.1, 1]}); SVM.check_params({'gamma': 0.5, 'threads': 1}); "
            "import mmpipe.fusion.dataset, mmpipe.fusion.context; "
            "bad = [m for m in ('torch', 'sklearn', 'joblib', 'imblearn') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("head", ["logreg", "svm"])
def test_c_search_records_every_candidate_and_the_choice(head, two, fitted):
    (X, y), (Xv, yv) = two
    model = fitted[head]
    hist = model.history_
    assert [h["C"] for h in hist] == sorted(model.params["C"])
    assert [h["chosen"] for h in hist].count(True) == 1
    chosen = next(h for h in hist if h["chosen"])
    assert chosen["C"] == model.C_ == model.refit_params()["C"]
    assert chosen["val_macro_f1"] == max(h["val_macro_f1"] for h in hist)
    if head == "logreg":  # the recorded score is the kept model's (svm's search scores the uncalibrated SVC)
        assert chosen["val_macro_f1"] == pytest.approx(fast_scores(yv, model.predict(Xv), 3)[1])
    # without validation data: the middle candidate, nothing recorded
    alone = build_head(head, {**FAST, "C": [0.01, 0.1, 1.0]}).fit(X, y)
    assert alone.C_ == 0.1 and alone.history_ == []


@pytest.mark.parametrize("head", NEURAL)
def test_neural_heads_learn_with_half_precision_forward_passes(head, two, monkeypatch):
    """On CUDA a neural head runs its forward passes under autocast (``NeuralHead._autocast``). The same loop with
    bf16 autocast on the CPU still learns the planted signal, and its probabilities come back float."""
    import torch

    (X, y), (Xv, yv) = two
    monkeypatch.setattr(NeuralHead, "_autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))
    model = build_head(head, {**FAST, "seed": 0}).fit(X, y, Xv, yv)
    p = model.predict_proba(Xv)
    assert p.dtype == np.float64 and np.isfinite(p).all() and np.allclose(p.sum(1), 1, atol=1e-4)
    assert acc(model, Xv, yv) > 0.8, head

"""Preprocessing shared by every head: input checks, per-modality standardisation, SMOTE, class weights.

Everything here is fitted on the TRAINING features only and is deterministic given a seed. The common
parameters (``task``, ``seed``, ``n_classes``, ``class_weight``, ``smote``, ``threads``) are ``Head.defaults``;
with ``task: regression`` (``y`` holds float scores, e.g. CMU-MOSI sentiment in [-3, 3]) ``n_classes`` and
``class_weight`` are ignored and SMOTE is a config error.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from mmpipe.fusion.dataset import Features


def is_regression(params: dict[str, Any]) -> bool:
    return params.get("task") == "regression"


def check_features(X: Features, modalities: list[str] | None = None, what: str = "X") -> tuple[list[str], int]:
    """Validate a feature dict; returns (modality order, n rows)."""
    if not isinstance(X, dict) or not X:
        raise ValueError(f"{what}: expected a non-empty dict modality -> (n, d) array")
    mods = list(X) if modalities is None else list(modalities)
    missing = [m for m in mods if m not in X]
    if missing:
        raise ValueError(f"{what}: missing modalities {missing}; have {sorted(X)}")
    n = None
    for m in mods:
        a = X[m]
        if a.ndim != 2:
            raise ValueError(f"{what}[{m!r}]: expected a 2-D array, got shape {a.shape}")
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise ValueError(f"{what}: modalities have different row counts ({n} vs {a.shape[0]} for {m!r})")
    return mods, int(n)


def infer_n_classes(y: np.ndarray, y_val: np.ndarray | None, n_classes: int | None) -> int:
    top = int(y.max()) + 1 if len(y) else 0
    if y_val is not None and len(y_val):
        top = max(top, int(y_val.max()) + 1)
    if n_classes is None:
        return max(top, 2)
    if top > n_classes:
        raise ValueError(f"labels go up to {top - 1} but n_classes={n_classes}")
    return int(n_classes)


def fit_standardizer(X: Features, modalities: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-modality, per-feature mean and std (float32; constant features get std 1)."""
    stats = {}
    for m in modalities:
        a = np.asarray(X[m], dtype=np.float64)
        mean = a.mean(axis=0)
        std = a.std(axis=0)
        std = np.where(std < 1e-8, 1.0, std)
        stats[m] = (mean.astype(np.float32), std.astype(np.float32))
    return stats


def standardize(X: Features, stats: dict[str, tuple[np.ndarray, np.ndarray]],
                modalities: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for m in modalities:
        mean, std = stats[m]
        a = np.asarray(X[m], dtype=np.float32)
        if a.shape[1] != mean.shape[0]:
            raise ValueError(f"modality {m!r}: fitted on {mean.shape[0]} features, got {a.shape[1]}")
        out[m] = np.ascontiguousarray((a - mean) / std, dtype=np.float32)
    return out


def concat(X: Features, modalities: list[str]) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate([X[m] for m in modalities], axis=1), dtype=np.float32)


def split_back(Z: np.ndarray, modalities: list[str], dims: list[int]) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for m, d in zip(modalities, dims):
        out[m] = np.ascontiguousarray(Z[:, start:start + d], dtype=np.float32)
        start += d
    return out


def apply_smote(X: Features, y: np.ndarray, modalities: list[str],
                seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """SMOTE on the concatenated (standardised) training matrix, split back into modalities.

    The original rows come first, synthetic rows after (imbalanced-learn's order). Skipped with a
    warning when a minority class has fewer than 2 samples.
    """
    from imblearn.over_sampling import SMOTE

    counts = np.bincount(y)
    present = counts[counts > 0]
    if len(present) < 2 or present.min() == present.max():
        return dict(X), y
    if present.min() < 2:
        warnings.warn("SMOTE skipped: a class has fewer than 2 training samples", stacklevel=3)
        return dict(X), y
    k = int(min(5, present.min() - 1))
    dims = [X[m].shape[1] for m in modalities]
    Z, y2 = SMOTE(k_neighbors=k, random_state=seed).fit_resample(concat(X, modalities), y)
    return split_back(np.asarray(Z, dtype=np.float32), modalities, dims), np.asarray(y2, dtype=np.int64)


def balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """``n / (K_present * count_c)`` as in scikit-learn's 'balanced'; absent classes get weight 1."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.ones(n_classes)
    w[present] = len(y) / (present.sum() * counts[present])
    return w.astype(np.float32)


def fast_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[float, float]:
    """(accuracy, macro-F1) without scikit-learn's overhead; macro over all ``n_classes`` labels,
    a class with no true and no predicted sample counts as F1 0 (scikit-learn, zero_division=0)."""
    cm = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(tp.sum() / max(len(y_true), 1)), float(f1.mean())


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Cheap per-epoch scores of a regression head: ``mae``, ``corr`` (0 when undefined) and ``acc2``
    (sign agreement, has-0 convention: >= 0 is non-negative)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if not len(t):
        return {"mae": float("nan"), "corr": 0.0, "acc2": float("nan")}
    corr = float(np.corrcoef(t, p)[0, 1]) if len(t) > 1 and np.ptp(t) > 0 and np.ptp(p) > 0 else 0.0
    return {"mae": float(np.abs(t - p).mean()), "corr": corr, "acc2": float(((t >= 0) == (p >= 0)).mean())}


def prepare_train(X: Features, y: np.ndarray, X_val: Features | None, y_val: np.ndarray | None,
                  params: dict[str, Any]) -> dict[str, Any]:
    """Checks, n_classes, standardisation (train only) and optional SMOTE: the common front of every fit.
    With ``task: regression`` the targets are float scores and ``n_classes`` is 1 (one output)."""
    regression = is_regression(params)
    ytype = np.float32 if regression else np.int64
    mods, n = check_features(X)
    y = np.asarray(y, dtype=ytype)
    if regression and not np.isfinite(y).all():
        raise ValueError("regression targets contain NaN or infinite values")
    if len(y) != n:
        raise ValueError(f"y has {len(y)} labels for {n} feature rows")
    if (X_val is None) != (y_val is None):
        raise ValueError("give both X_val and y_val, or neither")
    if X_val is not None:
        _, nv = check_features(X_val, mods, "X_val")
        y_val = np.asarray(y_val, dtype=ytype)
        if len(y_val) != nv:
            raise ValueError(f"y_val has {len(y_val)} labels for {nv} feature rows")
    k = 1 if regression else infer_n_classes(y, y_val, params.get("n_classes"))
    stats = fit_standardizer(X, mods)
    Xs = standardize(X, stats, mods)
    if params.get("smote"):
        Xs, y = apply_smote(Xs, y, mods, int(params["seed"]))
    Xv = standardize(X_val, stats, mods) if X_val is not None else None
    return {"modalities": mods, "dims": [X[m].shape[1] for m in mods], "n_classes": k, "stats": stats,
            "X": Xs, "y": y, "X_val": Xv, "y_val": y_val}

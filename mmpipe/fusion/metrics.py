"""Classification and regression (MMSA-style sentiment) metrics and their aggregation over seeds."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

SCALAR_METRICS = ("accuracy", "macro_f1", "weighted_f1", "log_loss")
REGRESSION_METRICS = ("acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "acc5", "mae", "corr")
# the binary classes of a sentiment score in the "has-0" convention (the confusion matrices of regression runs)
BINARY_CLASSES = ["negative", "non-negative"]


def classification_metrics(y_true: Sequence[int], proba_or_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of integer labels ``y_true`` against probabilities ``(n, K)`` or predicted ids ``(n,)``.

    Returns ``accuracy``, ``macro_f1``, ``weighted_f1`` (macro over ALL ``classes``, a class with neither
    true nor predicted samples counts as 0), ``log_loss`` (only when probabilities are given, else None),
    ``per_class``: {class name: {precision, recall, f1, support}}, ``confusion_matrix`` (rows true,
    columns predicted, in ``classes`` order, list of lists of ints) and ``n``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_recall_fscore_support
    y_true = np.asarray(y_true, dtype=np.int64)
    a = np.asarray(proba_or_pred)
    k = len(classes)
    labels = list(range(k))
    proba = None
    if a.ndim == 2:
        if a.shape[1] != k:
            raise ValueError(f"probabilities have {a.shape[1]} columns for {k} classes")
        proba = a.astype(np.float64)
        y_pred = proba.argmax(axis=1)
    else:
        y_pred = a.astype(np.int64)
    if len(y_pred) != len(y_true):
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    ll = None
    if proba is not None and len(y_true):
        q = np.clip(proba, 1e-15, 1.0)
        ll = float(log_loss(y_true, q / q.sum(axis=1, keepdims=True), labels=labels))
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "log_loss": ll,
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, Any]:
    """Sentiment-score metrics as MMSA reports them for CMU-MOSI / MOSEI (``__eval_mosi_regression``).

    * ``acc2_has0`` / ``f1_has0``: negative (< 0) vs non-negative (>= 0), every sample; F1 weighted;
    * ``acc2_non0`` / ``f1_non0``: negative vs positive (> 0) on the samples whose TRUE score is not 0
      (a prediction of exactly 0 counts as negative there); F1 weighted;
    * ``acc7`` / ``acc5``: both clipped to [-3, 3] / [-2, 2], then rounded with ``np.round`` (half to even, as
      MMSA), equal integers count as right;
    * ``mae``: mean absolute error (predictions not clipped); ``corr``: Pearson correlation (None when either
      side is constant);
    * ``confusion_matrix``: the has-0 binary one (rows true, columns predicted, ``BINARY_CLASSES`` order);
      ``n`` and ``n_non0``.
    """
    from sklearn.metrics import confusion_matrix, f1_score
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if len(t) != len(p):
        raise ValueError(f"{len(t)} scores but {len(p)} predictions")
    if not len(t):
        raise ValueError("regression_metrics needs at least one sample")
    if not np.isfinite(p).all():
        raise ValueError("predictions contain NaN or infinite values")
    bt, bp = t >= 0, p >= 0
    nz = t != 0

    def acc(a, b):
        return float(np.mean(a == b)) if len(a) else float("nan")

    def wf1(a, b):
        return float(f1_score(a, b, average="weighted", zero_division=0)) if len(a) else float("nan")

    corr = None
    if len(t) > 1 and np.ptp(t) > 0 and np.ptp(p) > 0:  # exact: a constant's float std can be 1e-17
        corr = float(np.corrcoef(p, t)[0, 1])
    return {
        "n": int(len(t)),
        "n_non0": int(nz.sum()),
        "acc2_has0": acc(bt, bp),
        "f1_has0": wf1(bt, bp),
        "acc2_non0": acc(t[nz] > 0, p[nz] > 0),
        "f1_non0": wf1(t[nz] > 0, p[nz] > 0),
        "acc7": acc(np.round(np.clip(t, -3, 3)), np.round(np.clip(p, -3, 3))),
        "acc5": acc(np.round(np.clip(t, -2, 2)), np.round(np.clip(p, -2, 2))),
        "mae": float(np.mean(np.abs(p - t))),
        "corr": corr,
        "confusion_matrix": confusion_matrix(bt, bp, labels=[False, True]).tolist(),
    }


def _mean_std(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def aggregate(metric_dicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and SAMPLE standard deviation (ddof=1; 0.0 for a single run) over runs (e.g. seeds).

    Returns {metric: {"mean", "std"}} for every scalar metric present in all runs (None values
    skipped), ``per_class``: {class: {precision|recall|f1: {"mean", "std"}, "support": int}},
    ``confusion_matrix_mean`` (element-wise mean) and ``n_runs``.
    """
    if not metric_dicts:
        raise ValueError("nothing to aggregate")
    out: dict[str, Any] = {"n_runs": len(metric_dicts)}
    keys = [k for k, v in metric_dicts[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in ("n", "n_non0")]
    for k in keys:
        vals = [d.get(k) for d in metric_dicts]
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
            continue
        out[k] = _mean_std(vals)
    if "per_class" in metric_dicts[0]:
        out["per_class"] = {
            c: {**{m: _mean_std([d["per_class"][c][m] for d in metric_dicts]) for m in ("precision", "recall", "f1")},
                "support": int(metric_dicts[0]["per_class"][c]["support"])}
            for c in metric_dicts[0]["per_class"]}
    if "confusion_matrix" in metric_dicts[0]:
        out["confusion_matrix_mean"] = np.mean([d["confusion_matrix"] for d in metric_dicts], axis=0).tolist()
    return out


def fmt_ms(ms: dict[str, float] | None, digits: int = 3) -> str:
    """``mean ± std`` or an em dash."""
    if not ms:
        return "—"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"

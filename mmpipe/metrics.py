"""Classification metrics (scikit-learn) and their aggregation over seeds."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_recall_fscore_support

SCALAR_METRICS = ("accuracy", "macro_f1", "weighted_f1", "log_loss")


def classification_metrics(y_true: Sequence[int], proba_or_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of integer labels ``y_true`` against probabilities ``(n, K)`` or predicted ids ``(n,)``.

    Returns ``accuracy``, ``macro_f1``, ``weighted_f1`` (macro over ALL ``classes``, a class with neither
    true nor predicted samples counts as 0), ``log_loss`` (only when probabilities are given, else None),
    ``per_class``: {class name: {precision, recall, f1, support}}, ``confusion_matrix`` (rows true,
    columns predicted, in ``classes`` order, list of lists of ints) and ``n``.
    """
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
            and k != "n"]
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

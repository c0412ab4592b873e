"""What a fitted head costs: parameters, fit time, the job's peak memory and inference latency."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import numpy as np

from mmpipe.fusion.heads.base import Features, Head

LATENCY_ROWS = 1000


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (``getrusage``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def inference_ms_per_1000(model: Head, X: Features, groups: np.ndarray | None = None, repeats: int = 3) -> float:
    """Median wall time of ``model``'s prediction over ``X`` (its first 1,000 rows; all of them for a sequence
    head, whose ``groups`` index every row), scaled to 1,000 samples (ms). One untimed call first pays the
    one-off costs (lazy imports, allocator warm-up)."""
    n = int(next(iter(X.values())).shape[0])
    if n == 0:
        raise ValueError("inference latency needs at least one sample")
    if groups is None and n > LATENCY_ROWS:
        X, n = {m: a[:LATENCY_ROWS] for m, a in X.items()}, LATENCY_ROWS
    predict = model.predict if model.regression else model.predict_proba
    predict(X, groups=groups)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(X, groups=groups)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000 * LATENCY_ROWS / n, 3)


def cost_record(model: Head, X: Features, fit_seconds: list[float], groups: np.ndarray | None = None) -> dict[str, Any]:
    """The ``cost`` entry of ``metrics.json``: ``model`` (a final model) predicts ``X`` for the latency."""
    return {"parameters": model.n_parameters(),
            "fit_seconds_per_seed": round(float(np.mean(fit_seconds)), 3) if fit_seconds else None,
            "peak_rss_mb": peak_rss_mb(),
            "inference_ms_per_1000": inference_ms_per_1000(model, X, groups)}

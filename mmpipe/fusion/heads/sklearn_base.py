"""Shared plumbing of the scikit-learn baselines: standardise each modality on the training split,
concatenate, optional SMOTE; save/load one joblib file (atomically). With ``task: regression`` the
baselines fit regressors (logreg: ridge regression, svm: RBF SVR) and ``predict`` returns scores."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from mmpipe.core.atomic import atomic_path
from mmpipe.fusion.heads.base import Features, Head
from mmpipe.fusion.heads.common import (COMMON_DEFAULTS, check_features, check_params, concat, fast_scores, is_regression,
                                 prepare_train, standardize)

# Training parameters of the neural heads, accepted and IGNORED by the baselines so that one params
# block (e.g. a grid-wide default) can serve every head.
IGNORED_NEURAL_PARAMS = ("device", "epochs", "max_epochs", "patience", "batch_size", "eval_batch_size", "lr",
                         "weight_decay", "hidden", "dropout", "loss", "label_smoothing", "focal_gamma", "amp")

SK_DEFAULTS: dict[str, Any] = {**COMMON_DEFAULTS, **{k: None for k in IGNORED_NEURAL_PARAMS}}


def candidate_values(v: Any) -> list[float]:
    return [float(c) for c in v] if isinstance(v, (list, tuple)) else [float(v)]


def middle(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


class SklearnHead(Head):
    """``C`` may be a number or a list: with a list and validation data the best value by validation
    macro-F1 is chosen (regression: the lowest validation MAE; ties: the smaller C, i.e. the stronger
    regularisation); with a list and no validation data the middle value is used. ``refit_params()``
    returns the chosen ``C``."""

    sk_defaults: dict[str, Any] = {}

    def __init__(self, **params: Any):
        self.params = check_params(self.name or type(self).__name__, params, {**SK_DEFAULTS, **self.sk_defaults})
        self.fitted_ = False
        self.best_epoch_ = None
        self.history_: list[dict[str, float]] = []

    def get_params(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def regression_(self) -> bool:
        return is_regression(self.params)

    def _check_classification(self) -> None:
        if self.regression_:
            raise TypeError(f"{self.name}: a regression head has no class probabilities; use predict()")

    def _better(self, score: float, best: tuple | None) -> bool:
        """Candidate selection on validation: higher macro-F1, or (regression) lower MAE; ties keep the earlier."""
        return best is None or (score < best[0] if self.regression_ else score > best[0])

    def _val_score(self, yv: np.ndarray, pred: np.ndarray) -> float:
        if self.regression_:
            return float(np.abs(np.asarray(yv, dtype=np.float64) - pred).mean())
        return fast_scores(yv, pred, self.n_classes_)[1]

    def _threads(self):
        t = self.params.get("threads")
        if not t:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(int(t))

    def _prepare(self, X, y, X_val, y_val) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        prep = prepare_train(X, y, X_val, y_val, self.params)
        self.modalities_, self.dims_ = prep["modalities"], prep["dims"]
        self.n_classes_, self.stats_ = prep["n_classes"], prep["stats"]
        Z = concat(prep["X"], self.modalities_)
        Zv = concat(prep["X_val"], self.modalities_) if prep["X_val"] is not None else None
        return Z, prep["y"], Zv, prep["y_val"]

    def _transform(self, X: Features) -> np.ndarray:
        if not self.fitted_:
            raise RuntimeError("fit or load the head first")
        check_features(X, self.modalities_)
        return concat(standardize(X, self.stats_, self.modalities_), self.modalities_)

    def _full_proba(self, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Spread an estimator's columns (classes seen in training) over all n_classes_."""
        out = np.zeros((proba.shape[0], self.n_classes_))
        out[:, classes] = proba
        return out

    def refit_params(self) -> dict[str, Any]:
        return {"C": float(self.C_)}

    def save(self, path: str | Path) -> None:
        if not self.fitted_:
            raise RuntimeError("nothing to save: fit the head first")
        buf = io.BytesIO()
        joblib.dump({"kind": "sklearn", "head": self.name, "object": self}, buf)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "SklearnHead":
        blob = joblib.load(Path(path))
        if not isinstance(blob, dict) or blob.get("kind") != "sklearn" or not isinstance(blob["object"], cls):
            raise TypeError(f"{path}: not a {cls.__name__} file")
        return blob["object"]

"""Shared plumbing of the scikit-learn baselines: standardise each modality on the training split,
concatenate, optional SMOTE; choose ``C`` on validation; save/load one joblib file (atomically). With
``task: regression`` the baselines fit regressors (logreg: ridge regression, svm: RBF SVR) and ``predict``
returns scores. scikit-learn, threadpoolctl and joblib are imported when a head fits, predicts or saves."""

from __future__ import annotations

import contextlib
import io
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar, Callable

import numpy as np

from mmpipe.core.atomic import atomic_path
from mmpipe.fusion.heads.base import Features, Head
from mmpipe.fusion.heads.common import check_features, concat, fast_scores, prepare_train, standardize

def candidate_values(v: Any) -> list[float]:
    return [float(c) for c in v] if isinstance(v, (list, tuple)) else [float(v)]


def middle(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def is_positive(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and v > 0


def estimator_size(est: Any) -> int:
    """The learned numbers of a fitted scikit-learn estimator (coefficients, intercepts, dual coefficients) or array."""
    if est is None:
        return 0
    if isinstance(est, np.ndarray):
        return int(est.size)
    return int(sum(np.size(getattr(est, a)) for a in ("coef_", "intercept_", "dual_coef_") if hasattr(est, a)))


class SklearnHead(Head):
    """``C`` may be a number or a list. With validation data every candidate is fitted (smallest first) and
    the best by validation macro-F1 is kept (regression: the lowest validation MAE; ties: the smaller C, i.e.
    the stronger regularisation); ``history_`` holds one record per candidate (``C``, ``val_macro_f1`` or
    ``val_mae``, ``chosen``). Without validation data the middle value is used and ``history_`` is empty.
    ``refit_params()`` returns the chosen ``C`` (``C_``)."""

    defaults = {**Head.defaults, "C": 1.0}
    # the fitted estimators and arrays that ``n_parameters`` counts
    estimators_attrs: ClassVar[tuple[str, ...]] = ()
    search_space = {"C": {"low": 1e-4, "high": 100.0, "log": True}}

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = super().check_params(params)
        C = p["C"]
        if not (is_positive(C) or isinstance(C, (list, tuple)) and C and all(map(is_positive, C))):
            raise cls.config_error(f"C must be a positive number or a non-empty list of them, got {C!r}")
        return p

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.fitted_ = False

    # ---- what subclasses define -----------------------------------------------------------------
    def _threads(self) -> contextlib.AbstractContextManager:
        """The BLAS / OpenMP thread limit for fit and predict (``threads``)."""
        t = self.params.get("threads")
        if not t:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(int(t))

    # ---- shared steps ---------------------------------------------------------------------------
    def _check_classification(self) -> None:
        if self.regression:
            raise TypeError(f"{self.name}: a regression head has no class probabilities; use predict()")

    def _val_score(self, yv: np.ndarray, pred: np.ndarray) -> float:
        if self.regression:
            return float(np.abs(np.asarray(yv, dtype=np.float64) - pred).mean())
        return fast_scores(yv, pred, self.n_classes_)[1]

    def _search_C(self, fit: Callable[[float, Any], Any], X_val: np.ndarray | None, y_val: np.ndarray | None) -> Any:
        """The estimator of the chosen C (sets ``C_`` and ``history_``, see the class docstring).

        ``fit(C, previous)`` returns an estimator fitted with ``C``; ``previous`` is the one fitted with the
        next smaller C (None for the first), for a warm start. ``X_val`` is what its ``predict`` takes."""
        cands = sorted(candidate_values(self.params["C"]))
        self.history_ = []
        if X_val is None:
            self.C_ = middle(cands)
            return fit(self.C_, None)
        key = "val_mae" if self.regression else "val_macro_f1"
        best, model = None, None
        for C in cands:
            model = fit(C, model)
            score = self._val_score(y_val, model.predict(X_val))
            self.history_.append({"C": C, key: score})
            if best is None or (score < best[0] if self.regression else score > best[0]):
                best = (score, C, model)
        _, self.C_, chosen = best
        for rec in self.history_:
            rec["chosen"] = rec["C"] == self.C_
        return chosen

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

    def n_parameters(self) -> int | None:
        return sum(estimator_size(getattr(self, a)) for a in self.estimators_attrs) if self.fitted_ else None

    def refit_params(self) -> dict[str, Any]:
        return {"C": float(self.C_)}

    def save(self, path: str | Path) -> None:
        import joblib

        if not self.fitted_:
            raise RuntimeError("nothing to save: fit the head first")
        buf = io.BytesIO()
        joblib.dump({"kind": "sklearn", "head": self.name, "object": self}, buf)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "SklearnHead":
        import joblib

        blob = joblib.load(Path(path))
        if not isinstance(blob, dict) or blob.get("kind") != "sklearn" or not isinstance(blob["object"], cls):
            raise TypeError(f"{path}: not a {cls.__name__} file")
        return blob["object"]

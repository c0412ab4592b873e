"""Baseline: multinomial logistic regression (lbfgs) on the concatenated standardised features; with
``task: regression``, ridge regression (``alpha = 1 / C``) on the same features."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.sklearn_base import SklearnHead


@register("logreg")
class LogReg(SklearnHead):
    """Parameters: ``C`` (number or list, see SklearnHead; default (0.01, 0.1, 1.0)), ``max_iter``.

    With a list, the values are fitted from the smallest C up, each warm-started from the previous
    solution (same optimum, fewer lbfgs iterations). lbfgs spends its time in matrix-vector products,
    which are memory-bound: they run on ONE BLAS thread whatever ``threads`` says (extra BLAS threads
    gain little here and spin-wait badly on a busy machine).
    """

    estimators_attrs = ("model_",)
    defaults = {**SklearnHead.defaults, "C": [0.01, 0.1, 1.0], "max_iter": 1000}

    def _threads(self):
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1, user_api="blas")

    def _model(self, C: float, prev: Any = None) -> Any:
        """Ridge (regression) or LogisticRegression, warm-started from ``prev``'s solution."""
        if self.regression:
            from sklearn.linear_model import Ridge

            return Ridge(alpha=1.0 / C)
        from sklearn.linear_model import LogisticRegression

        p = self.params
        m = LogisticRegression(C=C, max_iter=int(p["max_iter"]), class_weight=p["class_weight"],
                               random_state=int(p["seed"]), warm_start=prev is not None)
        if prev is not None:
            m.coef_, m.intercept_ = prev.coef_.copy(), prev.intercept_.copy()
        return m

    def fit(self, X, y, X_val=None, y_val=None, *, groups=None, groups_val=None):
        with self._threads():
            Z, y, Zv, yv = self._prepare(X, y, X_val, y_val)
            self.model_ = self._search_C(lambda C, prev: self._model(C, prev).fit(Z, y), Zv, yv)
            if not self.regression:
                self.model_.warm_start = False
        self.fitted_ = True
        return self

    def predict(self, X, *, groups=None):
        if not self.regression:
            return super().predict(X)
        Z = self._transform(X)
        with self._threads():
            return np.asarray(self.model_.predict(Z), dtype=np.float64)

    def predict_proba(self, X, *, groups=None):
        self._check_classification()
        Z = self._transform(X)
        with self._threads():
            return self._full_proba(self.model_.predict_proba(Z), self.model_.classes_).astype(np.float64)

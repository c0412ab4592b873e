"""Baseline: multinomial logistic regression (lbfgs) on the concatenated standardised features; with
``task: regression``, ridge regression (``alpha = 1 / C``) on the same features."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from threadpoolctl import threadpool_limits

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.sklearn_base import SklearnHead, candidate_values, middle


@register("logreg")
class LogReg(SklearnHead):
    """Parameters: ``C`` (number or list, see SklearnHead; default (0.01, 0.1, 1.0)), ``max_iter``.

    With a list, the values are fitted from the smallest C up, each warm-started from the previous
    solution (same optimum, fewer lbfgs iterations). lbfgs spends its time in matrix-vector products,
    which are memory-bound: they run on ONE BLAS thread whatever ``threads`` says (extra BLAS threads
    gain little here and spin-wait badly on a busy machine).
    """

    sk_defaults = {"C": [0.01, 0.1, 1.0], "max_iter": 1000}

    def _model(self, C: float, prev: LogisticRegression | None = None) -> LogisticRegression:
        p = self.params
        m = LogisticRegression(C=C, max_iter=int(p["max_iter"]), class_weight=p["class_weight"],
                               random_state=int(p["seed"]), warm_start=prev is not None)
        if prev is not None:
            m.coef_, m.intercept_ = prev.coef_.copy(), prev.intercept_.copy()
        return m

    def _fit_ridge(self, Z, y, Zv, yv):
        cands = candidate_values(self.params["C"])
        if len(cands) == 1 or Zv is None:
            self.C_ = cands[0] if len(cands) == 1 else middle(cands)
            self.model_ = Ridge(alpha=1.0 / self.C_).fit(Z, y)
            return
        best = None
        for C in sorted(cands):
            m = Ridge(alpha=1.0 / C).fit(Z, y)
            score = self._val_score(yv, m.predict(Zv))
            if self._better(score, best):
                best = (score, C, m)
        _, self.C_, self.model_ = best

    def fit(self, X, y, X_val=None, y_val=None):
        with threadpool_limits(1, user_api="blas"):
            Z, y, Zv, yv = self._prepare(X, y, X_val, y_val)
            if self.regression_:
                self._fit_ridge(Z, y, Zv, yv)
                self.fitted_ = True
                return self
            cands = candidate_values(self.params["C"])
            if len(cands) == 1 or Zv is None:
                self.C_ = cands[0] if len(cands) == 1 else middle(cands)
                self.model_ = self._model(self.C_).fit(Z, y)
            else:
                best, prev = None, None
                for C in sorted(cands):
                    m = self._model(C, prev).fit(Z, y)
                    prev = m
                    f1 = self._val_score(yv, m.predict(Zv))
                    if self._better(f1, best):
                        best = (f1, C, m)
                _, self.C_, self.model_ = best
            self.model_.warm_start = False
        self.fitted_ = True
        return self

    def predict(self, X):
        if not self.regression_:
            return super().predict(X)
        Z = self._transform(X)
        with threadpool_limits(1, user_api="blas"):
            return np.asarray(self.model_.predict(Z), dtype=np.float64)

    def predict_proba(self, X):
        self._check_classification()
        Z = self._transform(X)
        with threadpool_limits(1, user_api="blas"):
            return self._full_proba(self.model_.predict_proba(Z), self.model_.classes_).astype(np.float64)

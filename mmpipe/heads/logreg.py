"""Baseline: multinomial logistic regression (lbfgs) on the concatenated standardised features."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from mmpipe.heads.base import register
from mmpipe.heads.common import fast_scores
from mmpipe.heads.sklearn_base import SklearnHead, candidate_values, middle


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

    def fit(self, X, y, X_val=None, y_val=None):
        with threadpool_limits(1, user_api="blas"):
            Z, y, Zv, yv = self._prepare(X, y, X_val, y_val)
            cands = candidate_values(self.params["C"])
            if len(cands) == 1 or Zv is None:
                self.C_ = cands[0] if len(cands) == 1 else middle(cands)
                self.model_ = self._model(self.C_).fit(Z, y)
            else:
                best, prev = None, None
                for C in sorted(cands):
                    m = self._model(C, prev).fit(Z, y)
                    prev = m
                    f1 = fast_scores(yv, m.predict(Zv), self.n_classes_)[1]
                    if best is None or f1 > best[0]:
                        best = (f1, C, m)
                _, self.C_, self.model_ = best
            self.model_.warm_start = False
        self.fitted_ = True
        return self

    def predict_proba(self, X):
        Z = self._transform(X)
        with threadpool_limits(1, user_api="blas"):
            return self._full_proba(self.model_.predict_proba(Z), self.model_.classes_).astype(np.float64)

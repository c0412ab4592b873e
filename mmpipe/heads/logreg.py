"""Baseline: multinomial logistic regression on the concatenated standardised features."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from mmpipe.heads.base import register
from mmpipe.heads.common import fast_scores
from mmpipe.heads.sklearn_base import SklearnHead, candidate_values, middle


@register("logreg")
class LogReg(SklearnHead):
    """Parameters: ``C`` (number or list, see SklearnHead; default (0.01, 0.1, 1.0)), ``max_iter``."""

    sk_defaults = {"C": [0.01, 0.1, 1.0], "max_iter": 1000}

    def _model(self, C: float) -> LogisticRegression:
        p = self.params
        return LogisticRegression(C=C, max_iter=int(p["max_iter"]), class_weight=p["class_weight"],
                                  random_state=int(p["seed"]))

    def fit(self, X, y, X_val=None, y_val=None):
        with self._threads():
            Z, y, Zv, yv = self._prepare(X, y, X_val, y_val)
            cands = candidate_values(self.params["C"])
            if len(cands) == 1 or Zv is None:
                self.C_ = cands[0] if len(cands) == 1 else middle(cands)
                self.model_ = self._model(self.C_).fit(Z, y)
            else:
                best = None
                for C in sorted(cands):
                    m = self._model(C).fit(Z, y)
                    f1 = fast_scores(yv, m.predict(Zv), self.n_classes_)[1]
                    if best is None or f1 > best[0]:
                        best = (f1, C, m)
                _, self.C_, self.model_ = best
        self.fitted_ = True
        return self

    def predict_proba(self, X):
        Z = self._transform(X)
        with self._threads():
            return self._full_proba(self.model_.predict_proba(Z), self.model_.classes_).astype(np.float64)

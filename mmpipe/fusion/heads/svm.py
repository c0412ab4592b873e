"""Baseline: RBF-kernel SVM on the concatenated standardised features, with calibrated probabilities.

It is an exact ``SVC(kernel="rbf")``: the RBF Gram matrix is computed once with BLAS and handed to
``SVC(kernel="precomputed")``, which is ~50x faster than libsvm's own kernel evaluations on a few
thousand dense 1000+-d rows and lets the C search and the calibration folds reuse it.
``gamma: scale`` is scikit-learn's ``1 / (n_features * X.var())``.

Probabilities: a multinomial logistic regression (Platt scaling generalised to K classes) on the
SVM's one-vs-rest decision values, fitted on out-of-fold decision values of a stratified
``calibration_folds``-fold split of the TRAINING data (the same idea as
``CalibratedClassifierCV(SVC(), ensemble=False)``), then the SVM is refitted on all training rows.
Only the support vectors are stored.

With ``task: regression`` it is an ``SVR(kernel="rbf", epsilon=epsilon)`` on the same precomputed Gram
matrix (C chosen by validation MAE), no calibration, and ``predict`` returns scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.sklearn_base import SklearnHead, is_positive


@register("svm")
class SVM(SklearnHead):
    """Parameters: ``C`` (number or list, see SklearnHead; default (0.3, 1, 3)), ``gamma`` ("scale" or a
    number), ``calibration_folds``, ``epsilon`` (SVR's insensitive tube; regression only)."""

    estimators_attrs = ("svc_", "X_sv_", "calibrator_")
    defaults = {**SklearnHead.defaults, "C": [0.3, 1.0, 3.0], "gamma": "scale", "calibration_folds": 3,
                "epsilon": 0.1}

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = super().check_params(params)
        if p["gamma"] != "scale" and not is_positive(p["gamma"]):
            raise cls.config_error(f"gamma must be 'scale' or a positive number, got {p['gamma']!r}")
        return p

    def _estimator(self, C: float) -> Any:
        from sklearn.svm import SVC, SVR

        if self.regression:
            return SVR(kernel="precomputed", C=C, epsilon=float(self.params["epsilon"]), cache_size=500)
        return SVC(kernel="precomputed", C=C, class_weight=self.params["class_weight"], decision_function_shape="ovr",
                   random_state=int(self.params["seed"]), cache_size=500)

    def _decision(self, svc: Any, K: np.ndarray) -> np.ndarray:
        d = svc.decision_function(K)
        if d.ndim == 1:  # two classes seen: one column, positive = classes_[1]
            d = np.stack([-d, d], axis=1)
        return d

    def fit(self, X, y, X_val=None, y_val=None, *, groups=None, groups_val=None):
        from sklearn.metrics.pairwise import rbf_kernel

        p = self.params
        with self._threads():
            Z, y, Zv, yv = self._prepare(X, y, X_val, y_val)
            var = float(Z.var())
            self.gamma_ = (1.0 / (Z.shape[1] * var) if var > 0 else 1.0) if p["gamma"] == "scale" else float(p["gamma"])
            K = rbf_kernel(Z, Z, gamma=self.gamma_).astype(np.float64)
            Kv = None if Zv is None else rbf_kernel(Zv, Z, gamma=self.gamma_).astype(np.float64)
            est = self._search_C(lambda C, _: self._estimator(C).fit(K, y), Kv, yv)
            self.calibrator_ = None if self.regression else self._calibrate(est, K, y)
            self.support_ = est.support_.copy()
            self.X_sv_ = Z[est.support_].copy()
            self.n_fit_ = len(y)
            self.svc_ = est
        self.fitted_ = True
        return self

    def _calibrate(self, svc: Any, K: np.ndarray, y: np.ndarray) -> Any:
        """The logistic regression from decision values to probabilities, fitted out of fold on the training data."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        counts = np.bincount(y)
        folds = int(min(self.params["calibration_folds"], counts[counts > 0].min()))
        if folds >= 2:
            oof = np.zeros((len(y), len(svc.classes_)))
            skf = StratifiedKFold(folds, shuffle=True, random_state=int(self.params["seed"]))
            for tr, te in skf.split(K, y):
                s = self._estimator(self.C_).fit(K[np.ix_(tr, tr)], y[tr])
                # every class has >= folds rows, so each training fold sees every class
                oof[te] = self._decision(s, K[np.ix_(te, tr)])
            cal_X = oof
        else:  # too few samples per class for folds: calibrate in-sample
            cal_X = self._decision(svc, K)
        return LogisticRegression(C=1.0, max_iter=1000, class_weight=self.params["class_weight"]).fit(cal_X, y)

    def _kernel(self, Z: np.ndarray) -> np.ndarray:
        from sklearn.metrics.pairwise import rbf_kernel

        K = np.zeros((Z.shape[0], self.n_fit_))
        K[:, self.support_] = rbf_kernel(Z, self.X_sv_, gamma=self.gamma_)
        return K

    def predict(self, X, *, groups=None):
        if not self.regression:
            return super().predict(X)
        Z = self._transform(X)
        with self._threads():
            return np.asarray(self.svc_.predict(self._kernel(Z)), dtype=np.float64)

    def predict_proba(self, X, *, groups=None):
        self._check_classification()
        Z = self._transform(X)
        with self._threads():
            d = self._decision(self.svc_, self._kernel(Z))
            return self._full_proba(self.calibrator_.predict_proba(d), self.calibrator_.classes_).astype(np.float64)

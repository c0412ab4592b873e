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

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import SVC, SVR

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.sklearn_base import SklearnHead, candidate_values, middle


@register("svm")
class SVM(SklearnHead):
    """Parameters: ``C`` (number or list, see SklearnHead; default (0.3, 1, 3)), ``gamma`` ("scale" or a
    number), ``calibration_folds``, ``epsilon`` (SVR's insensitive tube; regression only)."""

    sk_defaults = {"C": [0.3, 1.0, 3.0], "gamma": "scale", "calibration_folds": 3, "epsilon": 0.1}

    def _svc(self, C: float) -> SVC:
        p = self.params
        return SVC(kernel="precomputed", C=C, class_weight=p["class_weight"], decision_function_shape="ovr",
                   random_state=int(p["seed"]), cache_size=500)

    def _svr(self, C: float) -> SVR:
        return SVR(kernel="precomputed", C=C, epsilon=float(self.params["epsilon"]), cache_size=500)

    def _decision(self, svc: SVC, K: np.ndarray) -> np.ndarray:
        d = svc.decision_function(K)
        if d.ndim == 1:  # two classes seen: one column, positive = classes_[1]
            d = np.stack([-d, d], axis=1)
        return d

    def fit(self, X, y, X_val=None, y_val=None):
        p = self.params
        with self._threads():
            Z, y, Zv, yv = self._prepare(X, y, X_val, y_val)
            var = float(Z.var())
            self.gamma_ = (1.0 / (Z.shape[1] * var) if var > 0 else 1.0) if p["gamma"] == "scale" else float(p["gamma"])
            K = rbf_kernel(Z, Z, gamma=self.gamma_).astype(np.float64)
            cands = candidate_values(p["C"])
            if self.regression_:
                return self._fit_svr(Z, K, y, Zv, yv, cands)
            if len(cands) == 1 or Zv is None:
                self.C_ = cands[0] if len(cands) == 1 else middle(cands)
                svc = self._svc(self.C_).fit(K, y)
            else:
                Kv = rbf_kernel(Zv, Z, gamma=self.gamma_).astype(np.float64)
                best = None
                for C in sorted(cands):
                    s = self._svc(C).fit(K, y)
                    f1 = self._val_score(yv, s.predict(Kv))
                    if self._better(f1, best):
                        best = (f1, C, s)
                _, self.C_, svc = best
            # calibration on out-of-fold decision values of the training data
            counts = np.bincount(y)
            folds = int(min(p["calibration_folds"], counts[counts > 0].min()))
            if folds >= 2:
                oof = np.zeros((len(y), len(svc.classes_)))
                skf = StratifiedKFold(folds, shuffle=True, random_state=int(p["seed"]))
                for tr, te in skf.split(K, y):
                    s = self._svc(self.C_).fit(K[np.ix_(tr, tr)], y[tr])
                    # every class has >= folds rows, so each training fold sees every class
                    oof[te] = self._decision(s, K[np.ix_(te, tr)])
                cal_X, cal_y = oof, y
            else:  # too few samples per class for folds: calibrate in-sample
                cal_X, cal_y = self._decision(svc, K), y
            self.calibrator_ = LogisticRegression(C=1.0, max_iter=1000).fit(cal_X, cal_y)
            self.support_ = svc.support_.copy()
            self.X_sv_ = Z[svc.support_].copy()
            self.n_fit_ = len(y)
            self.svc_ = svc
        self.fitted_ = True
        return self

    def _fit_svr(self, Z, K, y, Zv, yv, cands):
        if len(cands) == 1 or Zv is None:
            self.C_ = cands[0] if len(cands) == 1 else middle(cands)
            svr = self._svr(self.C_).fit(K, y)
        else:
            Kv = rbf_kernel(Zv, Z, gamma=self.gamma_).astype(np.float64)
            best = None
            for C in sorted(cands):
                s = self._svr(C).fit(K, y)
                score = self._val_score(yv, s.predict(Kv))
                if self._better(score, best):
                    best = (score, C, s)
            _, self.C_, svr = best
        self.calibrator_ = None
        self.support_ = svr.support_.copy()
        self.X_sv_ = Z[svr.support_].copy()
        self.n_fit_ = len(y)
        self.svc_ = svr
        self.fitted_ = True
        return self

    def predict(self, X):
        if not self.regression_:
            return super().predict(X)
        Z = self._transform(X)
        with self._threads():
            return np.asarray(self.svc_.predict(self._kernel(Z)), dtype=np.float64)

    def _kernel(self, Z: np.ndarray) -> np.ndarray:
        K = np.zeros((Z.shape[0], self.n_fit_))
        K[:, self.support_] = rbf_kernel(Z, self.X_sv_, gamma=self.gamma_)
        return K

    def predict_proba(self, X):
        self._check_classification()
        Z = self._transform(X)
        with self._threads():
            d = self._decision(self.svc_, self._kernel(Z))
            return self._full_proba(self.calibrator_.predict_proba(d), self.calibrator_.classes_).astype(np.float64)

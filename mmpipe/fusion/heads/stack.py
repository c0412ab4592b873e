"""Stacking: member heads on modality subsets, a logistic-regression meta learner on their out-of-fold outputs.

Honest by construction: the meta learner is fitted on OUT-OF-FOLD member outputs only. ``fit`` splits the
training rows with a ``StratifiedKFold(inner_folds, shuffle=True, random_state=seed)`` (regression: ``KFold``);
for each inner fold every member is fitted on the inner-train rows and predicts the inner held-out rows, so each
training row gets member outputs from members that never saw it. The caller's ``X_val``/``y_val`` (its inner
early-stopping split, never its held-out data) is passed, restricted to each member's modalities, to every
member fit so neural members early-stop and the baselines choose ``C`` on it. After the meta learner is fitted,
every member is refitted on ALL training rows (same ``X_val``/``y_val``) for prediction time.

Meta features: classification, each member's class probabilities as LOG-probabilities clipped at 1e-6
(``log(clip(p, 1e-6, 1))``; one column per member and class, member order), not standardised, so the meta
coefficients of all members are in the same units; the meta learner is scikit-learn's LogisticRegression (lbfgs,
multinomial for 3+ classes, ``C = meta_C``, the stack's ``class_weight``). Regression: each member's predicted
score (one column per member) and ridge regression (``alpha = 1 / meta_C``).

``meta_C`` may be a number or a list. Each candidate is scored by cross-validating the meta learner on the
out-of-fold matrix (a second ``StratifiedKFold(inner_folds, shuffle=True, random_state=seed + 1)``; no member
refits), the best inner-CV macro-F1 (regression: lowest MAE; ties: the smaller C) is kept. ``history_`` holds one
record per candidate, ``{"C", "val_macro_f1" | "val_mae", "chosen"}``, in the shape of the baselines' C search so
``mmpipe.reporting.plots`` draws it; the scores are inner-CV scores on the TRAINING rows, not validation scores.
(Per-member records would have neither ``epoch`` nor ``C``, which ``curve_png`` cannot draw, so the per-member
summary lives in ``members_report_`` only.)

What each member adds, after ``fit``:

* ``members_report_``: one dict per member, ``name``, ``head``, ``modalities``, ``oof_accuracy``,
  ``oof_macro_f1`` (the member's own inner-OOF scores), ``meta_coef_abs_mean`` (mean absolute coefficient of the
  final meta learner over the member's columns) and ``stack_without_macro_f1`` (inner-CV macro-F1 of the meta
  learner refitted, with the chosen C, on the OTHER members' OOF columns; None with one member). Regression:
  ``oof_mae``, ``oof_corr``, ``meta_coef_abs_mean`` and ``stack_without_mae`` instead.
* ``stack_report_``: the stack's own inner-CV scores on the OOF matrix (``oof_accuracy``, ``oof_macro_f1``;
  regression ``oof_mae``, ``oof_corr``), ``meta_C`` and ``inner_folds``.

Parameters (besides the common ones): ``members`` (a list of ``{"name", "head", "modalities", "params"}``;
``modalities`` null or left out means every modality of X, ``params`` may be left out; null, the default, means
one ``logreg`` per modality of X, named after it), ``inner_folds`` (>= 2), ``meta`` (``logreg``; with
``task: regression`` this means ridge regression, as for the ``logreg`` head) and ``meta_C``. Members inherit the
stack's ``seed``, ``threads``, ``n_classes``, ``task``, ``class_weight`` and ``smote`` unless their ``params`` set
them (a member's ``task`` must be the stack's). Sequence heads (``uses_groups``) cannot be members.

``refit_params()`` returns the chosen ``meta_C`` and, when any member reports refit parameters (epochs, C, fusion
weights), ``members`` with each member's ``params`` updated by them, so a refit without validation data repeats
their choices. The stack itself has no epochs (``best_epoch_`` stays None). scikit-learn and joblib are
imported when the head fits, predicts or saves.
"""

from __future__ import annotations

import copy
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mmpipe.core.atomic import atomic_path
from mmpipe.core.errors import ConfigError
from mmpipe.fusion.heads.base import HEADS, Features, Head, register
from mmpipe.fusion.heads.common import check_features, fast_scores, infer_n_classes, regression_scores
from mmpipe.fusion.heads.sklearn_base import SklearnHead, candidate_values, estimator_size, is_positive

INHERITED = ("seed", "threads", "n_classes", "task", "class_weight", "smote")
MEMBER_KEYS = {"name", "head", "modalities", "params"}
METAS = ("logreg",)
LOG_CLIP = 1e-6


def _member_label(i: int, spec: Any) -> str:
    name = spec.get("name") if isinstance(spec, dict) else None
    return f"members[{i}]" + (f" ({name!r})" if isinstance(name, str) else "")


@register("stack")
class Stack(SklearnHead):
    """Stacking of member heads; see the module docstring. A scikit-learn-style meta-estimator: no epochs."""

    defaults = {**Head.defaults, "members": None, "inner_folds": 3, "meta": "logreg", "meta_C": 1.0}

    # ---- parameters -----------------------------------------------------------------------------
    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = super(SklearnHead, cls).check_params(params)  # the common checks; the stack takes no ``C``
        k = p["inner_folds"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            raise cls.config_error(f"inner_folds must be an integer >= 2, got {k!r}")
        if p["meta"] not in METAS:
            raise cls.config_error(f"meta must be one of {', '.join(METAS)}, got {p['meta']!r}")
        C = p["meta_C"]
        if not (is_positive(C) or isinstance(C, (list, tuple)) and C and all(map(is_positive, C))):
            raise cls.config_error(f"meta_C must be a positive number or a non-empty list of them, got {C!r}")
        if p["members"] is not None:
            cls._check_members(p)
        return p

    @classmethod
    def _check_members(cls, p: dict[str, Any]) -> None:
        members = p["members"]
        if not isinstance(members, (list, tuple)) or not members:
            raise cls.config_error(f"members must be a non-empty list of {{name, head, modalities, params}} "
                                   f"(or null: one logreg per modality), got {members!r}")
        names = set()
        for i, spec in enumerate(members):
            where = _member_label(i, spec)
            if not isinstance(spec, dict):
                raise cls.config_error(f"{where} must be a mapping {{name, head, modalities, params}}, got {spec!r}")
            unknown = sorted(set(spec) - MEMBER_KEYS)
            if unknown:
                raise cls.config_error(f"{where}: unknown key(s) {', '.join(unknown)}; "
                                       f"known: {', '.join(sorted(MEMBER_KEYS))}")
            name = spec.get("name")
            if not isinstance(name, str) or not name:
                raise cls.config_error(f"{where}: name must be a non-empty string, got {name!r}")
            if name in names:
                raise cls.config_error(f"{where}: the member name {name!r} is used twice")
            names.add(name)
            head = spec.get("head")
            if not isinstance(head, str) or not head:
                raise cls.config_error(f"{where}: head must be a head name, got {head!r}")
            try:
                klass = HEADS.get(head)
            except ConfigError as exc:
                raise cls.config_error(f"{where}: {exc}") from None
            if klass.uses_groups:
                raise cls.config_error(f"{where}: sequence head {head!r} cannot be a stack member "
                                       "(the stack passes no groups)")
            mods = spec.get("modalities")
            if mods is not None and (not isinstance(mods, (list, tuple)) or not mods or
                                     not all(isinstance(m, str) and m for m in mods) or len(set(mods)) != len(mods)):
                raise cls.config_error(f"{where}: modalities must be null or a non-empty list of distinct "
                                       f"modality names, got {mods!r}")
            own = spec.get("params")
            if own is None:
                own = {}
            if not isinstance(own, dict):
                raise cls.config_error(f"{where}: params must be a mapping, got {own!r}")
            if own.get("task", p["task"]) != p["task"]:
                raise cls.config_error(f"{where}: a member's task must be the stack's ({p['task']!r}), "
                                       f"got {own['task']!r}")
            try:
                klass.check_params(cls._member_params(p, klass, own))
            except ConfigError as exc:
                raise cls.config_error(f"{where}: {exc}") from None

    @staticmethod
    def _member_params(p: dict[str, Any], klass: type[Head], own: dict[str, Any],
                       n_classes: int | None = None) -> dict[str, Any]:
        """A member's parameters: the stack's inherited ones (those the member takes), then its own."""
        inherited = {k: p[k] for k in INHERITED if k in klass.defaults}
        if n_classes is not None and "n_classes" in inherited and p["task"] != "regression":
            inherited["n_classes"] = int(n_classes)
        return {**inherited, **(own or {})}

    def _member_specs(self, modalities: list[str]) -> list[dict[str, Any]]:
        """The member specs with ``modalities`` and ``params`` filled in (null ``members``: one logreg each)."""
        members = self.params["members"]
        if members is None:
            return [{"name": m, "head": "logreg", "modalities": [m], "params": {}} for m in modalities]
        return [{"name": s["name"], "head": s["head"],
                 "modalities": list(s["modalities"]) if s.get("modalities") is not None else list(modalities),
                 "params": copy.deepcopy(s.get("params") or {})} for s in members]

    # ---- helpers --------------------------------------------------------------------------------
    def _build_member(self, spec: dict[str, Any]) -> Head:
        klass = HEADS.get(spec["head"])
        return klass(**self._member_params(self.params, klass, spec["params"], self.n_classes_))

    @staticmethod
    def _subset(X: Features | None, mods: list[str], rows: np.ndarray | None = None) -> Features | None:
        if X is None:
            return None
        return {m: (X[m] if rows is None else X[m][rows]) for m in mods}

    def _member_output(self, member: Head, X: Features) -> np.ndarray:
        """(n, K) clipped log-probabilities (classification) or (n, 1) scores (regression)."""
        if self.regression:
            return np.asarray(member.predict(X), dtype=np.float64).reshape(-1, 1)
        P = np.asarray(member.predict_proba(X), dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != self.n_classes_:
            raise ValueError(f"stack member {member.name!r} gave probabilities of shape {P.shape}, "
                             f"expected (n, {self.n_classes_}); do not set n_classes on a member")
        return np.log(np.clip(P, LOG_CLIP, 1.0))

    def n_parameters(self) -> int | None:
        if not self.fitted_:
            return None
        members = [h.n_parameters() for h in self.member_heads_]
        return None if None in members else sum(members) + estimator_size(self.meta_)

    def _meta(self, C: float) -> Any:
        if self.regression:
            from sklearn.linear_model import Ridge

            return Ridge(alpha=1.0 / C)
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=1000, class_weight=self.params["class_weight"],
                                  random_state=int(self.params["seed"]))

    def _meta_outputs(self, meta: Any, F: np.ndarray) -> np.ndarray:
        """Class ids (classification) or scores (regression) of a fitted meta learner."""
        if self.regression:
            return np.asarray(meta.predict(F), dtype=np.float64)
        return np.asarray(meta.predict(F), dtype=np.int64)

    def _folds(self, y: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import KFold, StratifiedKFold

        k = int(self.params["inner_folds"])
        if len(y) < k:
            raise ValueError(f"stack: {len(y)} training rows cannot be split into inner_folds={k}")
        if self.regression:
            splitter = KFold(k, shuffle=True, random_state=seed)
            return list(splitter.split(np.zeros(len(y))))
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y)), y))

    def _cv_meta(self, F: np.ndarray, y: np.ndarray, C: float, folds) -> np.ndarray:
        """Cross-validated meta outputs on the OOF matrix ``F`` (no member refits)."""
        out = np.zeros(len(y), dtype=np.float64 if self.regression else np.int64)
        for tr, te in folds:
            if not self.regression and len(np.unique(y[tr])) < 2:  # a degenerate fold: predict its one class
                out[te] = y[tr][0]
                continue
            out[te] = self._meta_outputs(self._meta(C).fit(F[tr], y[tr]), F[te])
        return out

    def _scores(self, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
        if self.regression:
            s = regression_scores(y, pred)
            return {"oof_mae": s["mae"], "oof_corr": s["corr"]}
        a, f1 = fast_scores(y, pred, self.n_classes_)
        return {"oof_accuracy": a, "oof_macro_f1": f1}

    def _columns(self, j: int) -> slice:
        w = 1 if self.regression else self.n_classes_
        return slice(j * w, (j + 1) * w)

    # ---- fit / predict --------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None, *, groups=None, groups_val=None):
        mods, n = check_features(X)
        y = np.asarray(y, dtype=np.float64 if self.regression else np.int64)
        if len(y) != n:
            raise ValueError(f"y has {len(y)} labels for {n} feature rows")
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither")
        if X_val is not None:
            check_features(X_val, mods, "X_val")
        self.n_classes_ = 1 if self.regression else infer_n_classes(
            y, None if y_val is None else np.asarray(y_val, dtype=np.int64), self.params["n_classes"])
        self.modalities_ = mods
        specs = self._member_specs(mods)
        for spec in specs:
            missing = [m for m in spec["modalities"] if m not in X]
            if missing:
                raise ValueError(f"stack member {spec['name']!r}: modalities {missing} not in X (have {sorted(X)})")
        seed = int(self.params["seed"])
        folds = self._folds(y, seed)
        width = 1 if self.regression else self.n_classes_
        F = np.full((n, len(specs) * width), np.nan)
        for tr, te in folds:
            for j, spec in enumerate(specs):
                member = self._build_member(spec)
                member.fit(self._subset(X, spec["modalities"], tr), y[tr],
                           self._subset(X_val, spec["modalities"]), y_val)
                F[te, self._columns(j)] = self._member_output(member, self._subset(X, spec["modalities"], te))
        assert np.isfinite(F).all(), "every training row gets out-of-fold member outputs"
        self.oof_ = F

        meta_folds = self._folds(y, seed + 1)
        key = "val_mae" if self.regression else "val_macro_f1"
        main = "oof_mae" if self.regression else "oof_macro_f1"
        self.history_, best = [], None
        with self._threads():
            for C in sorted(candidate_values(self.params["meta_C"])):
                pred = self._cv_meta(F, y, C, meta_folds)
                scores = self._scores(y, pred)
                self.history_.append({"C": C, key: scores[main]})
                if best is None or (scores[main] < best[0] if self.regression else scores[main] > best[0]):
                    best = (scores[main], C, scores)
            _, self.C_, stack_scores = best
            for rec in self.history_:
                rec["chosen"] = rec["C"] == self.C_
            self.meta_ = self._meta(self.C_).fit(F, y)
            coef = np.abs(np.atleast_2d(np.asarray(self.meta_.coef_, dtype=np.float64)))
            report = []
            for j, spec in enumerate(specs):
                cols = self._columns(j)
                own = F[:, cols][:, 0] if self.regression else F[:, cols].argmax(1)
                entry = {"name": spec["name"], "head": spec["head"], "modalities": list(spec["modalities"]),
                         **self._scores(y, own), "meta_coef_abs_mean": float(coef[:, cols].mean())}
                without = None
                if len(specs) > 1:
                    keep = np.setdiff1d(np.arange(F.shape[1]), np.arange(F.shape[1])[cols])
                    without = self._scores(y, self._cv_meta(F[:, keep], y, self.C_, meta_folds))[main]
                entry["stack_without_mae" if self.regression else "stack_without_macro_f1"] = without
                report.append(entry)
        self.members_report_ = report
        self.stack_report_ = {**stack_scores, "meta_C": float(self.C_), "inner_folds": int(self.params["inner_folds"])}

        self.members_, self.member_heads_ = specs, []
        for spec in specs:  # prediction time: every member on ALL training rows
            member = self._build_member(spec)
            member.fit(self._subset(X, spec["modalities"]), y, self._subset(X_val, spec["modalities"]), y_val)
            self.member_heads_.append(member)
        self.best_epoch_ = None
        self.fitted_ = True
        return self

    def _features(self, X: Features) -> np.ndarray:
        if not self.fitted_:
            raise RuntimeError("fit or load the head first")
        check_features(X, sorted({m for s in self.members_ for m in s["modalities"]}))
        return np.concatenate([self._member_output(h, self._subset(X, s["modalities"]))
                               for s, h in zip(self.members_, self.member_heads_)], axis=1)

    def predict_proba(self, X, *, groups=None):
        self._check_classification()
        F = self._features(X)
        with self._threads():
            return self._full_proba(self.meta_.predict_proba(F), self.meta_.classes_).astype(np.float64)

    def predict(self, X, *, groups=None):
        if not self.regression:
            return super().predict(X)
        F = self._features(X)
        with self._threads():
            return np.asarray(self.meta_.predict(F), dtype=np.float64)

    def refit_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"meta_C": float(self.C_)}
        chosen = [h.refit_params() for h in self.member_heads_]
        if any(chosen):
            out["members"] = [{**copy.deepcopy(s), "params": {**s["params"], **c}}
                              for s, c in zip(self.members_, chosen)]
        return out

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        import joblib

        if not self.fitted_:
            raise RuntimeError("nothing to save: fit the head first")
        files = []
        with tempfile.TemporaryDirectory(prefix="mmpipe-stack-") as tmp:
            for j, head in enumerate(self.member_heads_):
                f = Path(tmp) / f"member{j}.pt"
                head.save(f)
                files.append(f.read_bytes())
        blob = {"kind": "stack", "head": self.name, "params": copy.deepcopy(self.params),
                "members": copy.deepcopy(self.members_), "member_names": [s["name"] for s in self.members_],
                "member_files": files, "meta": self.meta_, "C": float(self.C_), "n_classes": int(self.n_classes_),
                "modalities": list(self.modalities_), "members_report": copy.deepcopy(self.members_report_),
                "stack_report": dict(self.stack_report_), "history": copy.deepcopy(self.history_)}
        buf = io.BytesIO()
        joblib.dump(blob, buf)
        with atomic_path(path) as tmp_path:
            tmp_path.write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "Stack":
        import joblib

        blob = joblib.load(Path(path))
        if not isinstance(blob, dict) or blob.get("kind") != "stack":
            raise TypeError(f"{path}: not a stack head file")
        head = cls(**blob["params"])
        head.members_, head.member_heads_ = list(blob["members"]), []
        with tempfile.TemporaryDirectory(prefix="mmpipe-stack-") as tmp:
            for j, (spec, data) in enumerate(zip(head.members_, blob["member_files"])):
                f = Path(tmp) / f"member{j}.pt"
                f.write_bytes(data)
                head.member_heads_.append(HEADS.get(spec["head"]).load(f))
        head.meta_, head.C_, head.n_classes_ = blob["meta"], blob["C"], blob["n_classes"]
        head.modalities_ = list(blob["modalities"])
        head.members_report_, head.stack_report_ = blob["members_report"], blob["stack_report"]
        head.history_, head.best_epoch_, head.fitted_ = list(blob["history"]), None, True
        return head

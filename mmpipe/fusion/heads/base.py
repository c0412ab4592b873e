"""The head interface: fit on cached features, predict class probabilities (or scores), save and load.

Heads are found by discovery (``mmpipe.core.registry``): every module of this package, the ``mmpipe.heads``
entry points and the ``plugins:`` files register theirs with ``@register("name")``, so a new head is one file
plus its config entry. This module imports neither torch nor scikit-learn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mmpipe.core.errors import ConfigError
from mmpipe.core.registry import Registry
from mmpipe.fusion.dataset import Features

__all__ = ["HEADS", "Features", "Head", "build_head", "load_head", "register"]

HEADS: Registry[type["Head"]] = Registry("head", "mmpipe.fusion.heads", "mmpipe.heads")
register = HEADS.register

TASKS = ("classification", "regression")


class Head(ABC):
    """A fusion head in the scikit-learn spirit: hyperparameters in ``__init__``, then fit/predict.

    ``defaults`` lists every parameter a head takes, with its default; a subclass extends its parent's
    (``defaults = {**Parent.defaults, ...}``). Every head takes the common ones below: ``task``
    (``classification``: ``y`` holds integer class ids; ``regression``: float scores, ``predict`` returns
    scores and ``predict_proba`` is a ``TypeError``), ``seed``, ``n_classes`` (default: the largest label
    seen + 1), ``class_weight`` (``balanced`` or null), ``smote`` and ``threads``.

    Learned state: ``history_`` (one record per training step, e.g. per epoch or per candidate value, with
    the validation scores), ``best_epoch_`` (the epoch whose weights were kept; None for heads without
    epochs), and whatever ``refit_params()`` reports.
    """

    name: ClassVar[str] = ""
    # Sequence heads set this: ``fit`` needs ``groups=`` (and ``groups_val=`` with validation data) and
    # ``predict`` / ``predict_proba`` need ``groups=``, each an ``(n, 2)`` int array [group code, position in
    # group] (``mmpipe.fusion.context.sequence_index``). Other heads ignore them.
    uses_groups: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {
        "task": "classification",
        "seed": 0,
        "n_classes": None,
        "class_weight": None,
        "smote": False,
        "threads": None,
    }
    # What `tune` searches by default (Optuna): parameter -> {low, high, log} (int when both bounds are
    # integers) or {choices: [...]}; the config's ``tuning.space.<head>`` replaces it.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, **params: Any):
        self.params = self.check_params(params)
        self.history_: list[dict[str, Any]] = []
        self.best_epoch_: int | None = None

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` merged over ``defaults``. Unknown names and bad values are a one-line ``ConfigError``;
        nothing is built, so the workflow checks a config with it before any job runs."""
        unknown = sorted(set(params) - set(cls.defaults))
        if unknown:
            raise cls.config_error(f"unknown parameter(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(sorted(cls.defaults))}")
        p = {**cls.defaults, **params}
        if p["task"] not in TASKS:
            raise cls.config_error(f"task must be one of {', '.join(TASKS)}, got {p['task']!r}")
        if p["class_weight"] not in (None, "balanced"):
            raise cls.config_error(f"class_weight must be 'balanced' or null, got {p['class_weight']!r}")
        if p["task"] == "regression" and p["smote"]:
            raise cls.config_error("smote oversamples classes; it does not apply to task: regression")
        return p

    @classmethod
    def config_error(cls, problem: str) -> ConfigError:
        """A ``ConfigError`` that names this head."""
        return ConfigError(f"head {cls.name or cls.__name__!r}: {problem}")

    @property
    def task(self) -> str:
        return self.params["task"]

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def get_params(self) -> dict[str, Any]:
        """The full parameters (defaults filled in): ``build_head(name, get_params())`` is an unfitted copy."""
        return dict(self.params)

    def refit_params(self) -> dict[str, Any]:
        """Parameters that repeat this fit's choices on validation (epochs, C, ...) in a refit without it."""
        return {}

    def n_parameters(self) -> int | None:
        """How many numbers the fitted model keeps to predict (weights, support vectors, ...); None: not counted."""
        return None

    @abstractmethod
    def fit(self, X: Features, y: np.ndarray, X_val: Features | None = None, y_val: np.ndarray | None = None, *,
            groups: np.ndarray | None = None, groups_val: np.ndarray | None = None) -> "Head":
        """Train on ``X``/``y``; ``X_val``/``y_val`` drive early stopping and the head's other choices."""

    @abstractmethod
    def predict_proba(self, X: Features, *, groups: np.ndarray | None = None) -> np.ndarray:
        """``(n, n_classes)`` probabilities (classification only)."""

    def predict(self, X: Features, *, groups: np.ndarray | None = None) -> np.ndarray:
        """``(n,)`` predictions: class ids, or scores for a head fitted with ``task: regression``."""
        return np.asarray(self.predict_proba(X, groups=groups)).argmax(axis=1)

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write everything needed to predict to ``path`` (atomically)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> "Head":
        """Read a head written by ``save``."""


def build_head(name: str, params: dict[str, Any]) -> Head:
    """An unfitted head ``name`` (unknown names and parameters are a ``ConfigError``)."""
    return HEADS.get(name)(**params)


def load_head(name: str, path: str | Path) -> Head:
    """Read a head saved by ``build_head(name, ...).save(path)``."""
    return HEADS.get(name).load(path)

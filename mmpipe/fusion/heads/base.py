"""The head interface: fit on cached features, predict class probabilities (or scores), save and load."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np

# A feature batch: modality name -> (n, d_m) float32 matrix, all with the same n, same row order.
Features = dict[str, np.ndarray]

REGISTRY: dict[str, type["Head"]] = {}


def register(name: str) -> Callable[[type["Head"]], type["Head"]]:
    """Class decorator: make a head available as ``head: <name>`` in the config."""

    def deco(cls: type[Head]) -> type[Head]:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


class Head(ABC):
    """A fusion head in the scikit-learn spirit: hyperparameters in ``__init__``, then fit/predict."""

    name: str = ""
    # Sequence heads set this: their fit takes ``groups=`` / ``groups_val=`` and predict / predict_proba take
    # ``groups=``, each an ``(n, 2)`` int array [group code, position in group] (``mmpipe.fusion.context.sequence_index``).
    uses_groups: bool = False

    @abstractmethod
    def fit(self, X: Features, y: np.ndarray, X_val: Features | None = None,
            y_val: np.ndarray | None = None) -> "Head":
        """Train on ``X``/``y`` (integer class ids; float scores with ``task: regression``);
        ``X_val``/``y_val`` drive early stopping."""

    @abstractmethod
    def predict_proba(self, X: Features) -> np.ndarray:
        """``(n, n_classes)`` probabilities (classification only)."""

    def predict(self, X: Features) -> np.ndarray:
        """``(n,)`` predictions: class ids, or scores for a head fitted with ``task: regression``."""
        return np.asarray(self.predict_proba(X)).argmax(axis=1)

    @property
    def task(self) -> str:
        return str(getattr(self, "params", {}).get("task") or "classification")

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write everything needed to predict to ``path`` (atomically)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> "Head":
        """Read a head written by ``save``."""


def build_head(name: str, params: dict[str, Any]) -> Head:
    from mmpipe.fusion import heads  # noqa: F401  (registers the built-in heads)

    if name not in REGISTRY:
        raise KeyError(f"unknown head {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name](**params)

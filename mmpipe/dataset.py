"""Stage 2 input: cached feature shards joined with the manifest's labels and splits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmpipe.heads.base import Features


@dataclass
class SplitData:
    """Features per split, row-aligned with the guids; labels are integer ids into ``classes``.

    ``y_test`` is None when the test split has no labels (e.g. ``test_without_label.txt``);
    ``guids_test`` keeps the order of the test list so predictions can be written in it.
    """

    classes: list[str]
    X_train: Features
    y_train: np.ndarray
    X_val: Features
    y_val: np.ndarray
    X_test: Features
    y_test: np.ndarray | None
    guids_train: list[str] = field(default_factory=list)
    guids_val: list[str] = field(default_factory=list)
    guids_test: list[str] = field(default_factory=list)

    def select(self, modalities: list[str]) -> "SplitData":
        """The same data restricted to a subset of modalities."""
        pick = lambda X: {m: X[m] for m in modalities}  # noqa: E731
        return SplitData(self.classes, pick(self.X_train), self.y_train, pick(self.X_val), self.y_val,
                         pick(self.X_test), self.y_test, self.guids_train, self.guids_val, self.guids_test)

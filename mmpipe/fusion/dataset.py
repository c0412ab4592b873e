"""Stage 2 input: cached feature shards joined with the manifest's labels and splits."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

# A feature batch: modality name -> (n, d_m) float32 matrix, all with the same n, same row order.
Features = dict[str, np.ndarray]


@dataclass
class SplitData:
    """Features per split, row-aligned with the guids; labels are integer ids into ``classes``.

    ``y_test`` is None when the test split has no labels (e.g. ``test_without_label.txt``);
    ``guids_test`` keeps the order of the test list so predictions can be written in it.
    ``s_train``/``s_val``/``s_test``: float scores (``labels.scheme: regression``), None when a split has
    none; ``g_train``/``g_val``/``g_test``: group ids (e.g. the video or dialogue of an utterance) as
    object arrays, None when the manifest has no groups.
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
    s_train: np.ndarray | None = None
    s_val: np.ndarray | None = None
    s_test: np.ndarray | None = None
    g_train: np.ndarray | None = None
    g_val: np.ndarray | None = None
    g_test: np.ndarray | None = None

    def select(self, modalities: list[str]) -> "SplitData":
        """The same data restricted to a subset of modalities."""
        pick = lambda X: {m: X[m] for m in modalities}  # noqa: E731
        return dataclasses.replace(self, X_train=pick(self.X_train), X_val=pick(self.X_val),
                                   X_test=pick(self.X_test))

    def with_features(self, X_train: Features, X_val: Features, X_test: Features) -> "SplitData":
        """The same samples with other feature dicts (e.g. with context features added)."""
        return dataclasses.replace(self, X_train=X_train, X_val=X_val, X_test=X_test)


def by_modality(paths: Sequence[str | Path], modalities: Sequence[str]) -> dict[str, list[str | Path]]:
    """A rule's flat feature-shard list (``expand`` over modalities, then shards) split per modality."""
    n = len(paths) // len(modalities)
    return {m: list(paths[i * n:(i + 1) * n]) for i, m in enumerate(modalities)}


def load_split_data(manifest_path: str | Path, features: dict[str, Sequence[str | Path]],
                    classes: Sequence[str] | None = None) -> SplitData:
    """Join the manifest with each modality's feature shards.

    Samples that lack a vector for any of the given modalities are left out (with a log line).
    ``classes`` fixes the label order; by default the sorted training labels.
    """
    import polars as pl

    from mmpipe.core.shards import read_shards

    manifest = pl.read_parquet(manifest_path)
    extra = [c for c in ("score", "group") if c in manifest.columns]
    manifest = manifest.select("guid", "split", "label", *extra)
    order = {g: i for i, g in enumerate(manifest["guid"])}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    keep = set(order)
    for name, paths in features.items():
        guids, X, _ = read_shards(paths)
        vectors[name] = dict(zip(guids, X))
        keep &= set(guids)
    dropped = len(order) - len(keep)
    if dropped:
        log.warning("%d samples have no vector for one of %s; left out", dropped, sorted(features))
    labels = manifest.filter(pl.col("split") != "test")["label"].drop_nulls().unique().to_list()
    classes = list(classes) if classes else sorted(labels)
    index = {c: i for i, c in enumerate(classes)}

    def part(split: str):
        rows = [r for r in manifest.filter(pl.col("split") == split).iter_rows(named=True) if r["guid"] in keep]
        guids = [r["guid"] for r in rows]
        X = {m: (np.stack([vectors[m][g] for g in guids]) if guids else np.zeros((0, 0), np.float32))
             for m in features}
        y = None if any(r["label"] is None for r in rows) or not rows else np.array([index[r["label"]] for r in rows])
        scores = [r.get("score") for r in rows]
        s = None if not rows or any(v is None for v in scores) else np.asarray(scores, dtype=np.float64)
        groups = [r.get("group") for r in rows]
        # no groups at all: None; a sample without a group is a group of its own
        g = None if all(v is None for v in groups) else \
            np.array([gr if gr is not None else f"\0{gu}" for gr, gu in zip(groups, guids)], dtype=object)
        return guids, X, y, s, g

    g_tr, X_tr, y_tr, s_tr, gr_tr = part("train")
    g_va, X_va, y_va, s_va, gr_va = part("val")
    g_te, X_te, y_te, s_te, gr_te = part("test")
    if y_tr is None or y_va is None:
        raise ValueError(f"{manifest_path}: every train and validation sample needs a label")
    return SplitData(classes, X_tr, y_tr, X_va, y_va, X_te, y_te, g_tr, g_va, g_te,
                     s_tr, s_va, s_te, gr_tr, gr_va, gr_te)

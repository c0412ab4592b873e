"""Context features: each utterance sees the other utterances of its group (video, dialogue).

``context: group_mean`` (a key of any head's entry, or of ``training:``) appends to every modality's vector
the mean of that modality's vectors over the OTHER samples of the same group in the same split, as the
contextual utterance models of Poria et al. (bc-LSTM, ACL 2017) do with a recurrent layer. Only features
are used, never labels, so it is also applied to the test split (transductively, within each test video).
A sample alone in its group gets a zero context vector. Groups come from the manifest's ``group`` column
(``SplitData.g_*``); context never crosses groups, nor splits.

It is applied to the data before a head sees it (``mmpipe.fusion.ablation``, ``mmpipe.fusion.predict``), so every head
supports it unchanged; a modality of width d becomes width 2d.

The sequence heads (``Head.uses_groups``, e.g. ``context_gru``) go further and model each group's ordered
sequence of samples; ``sequence_index`` gives them ``[group, position]`` per row.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from mmpipe.fusion.dataset import Features, SplitData

MODES = ("none", "group_mean")


def check_mode(mode: Any) -> str:
    mode = "none" if mode in (None, False) else str(mode)
    if mode not in MODES:
        raise ValueError(f"context must be one of {', '.join(MODES)} (or null), got {mode!r}")
    return mode


def group_mean_others(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Row i: mean of ``X[j]`` over the rows j != i with ``groups[j] == groups[i]`` (zeros if none)."""
    X = np.asarray(X, dtype=np.float64)
    groups = np.asarray(groups)
    if len(groups) != X.shape[0]:
        raise ValueError(f"{len(groups)} group ids for {X.shape[0]} rows")
    if X.shape[0] == 0:
        return X.astype(np.float32)
    _, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    sums = np.zeros((len(counts), X.shape[1]))
    np.add.at(sums, inv, X)
    others = counts[inv] - 1
    out = (sums[inv] - X) / np.maximum(others, 1)[:, None]
    out[others == 0] = 0.0
    return out.astype(np.float32)


def add_context(X: Features, groups: np.ndarray | None, mode: str) -> Features:
    """``X`` with each modality's context appended (``mode == 'none'``: ``X`` itself)."""
    mode = check_mode(mode)
    if mode == "none":
        return X
    if groups is None:
        raise ValueError(f"context: {mode} needs group ids (the manifest's `group` column), but the data has none")
    return {m: np.ascontiguousarray(np.concatenate([np.asarray(x, dtype=np.float32), group_mean_others(x, groups)],
                                                   axis=1)) for m, x in X.items()}


def with_context(data: SplitData, mode: Any) -> SplitData:
    """The data with context features added per split (each split's groups on their own)."""
    mode = check_mode(mode)
    if mode == "none":
        return data
    return data.with_features(add_context(data.X_train, data.g_train, mode),
                              add_context(data.X_val, data.g_val, mode),
                              add_context(data.X_test, data.g_test, mode))


def _natural_key(s: str) -> list:
    """``"vid_10"`` after ``"vid_9"``: digit runs compare as numbers (types align: str, int, str, ...)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def sequence_index(groups: np.ndarray | None, guids: list[str] | None = None) -> np.ndarray:
    """``(n, 2)`` int64 ``[group code, position in group]`` for the sequence heads (``Head.uses_groups``).

    The position orders a group's samples by the natural order of their guids (``video_2`` before
    ``video_10``), or by row order without guids. Group codes are only meaningful within one call.
    """
    if groups is None:
        raise ValueError("this head models each group's sequence of samples and needs group ids "
                         "(the manifest's `group` column, e.g. the video of an utterance), but the data has none")
    groups = np.asarray(groups)
    n = len(groups)
    _, code = np.unique(groups, return_inverse=True)
    code = code.reshape(-1).astype(np.int64)
    if guids is not None and len(guids) == n:
        keys = [_natural_key(g) for g in guids]
        order = sorted(range(n), key=lambda i: (code[i], keys[i], i))
    else:
        order = sorted(range(n), key=lambda i: (code[i], i))
    pos = np.zeros(n, dtype=np.int64)
    prev, k = None, 0
    for i in order:
        k = k + 1 if code[i] == prev else 0
        prev = code[i]
        pos[i] = k
    return np.stack([code, pos], axis=1)


def group_layout(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``seq`` (n, 2) [group code, position] -> (``index`` (G, L) row ids padded with -1, ``lengths`` (G,))."""
    seq = np.asarray(seq, dtype=np.int64)
    if seq.ndim != 2 or seq.shape[1] != 2:
        raise ValueError(f"groups must be an (n, 2) array [group code, position], got shape {seq.shape}")
    if not len(seq):
        return np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(len(seq)), seq[:, 1], seq[:, 0]))
    codes, starts, lengths = np.unique(seq[order, 0], return_index=True, return_counts=True)
    index = np.full((len(codes), int(lengths.max())), -1, dtype=np.int64)
    for g, (s, n) in enumerate(zip(starts, lengths)):
        index[g, :n] = order[s:s + n]
    return index, lengths.astype(np.int64)

"""Cross-validation folds shared by every head and every adapted encoder, and the inner early-stopping split.

``make_folds`` assigns each labelled non-test sample a fold in each repeat: stratified by label (regression:
by score quantile), grouped where the manifest has groups (a MOSI video, a MELD dialogue stays in one fold).
The assignment is written once per data set (``results/<ds>/folds.parquet``), so the heads' CV, the paired
comparison with the baseline and the cross-fitted encoders (``mmpipe.encoders.adapt``) see the same folds.

``inner_split`` carves the early-stopping part out of a fold's TRAINING rows: a fold's held-out rows are only
ever predicted.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any, Iterator

import numpy as np

METRICS = {"classification": ("accuracy", "macro_f1", "weighted_f1"), "regression": ("mae",)}
LOWER_IS_BETTER = frozenset({"mae", "log_loss"})


def strata(y: np.ndarray | None, scores: np.ndarray | None, n_bins: int = 5) -> np.ndarray:
    """What folds are stratified by: class ids, or (regression) the score's quantile bin."""
    if y is not None:
        return np.asarray(y)
    s = np.asarray(scores, dtype=np.float64)
    edges = np.unique(np.quantile(s, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.digitize(s, edges)


def _splitter(n_splits: int, seed: int, grouped: bool):
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if grouped:
        return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def make_folds(strat: np.ndarray, groups: np.ndarray | None, n_splits: int, n_repeats: int,
               seed: int) -> np.ndarray:
    """``(n_repeats, n)`` fold ids in ``[0, n_splits)``: repeat ``r`` is a stratified (grouped) k-fold with
    random state ``seed + r``. Classes with fewer members than folds are spread as far as they go (scikit-learn
    warns; the warning is silenced and the smallest class count is what the report's per-class table shows)."""
    strat = np.asarray(strat)
    n = len(strat)
    n_units = len(set(groups)) if groups is not None else n
    if n_units < n_splits:
        raise ValueError(f"{n_splits}-fold cross-validation needs at least {n_splits} "
                         f"{'groups' if groups is not None else 'labelled samples'}, got {n_units}")
    out = np.empty((n_repeats, n), dtype=np.int16)
    for r in range(n_repeats):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*least populated class.*")
            split = _splitter(n_splits, seed + r, groups is not None).split(np.zeros(n), strat, groups)
            for k, (_, test) in enumerate(split):
                out[r, test] = k
    return out


def fold_indices(folds: np.ndarray) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """``(repeat, fold, train rows, held-out rows)`` for every fold of every repeat."""
    for r, row in enumerate(np.atleast_2d(folds)):
        for k in np.unique(row):
            yield r, int(k), np.flatnonzero(row != k), np.flatnonzero(row == k)


def inner_split(strat: np.ndarray, groups: np.ndarray | None, fraction: float,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fit rows, early-stopping rows)`` of one fold's training part: a stratified (grouped) ``fraction``."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

    idx = np.zeros(len(strat))
    if groups is not None:
        fit, stop = next(GroupShuffleSplit(1, test_size=fraction, random_state=seed).split(idx, strat, groups))
    elif min(Counter(np.asarray(strat).tolist()).values()) >= 2:
        fit, stop = next(StratifiedShuffleSplit(1, test_size=fraction, random_state=seed).split(idx, strat))
    else:  # a class with one sample cannot be stratified
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(strat))
        cut = max(1, int(round(fraction * len(strat))))
        stop, fit = np.sort(perm[:cut]), np.sort(perm[cut:])
    return fit, stop


def combine_refit_params(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One set of refit parameters from the folds' choices: the median of integers (epochs) and numbers (C),
    the element-wise mean of number lists (late fusion's weights, renormalised), else the most common value."""
    out: dict[str, Any] = {}
    keys = {k for r in records for k in r}
    for k in sorted(keys):
        vals = [r[k] for r in records if k in r]
        if all(isinstance(v, bool) for v in vals):
            out[k] = Counter(vals).most_common(1)[0][0]
        elif all(isinstance(v, int) for v in vals):
            out[k] = int(round(float(np.median(vals))))
        elif all(isinstance(v, (int, float)) for v in vals):
            out[k] = float(np.median(vals))
        elif all(isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v) for v in vals) \
                and len({len(v) for v in vals}) == 1:
            w = np.mean(np.asarray(vals, dtype=np.float64), axis=0)
            out[k] = (w / w.sum()).tolist() if k.endswith("weights") and w.sum() > 0 else w.tolist()
        else:
            import json

            counts = Counter(json.dumps(v, sort_keys=True) for v in vals)
            out[k] = json.loads(counts.most_common(1)[0][0])
    return out


def paired_comparison(a: list[float], b: list[float], n_train: int, n_test: int,
                      lower_is_better: bool = False) -> dict[str, Any]:
    """``a`` vs ``b`` on the same folds: mean and std of the per-fold differences, folds won, and the
    Nadeau-Bengio corrected resampled t-test (the folds' training sets overlap, so the plain paired t-test is
    over-confident); ``p`` is two-sided."""
    from scipy import stats

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if lower_is_better:
        d = -d
    k = len(d)
    out: dict[str, Any] = {"n_folds": k, "delta_mean": float(d.mean()) * (-1 if lower_is_better else 1),
                           "delta_std": float(d.std(ddof=1)) if k > 1 else 0.0,
                           "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum())}
    var = d.var(ddof=1) if k > 1 else 0.0
    if var > 0 and n_train > 0:
        t = d.mean() / np.sqrt((1.0 / k + n_test / n_train) * var)
        out["t"] = float(t)
        out["p"] = float(2 * stats.t.sf(abs(t), df=k - 1))
    else:
        out["t"] = out["p"] = None
    return out


def pool_splits(selection: dict[str, Any]) -> tuple[str, ...]:
    """The manifest splits the folds cover: train and val for ``method: cv``, train alone for ``split``."""
    return ("train", "val") if selection.get("method", "cv") == "cv" else ("train",)


def write_folds(manifest_path: str, out_path: str, selection: dict[str, Any], seed: int,
                regression: bool = False) -> int:
    """``folds.parquet``: ``guid`` and one fold column per repeat (``r0``, ``r1``, ...) for every labelled sample
    of the pool (``pool_splits``), in manifest order. Returns the number of samples."""
    import polars as pl

    from mmpipe.core.atomic import atomic_path

    m = pl.read_parquet(manifest_path)
    m = m.filter(pl.col("split").is_in(list(pool_splits(selection))))
    target = "score" if regression else "label"
    if target not in m.columns or m[target].null_count():
        raise ValueError(f"{manifest_path}: every {'/'.join(pool_splits(selection))} sample needs a {target} "
                         "to be cross-validated")
    if regression:
        st = strata(None, m["score"].to_numpy())
    else:
        st = np.unique(m["label"].to_numpy().astype(str), return_inverse=True)[1]
    groups = None
    if "group" in m.columns and m["group"].null_count() < len(m):
        groups = np.array([g if g is not None else f"\0{u}" for g, u in zip(m["group"], m["guid"])], dtype=object)
    folds = make_folds(st, groups, int(selection.get("folds", 5)), int(selection.get("repeats", 2)), int(seed))
    df = pl.DataFrame({"guid": m["guid"], **{f"r{r}": folds[r] for r in range(folds.shape[0])}})
    with atomic_path(out_path) as tmp:
        df.write_parquet(tmp)
    return len(df)


def load_cv_data(manifest: str, features: list[str], modalities: list[str], classes: list[str] | None,
                 folds_path: str, selection: dict[str, Any]):
    """What a stage-2 job reads: the split data of ``modalities`` (``features``: a rule's flat shard list) and,
    for ``selection.method: cv``, the folds of its train+val rows (else None)."""
    from mmpipe.fusion.dataset import by_modality, load_split_data

    data = load_split_data(manifest, by_modality(features, modalities), classes)
    folds = read_folds(folds_path, [*data.guids_train, *data.guids_val]) if selection["method"] == "cv" else None
    return data, folds


def read_folds(path: str, guids: list[str]) -> np.ndarray:
    """``(repeats, len(guids))`` fold ids of ``guids`` from ``folds.parquet`` (a guid it lacks is an error)."""
    import polars as pl

    df = pl.read_parquet(path)
    index = {g: i for i, g in enumerate(df["guid"].to_list())}
    missing = [g for g in guids if g not in index]
    if missing:
        raise ValueError(f"{path}: no fold for {len(missing)} sample(s), e.g. {missing[:3]}; rebuild it")
    rows = np.fromiter((index[g] for g in guids), dtype=np.int64, count=len(guids))
    cols = sorted((c for c in df.columns if c.startswith("r")), key=lambda c: int(c[1:]))
    return np.stack([df[c].to_numpy()[rows] for c in cols])

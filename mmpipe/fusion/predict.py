"""Test-set predictions from an ablation folder (see ``mmpipe.fusion.ablation``)."""

from __future__ import annotations

import json
from pathlib import Path
import numpy as np

from mmpipe.core.atomic import atomic_path, write_text
from mmpipe.fusion.context import sequence_index, with_context
from mmpipe.fusion.dataset import Features, SplitData
from mmpipe.fusion.heads import HEADS, build_head
from mmpipe.fusion.heads.base import Head


def _train_val(d: SplitData, task: str = "classification") -> tuple[dict[str, np.ndarray], np.ndarray]:
    X = {m: np.concatenate([d.X_train[m], d.X_val[m]], axis=0) for m in d.X_train}
    if task == "regression":
        return X, np.concatenate([np.asarray(d.s_train, dtype=np.float64), np.asarray(d.s_val, dtype=np.float64)])
    return X, np.concatenate([np.asarray(d.y_train), np.asarray(d.y_val)])


def score_tags(scores: np.ndarray, classes: list[str]) -> list[str]:
    """The binary class of each score (has-0: >= 0 is the positive class), named after ``classes``:
    ``negative`` / ``positive`` when both are classes, else the first / the last class."""
    neg, pos = ("negative", "positive") if {"negative", "positive"} <= set(classes) else (classes[0], classes[-1])
    return [pos if s >= 0 else neg for s in np.asarray(scores, dtype=np.float64)]


def ablation_meta(ablation_dir: str | Path) -> dict:
    """The ``metrics.json`` of an ablation folder."""
    return json.loads((Path(ablation_dir) / "metrics.json").read_text(encoding="utf-8"))


def context_mode(meta: dict) -> str | None:
    """The context setting an ablation trained with (``mmpipe.fusion.context``)."""
    return meta.get("context") or meta.get("params", {}).get("context")


def seed_heads(data: SplitData | None, ablation_dir: str | Path, refit: bool) -> list[Head]:
    """The fitted head of each seed of an ablation, ready to predict.

    ``refit=False`` (and always for a cross-validated ablation, whose saved models are already refitted on all
    labelled samples): the saved ``model_seed{seed}.pt``. ``refit=True``: each seed's head refitted on train+val
    WITHOUT validation data, for that seed's best epoch (plus whatever else the seed's fit chose on validation:
    ``refit_params()``, e.g. late fusion's modality weights or a baseline's C); this needs ``data``.
    """
    ablation_dir = Path(ablation_dir)
    meta = ablation_meta(ablation_dir)
    refit = refit and not meta.get("cv")
    cls = HEADS.get(meta["head"])
    models = [cls.load(ablation_dir / rec.get("model", f"model_seed{int(rec['seed'])}.pt")) for rec in meta["per_seed"]]
    if not refit:
        return models
    if data is None:
        raise ValueError(f"{ablation_dir}: refitting needs the training data")
    task = meta.get("task", "classification")
    d = with_context(data.select(list(meta["modalities"])), context_mode(meta))
    groups = None
    if cls.uses_groups:  # train and val groups together (the codes must not collide)
        gr = None if d.g_train is None or d.g_val is None else np.concatenate([d.g_train, d.g_val])
        groups = sequence_index(gr, [*d.guids_train, *d.guids_val])
    refitted = []
    for model in models:
        model = build_head(meta["head"], {**model.get_params(), **model.refit_params()})
        refitted.append(model.fit(*_train_val(d, task), groups=groups))
    return refitted


def head_outputs(models: list[Head], X: Features, groups: np.ndarray | None, regression: bool) -> np.ndarray:
    """The seeds' mean class probabilities ``(n, n_classes)``, or mean scores ``(n,)`` for regression."""
    outs = [m.predict(X, groups=groups) if regression else m.predict_proba(X, groups=groups) for m in models]
    return np.mean(outs, axis=0)


def predict(data: SplitData, ablation_dir: Path, refit: bool, out_txt: Path, out_parquet: Path,
            task: str | None = None) -> np.ndarray:
    """Average the seeds' test probabilities (``seed_heads``) and write ``out_txt`` / ``out_parquet``.

    ``out_txt``: ``guid,tag`` then one line per test guid in the order of ``data.guids_test``;
    ``out_parquet``: columns ``guid``, ``tag`` and ``p_<class>`` per class. Returns the averaged
    probabilities ``(n_test, n_classes)``.

    Regression ablations (``task: regression`` in ``metrics.json``): the seeds' test SCORES are averaged;
    ``out_txt`` holds the binary tag of the mean score (``score_tags``), ``out_parquet`` the columns
    ``guid``, ``tag`` and ``score``; returns the mean scores ``(n_test,)``. ``task``, when given, must match
    the ablation's. Context features (``context`` in ``metrics.json``) are added as in training.
    """
    ablation_dir = Path(ablation_dir)
    meta = ablation_meta(ablation_dir)
    meta_task = meta.get("task", "classification")
    if task is not None and task != meta_task:
        raise ValueError(f"{ablation_dir}: trained for task {meta_task!r}, asked to predict for {task!r}")
    regression = meta_task == "regression"
    classes = list(data.classes)
    if list(meta.get("classes", classes)) != classes:
        raise ValueError(f"{ablation_dir}: trained on classes {meta['classes']}, data has {classes}")
    cls = HEADS.get(meta["head"])
    d = with_context(data.select(list(meta["modalities"])), context_mode(meta))
    n_test = next(iter(d.X_test.values())).shape[0]
    guids = list(data.guids_test)
    if len(guids) != n_test:
        raise ValueError(f"{len(guids)} test guids but {n_test} test feature rows")
    groups_test = sequence_index(d.g_test, guids) if cls.uses_groups else None
    proba = head_outputs(seed_heads(data, ablation_dir, refit), d.X_test, groups_test, regression)
    write_predictions(guids, proba, classes, regression, out_txt, out_parquet)
    return proba


def write_predictions(guids: list[str], out: np.ndarray, classes: list[str], regression: bool, out_txt: Path,
                      out_parquet: Path) -> None:
    """``out_txt``: ``guid,tag`` per guid; ``out_parquet``: ``guid``, ``tag`` and ``p_<class>`` (or ``score``)."""
    if regression:
        _write_scores(out, guids, classes, out_txt, out_parquet)
        return
    if out.shape != (len(guids), len(classes)):
        raise ValueError(f"probabilities of shape {out.shape}, expected {(len(guids), len(classes))}")
    tags = [classes[i] for i in out.argmax(axis=1)]
    write_text(out_txt, "guid,tag\n" + "".join(f"{g},{t}\n" for g, t in zip(guids, tags)))
    import polars as pl

    df = pl.DataFrame({"guid": [str(g) for g in guids], "tag": tags,
                       **{f"p_{c}": out[:, i].astype(np.float64) for i, c in enumerate(classes)}})
    with atomic_path(out_parquet) as tmp:
        df.write_parquet(tmp)


def _write_scores(scores: np.ndarray, guids: list[str], classes: list[str], out_txt: Path,
                  out_parquet: Path) -> None:
    if scores.shape != (len(guids),):
        raise ValueError(f"scores of shape {scores.shape}, expected {(len(guids),)}")
    tags = score_tags(scores, classes)
    write_text(out_txt, "guid,tag\n" + "".join(f"{g},{t}\n" for g, t in zip(guids, tags)))
    import polars as pl

    df = pl.DataFrame({"guid": [str(g) for g in guids], "tag": tags, "score": scores.astype(np.float64)})
    with atomic_path(out_parquet) as tmp:
        df.write_parquet(tmp)

"""One ablation: a head on a subset of modalities, trained with several seeds, evaluated honestly.

Each seed fits on TRAIN, with VAL only for early stopping / model choices inside the head; the
reported validation numbers are therefore slightly optimistic (they picked the epoch), the test
numbers are not (test is never looked at before evaluation). Outputs in ``out_dir``:

* ``model_seed{seed}.pt``: the fitted head per seed;
* ``confusion.png``: VALIDATION confusion matrix averaged over seeds (``confusion_test.png`` too
  when the test split is labelled);
* ``curve.png``: what each seed's fit chose on validation, one line per seed: training curves with the
  kept epoch for the epoch-trained heads, the validation score of every candidate ``C`` with the chosen one
  for the baselines (``mmpipe.reporting.plots.curve_png``);
* ``report.md``: a readable report linking the PNGs by relative path;
* ``metrics.json``: everything, written last (its presence means the ablation is complete).

``task: regression`` (from ``labels.scheme``): the heads fit the float scores (``SplitData.s_*``), the
metrics are MMSA's (``regression_metrics``: Acc-2 has-0 / non-0, F1, Acc-7, Acc-5, MAE, Corr) and the
confusion matrices are the binary has-0 ones. ``context`` in the params (see ``mmpipe.fusion.context``) adds
group-context features before the head sees the data; it is not passed to the head itself.
``majority_baseline`` in ``metrics.json``: the training majority class (regression: the training median
score, a constant prediction) scored on val and test, so every number has its trivial reference.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmpipe.core.atomic import atomic_path, write_text
from mmpipe.fusion.dataset import SplitData
from mmpipe.fusion.context import check_mode, sequence_index, with_context
from mmpipe.fusion import cv
from mmpipe.fusion.cost import cost_record
from mmpipe.fusion.heads.base import HEADS, Head, build_head
from mmpipe.fusion.metrics import (BINARY_CLASSES, REGRESSION_METRICS, aggregate, classification_metrics, fmt_ms,
                                   regression_metrics)
from mmpipe.reporting.plots import confusion_png, curve_kind, curve_png
from mmpipe.reporting.tensorboard import write_fit_events

log = logging.getLogger(__name__)

STD_NOTE = "sample standard deviation over seeds (ddof=1; 0 with one seed)"
CV_STD_NOTE = "sample standard deviation over the cross-validation folds (ddof=1)"
CONFUSION_NOTE = "validation confusion matrix, averaged over seeds (cells are mean counts)"
CV_CONFUSION_NOTE = "held-out confusion matrix, averaged over the cross-validation folds (cells are mean counts)"


TASKS = ("classification", "regression")


def _build(head: str, params: dict[str, Any], seed: int, n_classes: int, task: str = "classification") -> Head:
    if task == "regression":
        return build_head(head, {**params, "seed": int(seed), "task": "regression"})
    return build_head(head, {"n_classes": n_classes, **params, "seed": int(seed)})


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def majority_baseline(d: SplitData, task: str = "classification") -> dict[str, Any]:
    """A constant prediction learnt from the TRAINING labels only, scored on val and (labelled) test:
    the most frequent training class (ties: the first in ``classes``), or for regression the median
    training score (the constant with the lowest training MAE; its sign is the majority binary class)."""
    if task == "regression":
        c = float(np.median(d.s_train))
        score = lambda s: None if s is None else regression_metrics(s, np.full(len(s), c))  # noqa: E731
        return {"prediction": c, "rule": "median training score", "val": score(d.s_val), "test": score(d.s_test)}
    k = len(d.classes)
    c = int(np.bincount(np.asarray(d.y_train, dtype=np.int64), minlength=k).argmax())

    def score(y):
        if y is None:
            return None
        m = classification_metrics(y, np.full(len(y), c), d.classes)
        return {key: v for key, v in m.items() if key not in ("per_class", "confusion_matrix")}

    return {"prediction": d.classes[c], "rule": "most frequent training class", "val": score(d.y_val),
            "test": score(d.y_test)}


def fit_targets(d: SplitData, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(train, val, test) targets of the task: class ids or (regression) scores; test None if unlabelled."""
    if task == "regression":
        if d.s_train is None or d.s_val is None:
            raise ValueError("task regression needs a score for every train and validation sample "
                             "(labels.scheme: regression in the config, and a score column in the data)")
        return d.s_train, d.s_val, d.s_test
    return d.y_train, d.y_val, d.y_test


def _rows(X: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {m: a[rows] for m, a in X.items()}


class Fold:
    """The samples one fit sees: fit rows, early-stopping rows (None: none) and the rows it predicts, all
    indices into the pool ``X``/``t`` (groups ``g`` and ``guids`` give sequence heads their order)."""

    def __init__(self, X, t, g, guids, fit, stop, held):
        self.X, self.t, self.g, self.guids = X, t, g, guids
        self.fit, self.stop, self.held = fit, stop, held

    def seq(self, rows):
        return None if self.g is None else sequence_index(self.g[rows], [self.guids[i] for i in rows])


def fit_fold(head: str, params: dict[str, Any], seed: int, n_classes: int, task: str, fold: Fold) -> tuple[Head, float]:
    """A fresh ``head`` fitted on ``fold.fit`` (early stopping on ``fold.stop``), and its fit time in seconds."""
    uses_groups = HEADS.get(head).uses_groups
    model = _build(head, params, seed, n_classes, task)
    t0 = time.perf_counter()
    has_stop = fold.stop is not None
    model.fit(_rows(fold.X, fold.fit), fold.t[fold.fit],
              _rows(fold.X, fold.stop) if has_stop else None, fold.t[fold.stop] if has_stop else None,
              groups=fold.seq(fold.fit) if uses_groups else None,
              groups_val=fold.seq(fold.stop) if uses_groups and has_stop else None)
    return model, time.perf_counter() - t0


def cv_pool(d: SplitData, task: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None, list[str]]:
    """The labelled non-test rows that cross-validation folds (train then val, the order of ``folds.parquet``
    ids): features, targets, groups and guids."""
    t_train, t_val, _ = fit_targets(d, task)
    X = {m: np.concatenate([d.X_train[m], d.X_val[m]]) for m in d.X_train}
    g = None if d.g_train is None else np.concatenate([d.g_train, d.g_val])
    return X, np.concatenate([t_train, t_val]), g, [*d.guids_train, *d.guids_val]


def _metrics(t, out: np.ndarray, classes, regression: bool) -> dict[str, Any]:
    return regression_metrics(t, out) if regression else classification_metrics(t, out, classes)


def _score(model: Head, X, t, groups, classes, regression: bool) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics and outputs (probabilities, or scores) of ``model`` on ``X``."""
    out = model.predict(X, groups=groups) if regression else model.predict_proba(X, groups=groups)
    return _metrics(t, out, classes, regression), out


def _scalars(m: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in ("n", "n_non0")}


def run_ablation(data: SplitData, name: str, modalities: list[str], head: str, params: dict[str, Any],
                 seeds: list[int], out_dir: Path, task: str = "classification",
                 selection: dict[str, Any] | None = None, folds: np.ndarray | None = None,
                 tensorboard_dir: Path | None = None) -> dict[str, Any]:
    """Fit ``head`` on ``modalities``, estimate its score honestly, write the outputs listed in the module
    docstring and return the metrics dict (= ``metrics.json``).

    ``selection.method: cv`` (with ``folds``, ``(repeats, n)`` fold ids of the train+val rows in that order,
    see ``mmpipe.fusion.cv``): one fit per fold on the fold's training part, early stopping on an inner split
    of it (``selection.inner_val``), scored on the fold's held-out part (``cv`` in the result, out-of-fold
    outputs in ``oof.npz``); then each seed refits on ALL labelled non-test rows with the folds' choices
    combined (median epochs, C, ...: ``cv.combine_refit_params``). ``method: split`` (or no folds): each seed fits
    on train with the validation split for early stopping and is scored on it (``val``). Labelled test rows are
    only predicted, by the final models. With two or more seeds, ``ensemble`` also scores the mean of the final
    models' outputs on validation (split mode) and test: the seed ensemble that ``predictions`` writes.
    ``tensorboard_dir``: every fit with epochs writes its curves there (``mmpipe.reporting.tensorboard``), one run
    per final model (``seed<k>``) and per fold (``repeat<r>_fold<k>``)."""
    task = task or "classification"
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if not seeds:
        raise ValueError("run_ablation needs at least one seed")
    if not modalities:
        raise ValueError("run_ablation needs at least one modality")
    missing = [m for m in modalities if m not in data.X_train]
    if missing:
        raise KeyError(f"ablation {name!r}: modalities {missing} not in the data (have {sorted(data.X_train)})")
    selection = {"method": "split", **(selection or {})}
    cv_mode = selection["method"] == "cv"
    if cv_mode and folds is None:
        raise ValueError(f"ablation {name!r}: selection.method cv needs the folds (results/<ds>/folds.parquet)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tensorboard_dir is not None:
        Path(tensorboard_dir).mkdir(parents=True, exist_ok=True)
    params = dict(params or {})
    head_params = {k: v for k, v in params.items() if k != "context"}
    context = check_mode(params.get("context"))
    d = with_context(data.select(list(modalities)), context)
    classes = list(d.classes)
    regression = task == "regression"
    t_train, t_val, t_test = fit_targets(d, task)
    labelled_test = t_test is not None
    uses_groups = HEADS.get(head).uses_groups

    n_test = int(next(iter(d.X_test.values())).shape[0])
    n = {"train": int(len(d.y_train)), "val": int(len(d.y_val)), "test": n_test}
    log.info("ablation %s: head %s on %s, task %s, context %s, selection %s; samples: %d train, %d val, %d test "
             "(%s); seeds %s", name, head, "+".join(modalities), task, context, selection["method"], n["train"],
             n["val"], n["test"], "labelled" if labelled_test else "unlabelled", ", ".join(map(str, seeds)))
    seq_test = sequence_index(d.g_test, d.guids_test) if uses_groups else None
    main = "mae" if regression else "macro_f1"
    result: dict[str, Any] = {"name": name, "head": head, "modalities": list(modalities), "params": _jsonable(params),
                              "seeds": [int(s) for s in seeds], "classes": classes, "task": task,
                              "context": context, "n": n, "test_labelled": labelled_test,
                              "selection": _jsonable(selection)}

    def fit_one(seed, p, fold: Fold):
        return fit_fold(head, p, seed, len(classes), task, fold)

    def curves(run: str, model: Head, p: dict[str, Any], scores: dict[str, Any] | None) -> None:
        if tensorboard_dir is not None:
            final = {"train_loss": model.history_[-1]["train_loss"]} if model.history_ and \
                "train_loss" in model.history_[-1] else {}
            write_fit_events(Path(tensorboard_dir) / run, model.history_,
                             {"head": head, "modalities": "+".join(modalities), **p},
                             {**final, **({main: scores[main]} if scores else {})})

    per_seed: list[dict[str, Any]] = []
    outputs: dict[str, list[np.ndarray]] = {"val": [], "test": []}  # each seed's outputs, for the seed ensemble
    if cv_mode:
        X, t, g, guids = cv_pool(d, task)
        folds = np.atleast_2d(np.asarray(folds))
        if folds.shape[1] != len(t):
            raise ValueError(f"ablation {name!r}: folds cover {folds.shape[1]} samples, the data has {len(t)}")
        strat = cv.strata(None if regression else t, t if regression else None)
        width = 1 if regression else len(classes)
        oof = np.full((folds.shape[0], len(t), width), np.nan)
        fold_recs, fold_metrics = [], []
        for r, k, tr, held in cv.fold_indices(folds):
            fit_i, stop_i = cv.inner_split(strat[tr], None if g is None else g[tr],
                                           float(selection.get("inner_val", 0.15)), seed=int(seeds[0]) + 97 * r + k)
            fold = Fold(X, t, g, guids, tr[fit_i], tr[stop_i], held)
            model, fit_s = fit_one(seeds[0], head_params, fold)
            m, out = _score(model, _rows(X, held), t[held], fold.seq(held) if uses_groups else None, classes,
                            regression)
            oof[r, held] = np.asarray(out).reshape(len(held), width)
            curves(f"repeat{r}_fold{k}", model, head_params, m)
            refit = _jsonable(model.refit_params())
            log.info("repeat %d fold %d: fit %.2f s on %d (+%d early-stopping), best epoch %s, chose %s; held-out "
                     "%d: %s %.4f", r, k, fit_s, len(fold.fit), len(fold.stop),
                     model.best_epoch_ if model.best_epoch_ is not None else "-", json.dumps(refit) if refit else "-",
                     len(held), main, m[main])
            fold_metrics.append(m)
            fold_recs.append({"repeat": r, "fold": k, "n_fit": int(len(fold.fit)), "n_stop": int(len(fold.stop)),
                              "n_held_out": int(len(held)), "best_epoch": model.best_epoch_,
                              "fit_seconds": round(fit_s, 3), "refit_params": refit, "scores": _scalars(m),
                              "history": _jsonable(model.history_)})
        final = cv.combine_refit_params([f["refit_params"] for f in fold_recs])
        all_rows = Fold(X, t, g, guids, np.arange(len(t)), None, None)
        n.update(pool=int(len(t)), fold_held_out=int(round(np.mean([f["n_held_out"] for f in fold_recs]))),
                 fold_fit=int(round(np.mean([f["n_fit"] for f in fold_recs]))))
        for seed in seeds:
            model, fit_s = fit_one(seed, {**head_params, **final}, all_rows)
            model_file = f"model_seed{seed}.pt"
            model.save(out_dir / model_file)
            test = None
            if labelled_test:
                test, out = _score(model, d.X_test, t_test, seq_test, classes, regression)
                outputs["test"].append(out)
            curves(f"seed{seed}", model, {**head_params, **final}, test)
            log.info("seed %d: refit on all %d labelled samples with %s in %.2f s%s", seed, len(t), json.dumps(final),
                     fit_s, f"; test {main} {test[main]:.4f}" if test else "")
            per_seed.append({"seed": int(seed), "fit_seconds": round(fit_s, 3), "model": model_file,
                             "refit_params": final, "test": test, "best_epoch": None,
                             "members": _jsonable(getattr(model, "members_report_", None))})
        with atomic_path(out_dir / "oof.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, guids=np.asarray(guids, dtype=str), folds=folds, outputs=oof)
        result.update(cv=aggregate(fold_metrics), val=None, folds=fold_recs, refit=final,
                      best_epochs=[f["best_epoch"] for f in fold_recs])
        latency_X, latency_seq = X, all_rows.seq(all_rows.fit) if uses_groups else None
        histories = {f"fold {f['fold']}": f["history"] for f in fold_recs if f["repeat"] == 0}
        best_epochs = {f"fold {f['fold']}": f["best_epoch"] for f in fold_recs if f["repeat"] == 0}
        scored = "cv"
    else:
        split_fold = Fold({m: np.concatenate([d.X_train[m], d.X_val[m]]) for m in modalities_of(d)},
                           np.concatenate([t_train, t_val]),
                           None if d.g_train is None else np.concatenate([d.g_train, d.g_val]),
                           [*d.guids_train, *d.guids_val], np.arange(len(t_train)),
                           np.arange(len(t_train), len(t_train) + len(t_val)), None)
        for seed in seeds:
            model, fit_s = fit_one(seed, head_params, split_fold)
            val, out = _score(model, d.X_val, t_val, split_fold.seq(split_fold.stop) if uses_groups else None,
                              classes, regression)
            outputs["val"].append(out)
            test = None
            if labelled_test:
                test, out = _score(model, d.X_test, t_test, seq_test, classes, regression)
                outputs["test"].append(out)
            model_file = f"model_seed{seed}.pt"
            model.save(out_dir / model_file)
            curves(f"seed{seed}", model, head_params, val)
            refit = _jsonable(model.refit_params())
            log.info("seed %d: fit %.2f s, best epoch %s, chosen on validation %s; val %s %.4f%s", seed, fit_s,
                     model.best_epoch_ if model.best_epoch_ is not None else "-", json.dumps(refit) if refit else "-",
                     main, val[main], f", test {main} {test[main]:.4f}" if test else "")
            per_seed.append({"seed": int(seed), "best_epoch": model.best_epoch_, "fit_seconds": round(fit_s, 3),
                             "model": model_file, "refit_params": refit, "val": val, "test": test,
                             "history": _jsonable(model.history_)})
        result.update(val=aggregate([r["val"] for r in per_seed]), best_epochs=[r["best_epoch"] for r in per_seed])
        latency_X = split_fold.X
        latency_seq = split_fold.seq(np.arange(len(split_fold.t))) if uses_groups else None
        histories = {r["seed"]: r["history"] for r in per_seed}
        best_epochs = {r["seed"]: r["best_epoch"] for r in per_seed}
        scored = "val"

    targets = {"val": t_val, "test": t_test}
    result.update({
        "test": aggregate([r["test"] for r in per_seed]) if labelled_test else None,
        "ensemble": {split: _scalars(_metrics(targets[split], np.mean(outs, axis=0), classes, regression))
                     for split, outs in outputs.items() if outs} if len(seeds) > 1 else None,
        "fit_seconds": [r["fit_seconds"] for r in per_seed],
        "fit_seconds_total": round(sum(r["fit_seconds"] for r in per_seed)
                                   + sum(f["fit_seconds"] for f in result.get("folds") or []), 3),
        "majority_baseline": _jsonable(majority_baseline(d, task)),
        "cost": cost_record(model, latency_X, [r["fit_seconds"] for r in per_seed], latency_seq),
        "std": CV_STD_NOTE if cv_mode else STD_NOTE,
        "confusion": CV_CONFUSION_NOTE if cv_mode else CONFUSION_NOTE,
        "files": {"confusion": "confusion.png", "curve": "curve.png", "report": "report.md",
                  "confusion_test": "confusion_test.png" if labelled_test else None,
                  "oof": "oof.npz" if cv_mode else None, "models": [r["model"] for r in per_seed]},
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
        "per_seed": per_seed,
    })

    mods = "+".join(modalities)
    cm_classes, what = (BINARY_CLASSES, "binary has-0, ") if regression else (classes, "")
    where = (f"cross-validated ({what}{head}, {mods}; mean over {len(result['folds'])} held-out folds)" if cv_mode
             else f"validation ({what}{head}, {mods}; mean over {len(seeds)} seeds)")
    confusion_png(result[scored]["confusion_matrix_mean"], cm_classes, out_dir / "confusion.png",
                  title=f"{name}: {where}")
    if labelled_test:
        confusion_png(result["test"]["confusion_matrix_mean"], cm_classes, out_dir / "confusion_test.png",
                      title=f"{name}: test ({what}{head}, {mods}; mean over {len(seeds)} seeds)")
    curve_png(histories, out_dir / "curve.png", title=f"{name}: {head} on {mods}", best_epochs=best_epochs)
    write_text(out_dir / "report.md", render_report(result))
    write_text(out_dir / "metrics.json", json.dumps(result, indent=1) + "\n")
    return result


def modalities_of(d: SplitData) -> list[str]:
    return list(d.X_train)


REG_LABELS = {"acc2_has0": "Acc-2 has-0", "f1_has0": "F1 has-0", "acc2_non0": "Acc-2 non-0", "f1_non0": "F1 non-0",
              "acc7": "Acc-7", "acc5": "Acc-5", "mae": "MAE", "corr": "Corr"}


SPLIT_NAMES = {"cv": "cross-validated", "val": "validation", "test": "test"}


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _baseline_lines(r: dict[str, Any], regression: bool) -> list[str]:
    b = r.get("majority_baseline")
    if not b:
        return []
    keys = ("acc2_has0", "acc2_non0", "acc7", "mae") if regression else ("accuracy", "macro_f1", "weighted_f1")
    pred = f"{b['prediction']:.3f}" if regression else f"`{b['prediction']}`"
    parts = []
    for split in ("val", "test"):
        if b.get(split):
            parts.append(f"{split} " + ", ".join(f"{(REG_LABELS.get(k) or k)} {_num(b[split].get(k))}" for k in keys))
    return [f"- **Majority baseline** ({b['rule']}: {pred}): " + "; ".join(parts)] if parts else []


def _cost_lines(c: dict[str, Any] | None) -> list[str]:
    if not c:
        return []
    params = "not counted" if c.get("parameters") is None else f"{c['parameters']:,}"
    return [f"- **Cost:** {params} parameters; {c['fit_seconds_per_seed']:.2f} s per final fit; "
            f"{c['inference_ms_per_1000']:.1f} ms to predict 1,000 samples; the job peaked at "
            f"{c['peak_rss_mb']:.0f} MB of memory"]


def _how(r: dict[str, Any]) -> str:
    """How the scores were obtained, in one paragraph."""
    if r.get("cv"):
        sel = r["selection"]
        return (f"{sel.get('repeats', 1)} × {sel.get('folds')}-fold cross-validation on the "
                f"{r['n']['pool']} labelled non-test samples: each fold fits on its training part, stops early on "
                f"an inner {sel.get('inner_val', 0.15):.0%} of that part, and is scored on its held-out part, "
                "which it never saw. The final models (one per seed) refit on all labelled samples with the folds' "
                f"choices combined (`{json.dumps(r.get('refit') or {}, sort_keys=True)}`); a labelled test split "
                f"is only predicted by them. Values are mean ± {CV_STD_NOTE} (test: over seeds).")
    return ("Each seed trains on the training split; the validation split drives early stopping (and the head's "
            "internal choices), so validation scores are slightly optimistic. The test split is only predicted. "
            f"Values are mean ± {STD_NOTE}.")


def render_report(r: dict[str, Any]) -> str:
    """The Markdown report of one ablation (PNG links relative to the report)."""
    classes, seeds = r["classes"], r["seeds"]
    regression = r.get("task") == "regression"
    cv_mode = bool(r.get("cv"))
    scored = "cv" if cv_mode else "val"
    data = (f"{r['n']['pool']} labelled (train + val) in {len(r['folds'])} folds of about "
            f"{r['n']['fold_held_out']} held-out samples / {r['n']['test']} test" if cv_mode else
            f"{r['n']['train']} train / {r['n']['val']} val / {r['n']['test']} test")
    lines = [f"# Ablation `{r['name']}`", ""]
    lines += [
        f"- **Head:** `{r['head']}`",
        f"- **Modalities:** {', '.join(r['modalities'])}",
        f"- **Seeds:** {', '.join(map(str, seeds))}",
        f"- **Parameters:** `{json.dumps(r['params'], sort_keys=True)}`" if r["params"] else
        "- **Parameters:** head defaults",
        f"- **Data:** {data}" + ("" if r["test_labelled"] else " (test unlabelled: no test metrics)"),
        f"- **Classes:** {', '.join(classes)}" if not regression else
        "- **Task:** regression on the score (binary metrics from its sign, as MMSA)",
        f"- **Context:** {r.get('context', 'none')}",
        *([] if cv_mode else _baseline_lines(r, regression)),
        f"- **Fit time:** {r['fit_seconds_total']:.1f} s in total",
        *_cost_lines(r.get("cost")),
        "",
        _how(r),
        "",
        "## Scores",
        "",
    ]
    splits = [sp for sp in (scored, "test") if r.get(sp)]
    ensemble = r.get("ensemble") or {}
    if regression:
        lines += ["| split | " + " | ".join(REG_LABELS[k] for k in REGRESSION_METRICS) + " |",
                  "|---|" + "---|" * len(REGRESSION_METRICS)]
        for split in splits:
            a = r[split]
            lines.append(f"| {SPLIT_NAMES[split]} | " + " | ".join(fmt_ms(a.get(k)) for k in REGRESSION_METRICS) + " |")
        for split, e in ensemble.items():
            cells = (_num(e.get(k)) for k in REGRESSION_METRICS)
            lines.append(f"| {SPLIT_NAMES[split]}, seed ensemble | " + " | ".join(cells) + " |")
        lines += ["", "Acc-2 has-0: negative (< 0) vs non-negative; non-0: negative vs positive without the samples "
                  "whose true score is 0. F1 is weighted. Acc-7: clipped to [-3, 3] and rounded."]
    else:
        lines += ["| split | accuracy | macro-F1 | weighted-F1 | log-loss |", "|---|---|---|---|---|"]
        for split in splits:
            a = r[split]
            lines.append(f"| {SPLIT_NAMES[split]} | {fmt_ms(a.get('accuracy'))} | {fmt_ms(a.get('macro_f1'))} | "
                         f"{fmt_ms(a.get('weighted_f1'))} | {fmt_ms(a.get('log_loss'))} |")
        for split, e in ensemble.items():
            cells = (_num(e.get(k)) for k in ("accuracy", "macro_f1", "weighted_f1", "log_loss"))
            lines.append(f"| {SPLIT_NAMES[split]}, seed ensemble | " + " | ".join(cells) + " |")
    if ensemble:
        lines += ["", f"Rows marked *seed ensemble* score the mean of the {len(seeds)} seeds' "
                  + ("scores" if regression else "probabilities")
                  + ": what `predictions` writes (with `predict.refit: false`, the default)."]
    keys = ("mae", "acc2_non0") if regression else ("accuracy", "macro_f1")
    names = ("MAE", "Acc-2 non-0") if regression else ("acc", "macro-F1")
    if cv_mode:
        lines += ["", "## Per fold", "", "| repeat | fold | fit / early-stopping / held-out | best epoch | fit s | "
                  + " | ".join(f"held-out {x}" for x in names) + " |", "|---|---|---|---|---|---|---|"]
        for f in r["folds"]:
            best = f["best_epoch"] if f["best_epoch"] is not None else "—"
            lines.append(f"| {f['repeat']} | {f['fold']} | {f['n_fit']} / {f['n_stop']} / {f['n_held_out']} | {best} | "
                         f"{f['fit_seconds']:.1f} | " + " | ".join(_num(f["scores"].get(k)) for k in keys) + " |")
    lines += ["", "## Per seed" + (" (final models, refitted on all labelled samples)" if cv_mode else ""), ""]
    cols = ([] if cv_mode else [f"val {x}" for x in names]) + ([f"test {x}" for x in names] if r["test_labelled"] else [])
    second = "trained with" if cv_mode else "best epoch"
    lines += ["| " + " | ".join(["seed", second, "fit s", *cols]) + " |", "|---|---|---|" + "---|" * len(cols)]
    for s in r["per_seed"]:
        best = s.get("best_epoch") if s.get("best_epoch") is not None else "—"
        if cv_mode:
            best = ", ".join(f"{k} {v}" for k, v in (s.get("refit_params") or {}).items()
                             if not isinstance(v, (list, dict))) or "defaults"
        vals = ([] if cv_mode else [_num(s["val"].get(k)) for k in keys]) + \
            ([_num(s["test"].get(k)) for k in keys] if s.get("test") else [])
        lines.append("| " + " | ".join([str(s["seed"]), str(best), f"{s['fit_seconds']:.1f}", *vals]) + " |")
    if not regression:
        for split in splits:
            a = r[split]
            lines += ["", f"## Per class ({SPLIT_NAMES[split]})", "",
                      "| class | support | precision | recall | F1 |", "|---|---|---|---|---|"]
            for c in classes:
                pc = a["per_class"][c]
                lines.append(f"| {c} | {pc['support']} | {fmt_ms(pc['precision'])} | {fmt_ms(pc['recall'])} | "
                             f"{fmt_ms(pc['f1'])} |")
    members = next((s.get("members") for s in r["per_seed"] if s.get("members")), None)
    if members:
        key = "mae" if regression else "macro_f1"
        lines += ["", "## What each member adds", "", "Inner out-of-fold scores of the final stack's members (seed "
                  f"{r['per_seed'][0]['seed']}) and the stack's score without each member:", "",
                  f"| member | own {key} | mean abs meta weight | stack without it |", "|---|---|---|---|"]
        for m in members:
            lines.append(f"| `{m['name']}` | {_num(m.get('oof_' + key))} | {_num(m.get('meta_coef_abs_mean'))} | "
                         f"{_num(m.get('stack_without_' + key))} |")
    binary = " of the binary (has-0) classes" if regression else ""
    lines += ["", "## Figures", "", f"{SPLIT_NAMES[scored].capitalize()} confusion matrix{binary}, averaged over "
              + ("folds" if cv_mode else "seeds") + " (cells: mean counts and row percentages; colours "
              "row-normalised):", "", f"![{SPLIT_NAMES[scored]} confusion matrix](confusion.png)", ""]
    if r["test_labelled"]:
        lines += [f"Test confusion matrix{binary} (mean over seeds):", "",
                  "![test confusion matrix](confusion_test.png)", ""]
    return "\n".join(lines + _curve_and_models(r, regression))


def _curve_and_models(r: dict[str, Any], regression: bool) -> list[str]:
    """The ``curve.png`` paragraph (what it shows depends on the head, see ``plots.curve_kind``) and the models."""
    runs = ({f"fold {f['fold']}": f["history"] for f in r["folds"] if f["repeat"] == 0} if r.get("cv")
            else {s["seed"]: s["history"] for s in r["per_seed"]})
    kind = curve_kind(runs)
    metric = "MAE" if regression else "macro-F1"
    who = "one line per fold of the first repeat, scored on its early-stopping part" if r.get("cv") else "one line per seed"
    if kind == "C":
        text, alt = f"Choice of C: {metric} of each candidate C ({who}; ★ the chosen C):", "choice of C"
    elif kind == "epoch":
        text, alt = (f"Training curves ({who}; ★ the epoch whose weights were kept"
                     + (", lowest MAE):" if regression else "):"), "training curves")
    else:
        text, alt = "No curve: the head recorded no training steps or validation choices.", "no curve"
    return [text, "", f"![{alt}](curve.png)", "", "## Models", ""] + \
        [f"- [`{m}`]({m})" for m in r["files"]["models"]] + [""]

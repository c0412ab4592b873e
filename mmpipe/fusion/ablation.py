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

from mmpipe.core.atomic import write_text
from mmpipe.fusion.dataset import SplitData
from mmpipe.fusion.context import check_mode, sequence_index, with_context
from mmpipe.fusion.heads.base import Head, build_head
from mmpipe.fusion.metrics import (BINARY_CLASSES, REGRESSION_METRICS, aggregate, classification_metrics, fmt_ms,
                                   regression_metrics)
from mmpipe.reporting.plots import confusion_png, curve_kind, curve_png

log = logging.getLogger(__name__)

STD_NOTE = "sample standard deviation over seeds (ddof=1; 0 with one seed)"
CONFUSION_NOTE = "validation confusion matrix, averaged over seeds (cells are mean counts)"


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


def run_ablation(data: SplitData, name: str, modalities: list[str], head: str, params: dict[str, Any],
                 seeds: list[int], out_dir: Path, task: str = "classification") -> dict[str, Any]:
    """Fit ``head`` on ``modalities`` once per seed, evaluate on val (and labelled test), write the
    outputs listed in the module docstring and return the metrics dict (= ``metrics.json``). Logs (INFO) the
    samples per split and, per seed, the fit time, the kept epoch and the parameters chosen on validation."""
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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = dict(params or {})
    head_params = {k: v for k, v in params.items() if k != "context"}
    context = check_mode(params.get("context"))
    d = with_context(data.select(list(modalities)), context)
    classes = list(d.classes)
    regression = task == "regression"
    t_train, t_val, t_test = fit_targets(d, task)
    labelled_test = t_test is not None

    n = {"train": int(len(d.y_train)), "val": int(len(d.y_val)), "test": int(next(iter(d.X_test.values())).shape[0])}
    log.info("ablation %s: head %s on %s, task %s, context %s; samples: %d train, %d val, %d test (%s); seeds %s",
             name, head, "+".join(modalities), task, context, n["train"], n["val"], n["test"],
             "labelled" if labelled_test else "unlabelled", ", ".join(map(str, seeds)))

    # sequence heads: [group, position] per row, per split
    seq: dict[str, Any] = {"train": None, "val": None, "test": None}

    def evaluate(model: Head, split: str, t: np.ndarray) -> dict[str, Any]:
        X = getattr(d, f"X_{split}")
        if regression:
            return regression_metrics(t, model.predict(X, groups=seq[split]))
        return classification_metrics(t, model.predict_proba(X, groups=seq[split]), classes)

    per_seed = []
    for seed in seeds:
        model = _build(head, head_params, seed, len(classes), task)
        if model.uses_groups and seq["train"] is None:
            seq.update({s: sequence_index(getattr(d, f"g_{s}"), getattr(d, f"guids_{s}"))
                        for s in ("train", "val", "test")})
        t0 = time.perf_counter()
        model.fit(d.X_train, t_train, d.X_val, t_val, groups=seq["train"], groups_val=seq["val"])
        fit_s = time.perf_counter() - t0
        val = evaluate(model, "val", t_val)
        test = evaluate(model, "test", t_test) if labelled_test else None
        model_file = f"model_seed{seed}.pt"
        model.save(out_dir / model_file)
        refit = _jsonable(model.refit_params())
        main = "mae" if regression else "macro_f1"
        log.info("seed %d: fit %.2f s, best epoch %s, chosen on validation %s; val %s %.4f%s", seed, fit_s,
                 model.best_epoch_ if model.best_epoch_ is not None else "-", json.dumps(refit) if refit else "-",
                 main, val[main], f", test {main} {test[main]:.4f}" if test else "")
        per_seed.append({
            "seed": int(seed), "best_epoch": model.best_epoch_, "fit_seconds": round(fit_s, 3),
            "model": model_file, "refit_params": refit, "val": val, "test": test,
            "history": _jsonable(model.history_),
        })

    result: dict[str, Any] = {
        "name": name,
        "head": head,
        "modalities": list(modalities),
        "params": _jsonable(params),
        "seeds": [int(s) for s in seeds],
        "classes": classes,
        "task": task,
        "context": context,
        "n": n,
        "test_labelled": labelled_test,
        "val": aggregate([r["val"] for r in per_seed]),
        "test": aggregate([r["test"] for r in per_seed]) if labelled_test else None,
        "best_epochs": [r["best_epoch"] for r in per_seed],
        "fit_seconds": [r["fit_seconds"] for r in per_seed],
        "fit_seconds_total": round(sum(r["fit_seconds"] for r in per_seed), 3),
        "majority_baseline": _jsonable(majority_baseline(d, task)),
        "std": STD_NOTE,
        "confusion": CONFUSION_NOTE,
        "files": {"confusion": "confusion.png", "curve": "curve.png", "report": "report.md",
                  "confusion_test": "confusion_test.png" if labelled_test else None,
                  "models": [r["model"] for r in per_seed]},
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
        "per_seed": per_seed,
    }

    mods = "+".join(modalities)
    cm_classes, what = (BINARY_CLASSES, "binary has-0, ") if regression else (classes, "")
    confusion_png(result["val"]["confusion_matrix_mean"], cm_classes, out_dir / "confusion.png",
                  title=f"{name}: validation ({what}{head}, {mods}; mean over {len(seeds)} seeds)")
    if labelled_test:
        confusion_png(result["test"]["confusion_matrix_mean"], cm_classes, out_dir / "confusion_test.png",
                      title=f"{name}: test ({what}{head}, {mods}; mean over {len(seeds)} seeds)")
    curve_png({r["seed"]: r["history"] for r in per_seed}, out_dir / "curve.png",
              title=f"{name}: {head} on {mods}", best_epochs={r["seed"]: r["best_epoch"] for r in per_seed})
    write_text(out_dir / "report.md", render_report(result))
    write_text(out_dir / "metrics.json", json.dumps(result, indent=1) + "\n")
    return result


REG_LABELS = {"acc2_has0": "Acc-2 has-0", "f1_has0": "F1 has-0", "acc2_non0": "Acc-2 non-0", "f1_non0": "F1 non-0",
              "acc7": "Acc-7", "acc5": "Acc-5", "mae": "MAE", "corr": "Corr"}


def _baseline_lines(r: dict[str, Any], regression: bool) -> list[str]:
    b = r.get("majority_baseline")
    if not b:
        return []
    keys = ("acc2_has0", "acc2_non0", "acc7", "mae") if regression else ("accuracy", "macro_f1", "weighted_f1")
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    pred = f"{b['prediction']:.3f}" if regression else f"`{b['prediction']}`"
    parts = []
    for split in ("val", "test"):
        if b.get(split):
            parts.append(f"{split} " + ", ".join(f"{(REG_LABELS.get(k) or k)} {fmt(b[split].get(k))}" for k in keys))
    return [f"- **Majority baseline** ({b['rule']}: {pred}): " + "; ".join(parts)]


def render_report(r: dict[str, Any]) -> str:
    """The Markdown report of one ablation (PNG links relative to the report)."""
    classes, seeds = r["classes"], r["seeds"]
    regression = r.get("task") == "regression"
    lines = [f"# Ablation `{r['name']}`", ""]
    lines += [
        f"- **Head:** `{r['head']}`",
        f"- **Modalities:** {', '.join(r['modalities'])}",
        f"- **Seeds:** {', '.join(map(str, seeds))}",
        f"- **Parameters:** `{json.dumps(r['params'], sort_keys=True)}`" if r["params"] else
        "- **Parameters:** head defaults",
        f"- **Data:** {r['n']['train']} train / {r['n']['val']} val / {r['n']['test']} test"
        + ("" if r["test_labelled"] else " (test unlabelled: no test metrics)"),
        f"- **Classes:** {', '.join(classes)}" if not regression else
        "- **Task:** regression on the score (binary metrics from its sign, as MMSA)",
        f"- **Context:** {r.get('context', 'none')}",
        *_baseline_lines(r, regression),
        f"- **Fit time:** {r['fit_seconds_total']:.1f} s in total "
        f"({', '.join(f'{s:.1f}' for s in r['fit_seconds'])} s per seed)",
        "",
        "Each seed trains on the training split; the validation split drives early stopping (and the head's "
        "internal choices), so validation scores are slightly optimistic. The test split is only predicted. "
        f"Values are mean ± {STD_NOTE}.",
        "",
        "## Scores",
        "",
    ]
    if regression:
        lines += ["| split | " + " | ".join(REG_LABELS[k] for k in REGRESSION_METRICS) + " |",
                  "|---|" + "---|" * len(REGRESSION_METRICS)]
        for split in ("val", "test"):
            a = r.get(split)
            if a:
                lines.append(f"| {split} | " + " | ".join(fmt_ms(a.get(k)) for k in REGRESSION_METRICS) + " |")
        lines += ["", "Acc-2 has-0: negative (< 0) vs non-negative; non-0: negative vs positive without the samples "
                  "whose true score is 0. F1 is weighted. Acc-7: clipped to [-3, 3] and rounded."]
        return _render_regression_rest(r, lines)
    lines += [
        "| split | accuracy | macro-F1 | weighted-F1 | log-loss |",
        "|---|---|---|---|---|",
    ]
    for split in ("val", "test"):
        a = r.get(split)
        if a:
            lines.append(f"| {split} | {fmt_ms(a.get('accuracy'))} | {fmt_ms(a.get('macro_f1'))} | "
                         f"{fmt_ms(a.get('weighted_f1'))} | {fmt_ms(a.get('log_loss'))} |")
    lines += ["", "## Per seed", ""]
    head_row = "| seed | best epoch | fit s | val acc | val macro-F1 |"
    sep = "|---|---|---|---|---|"
    if r["test_labelled"]:
        head_row += " test acc | test macro-F1 |"
        sep += "---|---|"
    lines += [head_row, sep]
    for s in r["per_seed"]:
        best = s["best_epoch"] if s["best_epoch"] is not None else "—"
        row = (f"| {s['seed']} | {best} | {s['fit_seconds']:.1f} | "
               f"{s['val']['accuracy']:.3f} | {s['val']['macro_f1']:.3f} |")
        if s["test"]:
            row += f" {s['test']['accuracy']:.3f} | {s['test']['macro_f1']:.3f} |"
        lines.append(row)
    for split in ("val", "test"):
        a = r.get(split)
        if not a:
            continue
        lines += ["", f"## Per class ({split})", "", "| class | support | precision | recall | F1 |",
                  "|---|---|---|---|---|"]
        for c in classes:
            pc = a["per_class"][c]
            lines.append(f"| {c} | {pc['support']} | {fmt_ms(pc['precision'])} | {fmt_ms(pc['recall'])} | "
                         f"{fmt_ms(pc['f1'])} |")
    lines += ["", "## Figures", "", "Validation confusion matrix, averaged over seeds (cells: mean counts and row "
              "percentages; colours row-normalised):", "",
              "![validation confusion matrix](confusion.png)", ""]
    if r["test_labelled"]:
        lines += ["Test confusion matrix (mean over seeds):", "", "![test confusion matrix](confusion_test.png)", ""]
    return "\n".join(lines + _curve_and_models(r, regression=False))


def _render_regression_rest(r: dict[str, Any], lines: list[str]) -> str:
    lines += ["", "## Per seed", ""]
    head_row = "| seed | best epoch | fit s | val MAE | val Acc-2 non-0 |"
    sep = "|---|---|---|---|---|"
    if r["test_labelled"]:
        head_row += " test MAE | test Acc-2 has-0 | test Acc-2 non-0 | test Corr |"
        sep += "---|---|---|---|"
    lines += [head_row, sep]
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    for s in r["per_seed"]:
        best = s["best_epoch"] if s["best_epoch"] is not None else "—"
        row = (f"| {s['seed']} | {best} | {s['fit_seconds']:.1f} | {fmt(s['val']['mae'])} | "
               f"{fmt(s['val']['acc2_non0'])} |")
        if s["test"]:
            t = s["test"]
            row += f" {fmt(t['mae'])} | {fmt(t['acc2_has0'])} | {fmt(t['acc2_non0'])} | {fmt(t['corr'])} |"
        lines.append(row)
    lines += ["", "## Figures", "", "Validation confusion matrix of the binary (has-0) classes, averaged over seeds:",
              "", "![validation confusion matrix](confusion.png)", ""]
    if r["test_labelled"]:
        lines += ["Test confusion matrix (binary has-0, mean over seeds):", "",
                  "![test confusion matrix](confusion_test.png)", ""]
    return "\n".join(lines + _curve_and_models(r, regression=True))


def _curve_and_models(r: dict[str, Any], regression: bool) -> list[str]:
    """The ``curve.png`` paragraph (what it shows depends on the head, see ``plots.curve_kind``) and the models."""
    kind = curve_kind({s["seed"]: s["history"] for s in r["per_seed"]})
    metric = "MAE" if regression else "macro-F1"
    if kind == "C":
        text, alt = f"Choice of C: validation {metric} of each candidate C (one line per seed; ★ the chosen C):", \
            "choice of C"
    elif kind == "epoch":
        text, alt = ("Training curves (one line per seed; ★ the epoch whose weights were kept"
                     + (", lowest validation MAE):" if regression else "):"), "training curves")
    else:
        text, alt = "No curve: the head recorded no training steps or validation choices.", "no curve"
    return [text, "", f"![{alt}](curve.png)", "", "## Models", ""] + \
        [f"- [`{m}`]({m})" for m in r["files"]["models"]] + [""]

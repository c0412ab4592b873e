"""One ablation: a head on a subset of modalities, trained with several seeds, evaluated honestly.

Each seed fits on TRAIN, with VAL only for early stopping / model choices inside the head; the
reported validation numbers are therefore slightly optimistic (they picked the epoch), the test
numbers are not (test is never looked at before evaluation). Outputs in ``out_dir``:

* ``model_seed{seed}.pt``: the fitted head per seed;
* ``confusion.png``: VALIDATION confusion matrix averaged over seeds (``confusion_test.png`` too
  when the test split is labelled);
* ``curve.png``: training curves, one line per seed;
* ``report.md``: a readable report linking the PNGs by relative path;
* ``metrics.json``: everything, written last (its presence means the ablation is complete).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmpipe.atomic import write_text
from mmpipe.dataset import SplitData
from mmpipe.heads.base import build_head
from mmpipe.metrics import aggregate, classification_metrics, fmt_ms
from mmpipe.plots import confusion_png, curve_png

STD_NOTE = "sample standard deviation over seeds (ddof=1; 0 with one seed)"
CONFUSION_NOTE = "validation confusion matrix, averaged over seeds (cells are mean counts)"


def _build(head: str, params: dict[str, Any], seed: int, n_classes: int):
    hp = {**params, "seed": int(seed)}
    if "n_classes" not in params:
        try:
            return build_head(head, {**hp, "n_classes": n_classes})
        except TypeError:  # a head that does not take n_classes
            pass
    return build_head(head, hp)


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


def run_ablation(data: SplitData, name: str, modalities: list[str], head: str, params: dict[str, Any],
                 seeds: list[int], out_dir: Path) -> dict[str, Any]:
    """Fit ``head`` on ``modalities`` once per seed, evaluate on val (and labelled test), write the
    outputs listed in the module docstring and return the metrics dict (= ``metrics.json``)."""
    if not seeds:
        raise ValueError("run_ablation needs at least one seed")
    if not modalities:
        raise ValueError("run_ablation needs at least one modality")
    missing = [m for m in modalities if m not in data.X_train]
    if missing:
        raise KeyError(f"ablation {name!r}: modalities {missing} not in the data (have {sorted(data.X_train)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = data.select(list(modalities))
    classes = list(d.classes)
    params = dict(params or {})
    labelled_test = d.y_test is not None

    per_seed = []
    for seed in seeds:
        model = _build(head, params, seed, len(classes))
        t0 = time.perf_counter()
        model.fit(d.X_train, d.y_train, d.X_val, d.y_val)
        fit_s = time.perf_counter() - t0
        val = classification_metrics(d.y_val, model.predict_proba(d.X_val), classes)
        test = classification_metrics(d.y_test, model.predict_proba(d.X_test), classes) if labelled_test else None
        model_file = f"model_seed{seed}.pt"
        model.save(out_dir / model_file)
        refit = model.refit_params() if hasattr(model, "refit_params") else {}
        per_seed.append({
            "seed": int(seed), "best_epoch": getattr(model, "best_epoch_", None), "fit_seconds": round(fit_s, 3),
            "model": model_file, "refit_params": _jsonable(refit), "val": val, "test": test,
            "history": _jsonable(getattr(model, "history_", []) or []),
        })

    result: dict[str, Any] = {
        "name": name,
        "head": head,
        "modalities": list(modalities),
        "params": _jsonable(params),
        "seeds": [int(s) for s in seeds],
        "classes": classes,
        "n": {"train": int(len(d.y_train)), "val": int(len(d.y_val)),
              "test": int(next(iter(d.X_test.values())).shape[0])},
        "test_labelled": labelled_test,
        "val": aggregate([r["val"] for r in per_seed]),
        "test": aggregate([r["test"] for r in per_seed]) if labelled_test else None,
        "best_epochs": [r["best_epoch"] for r in per_seed],
        "fit_seconds": [r["fit_seconds"] for r in per_seed],
        "fit_seconds_total": round(sum(r["fit_seconds"] for r in per_seed), 3),
        "std": STD_NOTE,
        "confusion": CONFUSION_NOTE,
        "files": {"confusion": "confusion.png", "curve": "curve.png", "report": "report.md",
                  "confusion_test": "confusion_test.png" if labelled_test else None,
                  "models": [r["model"] for r in per_seed]},
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
        "per_seed": per_seed,
    }

    mods = "+".join(modalities)
    confusion_png(result["val"]["confusion_matrix_mean"], classes, out_dir / "confusion.png",
                  title=f"{name}: validation ({head}, {mods}; mean over {len(seeds)} seeds)")
    if labelled_test:
        confusion_png(result["test"]["confusion_matrix_mean"], classes, out_dir / "confusion_test.png",
                      title=f"{name}: test ({head}, {mods}; mean over {len(seeds)} seeds)")
    curve_png({r["seed"]: r["history"] for r in per_seed}, out_dir / "curve.png",
              title=f"{name}: {head} on {mods}", best_epochs={r["seed"]: r["best_epoch"] for r in per_seed})
    write_text(out_dir / "report.md", render_report(result))
    write_text(out_dir / "metrics.json", json.dumps(result, indent=1) + "\n")
    return result


def render_report(r: dict[str, Any]) -> str:
    """The Markdown report of one ablation (PNG links relative to the report)."""
    classes, seeds = r["classes"], r["seeds"]
    lines = [f"# Ablation `{r['name']}`", ""]
    lines += [
        f"- **Head:** `{r['head']}`",
        f"- **Modalities:** {', '.join(r['modalities'])}",
        f"- **Seeds:** {', '.join(map(str, seeds))}",
        f"- **Parameters:** `{json.dumps(r['params'], sort_keys=True)}`" if r["params"] else
        "- **Parameters:** head defaults",
        f"- **Data:** {r['n']['train']} train / {r['n']['val']} val / {r['n']['test']} test"
        + ("" if r["test_labelled"] else " (test unlabelled: no test metrics)"),
        f"- **Classes:** {', '.join(classes)}",
        f"- **Fit time:** {r['fit_seconds_total']:.1f} s in total "
        f"({', '.join(f'{s:.1f}' for s in r['fit_seconds'])} s per seed)",
        "",
        "Each seed trains on the training split; the validation split drives early stopping (and the head's "
        "internal choices), so validation scores are slightly optimistic. The test split is only predicted. "
        f"Values are mean ± {STD_NOTE}.",
        "",
        "## Scores",
        "",
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
    lines += ["Training curves (one line per seed; ★ the epoch whose weights were kept):", "",
              "![training curves](curve.png)", ""]
    lines += ["## Models", ""] + [f"- [`{m}`]({m})" for m in r["files"]["models"]] + [""]
    return "\n".join(lines)

"""Report figures (matplotlib, Agg backend), written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mmpipe.core.atomic import atomic_path  # noqa: E402

COLOURS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _run(key: Any) -> str:
    """A legend label: ``seed 3`` for an integer seed, else the key as it is (``fold 2``)."""
    return f"seed {key}" if isinstance(key, int) else str(key)


def save_figure(fig, path: str | Path) -> None:
    """Write ``fig`` as a PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def confusion_png(cm: Sequence[Sequence[float]], classes: Sequence[str], path: str | Path,
                  title: str = "Confusion matrix") -> None:
    """Cells show counts (one decimal if they are averages) and the row percentage; colours are
    row-normalised (recall per true class), so minority classes stay readable."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(classes)
    size = max(4.0, 1.1 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    integer = np.allclose(cm, np.round(cm))
    for i in range(k):
        for j in range(k):
            count = f"{int(round(cm[i, j]))}" if integer else f"{cm[i, j]:.1f}"
            ax.text(j, i, f"{count}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=9,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), labels=list(classes), rotation=30, ha="right")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    save_figure(fig, path)


def curve_kind(histories: dict[Any, list[dict[str, Any]]]) -> str:
    """What the heads' ``history_`` records hold: ``"epoch"`` (one per training epoch), ``"C"`` (one per
    candidate C of a search on validation) or ``"none"`` (nothing recorded)."""
    first = next((h[0] for h in histories.values() if h), {})
    return "epoch" if "epoch" in first else "C" if "C" in first else "none"


def curve_png(histories: dict[Any, list[dict[str, Any]]], path: str | Path, title: str = "Training curve",
              best_epochs: dict[Any, int | None] | None = None) -> None:
    """The figure of what each seed's fit did on validation (``histories``: seed -> the head's ``history_``).

    Epoch-trained heads: left, training loss (solid) and validation loss (dashed) per epoch; right, validation
    macro-F1 (regression heads: MAE) with the restored best epoch (``best_epochs``) marked. C-search heads:
    the validation score of each candidate C (log scale) with the chosen one (``chosen`` in the record) marked.
    One colour per seed. A head that recorded nothing gets a note instead."""
    kind = curve_kind(histories)
    if kind == "C":
        return _c_search_png(histories, path, title)
    key = "val_macro_f1"
    if any(h and "val_mae" in h[0] for h in histories.values()):
        key = "val_mae"
    label = "MAE" if key == "val_mae" else "macro-F1"
    fig, (ax_l, ax_f) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (seed, hist) in enumerate(histories.items()):
        if not hist:
            continue
        c = COLOURS[i % len(COLOURS)]
        ep = [h["epoch"] for h in hist]
        ax_l.plot(ep, [h["train_loss"] for h in hist], color=c, label=f"{_run(seed)} train")
        if "val_loss" in hist[0]:
            ax_l.plot(ep, [h["val_loss"] for h in hist], color=c, ls="--", label=f"{_run(seed)} val")
        if key in hist[0]:
            ax_f.plot(ep, [h[key] for h in hist], color=c, label=_run(seed))
            be = (best_epochs or {}).get(seed)
            if be:
                f1 = next((h[key] for h in hist if h["epoch"] == be), None)
                if f1 is not None:
                    ax_f.plot([be], [f1], marker="*", ms=12, color=c)
    if kind == "none":
        for ax in (ax_l, ax_f):
            ax.text(0.5, 0.5, "nothing recorded\n(no epochs, no choice on validation)", ha="center", va="center",
                    transform=ax.transAxes)
    ax_l.set_title("loss")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("loss (train: objective; val: " + ("MAE)" if key == "val_mae" else "NLL)"))
    ax_f.set_title(f"validation {label} (★ restored best epoch)")
    ax_f.set_xlabel("epoch")
    ax_f.set_ylabel(label)
    _finish(fig, (ax_l, ax_f), title, path)


def _c_search_png(histories: dict[Any, list[dict[str, Any]]], path: str | Path, title: str) -> None:
    key = "val_mae" if any(h and "val_mae" in h[0] for h in histories.values()) else "val_macro_f1"
    label = "MAE" if key == "val_mae" else "macro-F1"
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (seed, hist) in enumerate(histories.items()):
        if not hist:
            continue
        c = COLOURS[i % len(COLOURS)]
        ax.plot([h["C"] for h in hist], [h[key] for h in hist], color=c, marker="o", label=_run(seed))
        for h in hist:
            if h.get("chosen"):
                ax.plot([h["C"]], [h[key]], marker="*", ms=14, color=c)
    ax.set_xscale("log")
    cs = sorted({h["C"] for hist in histories.values() for h in hist})
    ax.set_xticks(cs, labels=[f"{c:g}" for c in cs])
    ax.minorticks_off()
    ax.set_title(f"validation {label} per candidate C (★ chosen)")
    ax.set_xlabel("C (log scale)")
    ax.set_ylabel(label)
    _finish(fig, (ax,), title, path)


def _finish(fig, axes, title: str, path: str | Path) -> None:
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def pareto_front(costs: Sequence[float], scores: Sequence[float], higher_is_better: bool = True) -> list[bool]:
    """Which points no other point beats on both axes (cost no higher, score no worse, one strictly better)."""
    s = [v if higher_is_better else -v for v in scores]
    return [not any((costs[j] <= costs[i] and s[j] >= s[i]) and (costs[j] < costs[i] or s[j] > s[i])
                    for j in range(len(s))) for i in range(len(s))]


def pareto_png(points: Sequence[dict[str, Any]], path: str | Path, score_label: str, higher_is_better: bool = True,
               title: str = "Score against cost") -> None:
    """Score against inference latency and against fit time, one dot per ablation, the Pareto front joined.
    ``points``: dicts with ``name``, ``score``, ``inference_ms_per_1000`` and ``fit_seconds_per_seed``."""
    axes_spec = (("inference_ms_per_1000", "inference ms per 1,000 samples (log)"),
                 ("fit_seconds_per_seed", "fit seconds per final model (log)"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, (key, xlabel) in zip(axes, axes_spec):
        pts = [p for p in points if p.get(key) and p.get("score") is not None]
        xs, ys = [max(float(p[key]), 1e-6) for p in pts], [float(p["score"]) for p in pts]
        front = pareto_front(xs, ys, higher_is_better)
        ax.scatter(xs, ys, c=[COLOURS[0] if f else "0.6" for f in front], s=28, zorder=3)
        order = sorted((x, y) for x, y, f in zip(xs, ys, front) if f)
        if order:
            ax.plot(*zip(*order), color=COLOURS[0], lw=1.2, drawstyle="steps-post", label="Pareto front")
        for x, y, f, p in zip(xs, ys, front, pts):
            if f:
                ax.annotate(p["name"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(score_label + ("" if higher_is_better else " (lower is better)"))
    _finish(fig, axes, title, path)

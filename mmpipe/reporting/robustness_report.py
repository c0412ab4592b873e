"""The robustness table (CSV), plot (score against missing rate and noise strength) and Markdown report, from the
per-ablation records of ``mmpipe.fusion.robustness``.

The most robust head is the run (ablation and training) with the best mean score over the missing rates (the
area under its curve, rates equally weighted), on the held-out rows; higher is better, or lower for MAE.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from mmpipe.core.atomic import write_text

LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1", "mae": "MAE"}
SPLITS = {"held_out": "held-out", "test": "test"}
COLUMNS = ("ablation", "head", "modalities", "training", "modality_dropout", "split", "corruption", "level", "mean",
           "std", "n_seeds", "metric")


def run_label(record: dict[str, Any], run: dict[str, Any]) -> str:
    return record["name"] if run["training"] == "as configured" else f"{record['name']} + {run['training']}"


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (ablation, training, split, corruption, level): mean and std over the mask seeds."""
    rows = []
    for r in records:
        split_name = r["evaluated_on"]  # cv (out-of-fold) or val
        for run in r["runs"]:
            for split in SPLITS:
                s = run.get(split)
                if not s:
                    continue
                base = {"ablation": r["name"], "head": r["head"], "modalities": "+".join(r["modalities"]),
                        "training": run["training"], "modality_dropout": run["modality_dropout"],
                        "split": split_name if split == "held_out" else "test", "metric": r["metric"]}
                rows.append({**base, "corruption": "clean", "level": "", "mean": s["clean"], "std": 0.0,
                             "n_seeds": 1})
                for m, v in s["removed"].items():
                    rows.append({**base, "corruption": "removed", "level": m, "mean": v, "std": 0.0, "n_seeds": 1})
                for kind, key in (("missing", "rate"), ("noise", "strength")):
                    for p in s[kind]:
                        rows.append({**base, "corruption": kind, "level": p[key], "mean": p["mean"], "std": p["std"],
                                     "n_seeds": len(p["scores"])})
    return rows


def table_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def ranked_runs(records: list[dict[str, Any]], split: str = "held_out") -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(record, run) pairs with ``split`` scores, the most robust first (mean over missing rates; ties: clean)."""
    pairs = [(r, run) for r in records for run in r["runs"] if run.get(split)]
    if not pairs:
        return []
    sign = 1.0 if pairs[0][0]["higher_is_better"] else -1.0
    return sorted(pairs, key=lambda p: (-sign * p[1][split]["auc_missing"], -sign * p[1][split]["clean"],
                                        run_label(*p)))


def robustness_png(records: list[dict[str, Any]], path: str | Path, title: str = "Robustness") -> None:
    """Score against missing rate (left) and noise strength (right), one colour per ablation, dashed: trained
    with modality dropout; bands: ± std over the mask seeds. A second row for the labelled test split."""
    from mmpipe.reporting.plots import COLOURS, save_figure, plt

    splits = [s for s in SPLITS if any(run.get(s) for r in records for run in r["runs"])]
    if not splits:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no ablation evaluated", ha="center", va="center")
        return save_figure(fig, path)
    fig, axes = plt.subplots(len(splits), 2, figsize=(12, 4.2 * len(splits)), squeeze=False)
    metric = LABELS.get(records[0]["metric"], records[0]["metric"]) if records else "score"
    where = {"cv": "out-of-fold", "val": "validation"}.get(records[0]["evaluated_on"], "held-out") if records else ""
    for row, split in zip(axes, splits):
        for i, r in enumerate(records):
            colour = COLOURS[i % len(COLOURS)]
            for run in r["runs"]:
                s = run.get(split)
                if not s:
                    continue
                style = "-" if run["training"] == "as configured" else "--"
                for ax, kind, key in ((row[0], "missing", "rate"), (row[1], "noise", "strength")):
                    x = [p[key] for p in s[kind]]
                    mean = [p["mean"] for p in s[kind]]
                    std = [p["std"] for p in s[kind]]
                    ax.plot(x, mean, style, marker="o", ms=3, color=colour, label=run_label(r, run))
                    ax.fill_between(x, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)],
                                    color=colour, alpha=0.15, linewidth=0)
        name = where if split == "held_out" else "test (final models)"
        row[0].set_xlabel("missing rate (each modality of each sample, independently)")
        row[1].set_xlabel("noise strength (× training std of each feature)")
        for ax, what in zip(row, ("missing modalities", "Gaussian noise")):
            ax.set_ylabel(f"{name} {metric}")
            ax.set_title(f"{what}, {name}")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _at(s: dict[str, Any], rate: float) -> float | None:
    return next((p["mean"] for p in s["missing"] if abs(p["rate"] - rate) < 1e-9), None)


def _ranking(records: list[dict[str, Any]], split: str, selected: str | None) -> list[str]:
    rates = records[0]["rates"]
    mid = min(rates, key=lambda r: abs(r - 0.5))
    lines = [f"| # | ablation | training | clean | without each modality | missing {mid:g} | missing {rates[-1]:g} | "
             "mean over rates | mean over noise > 0 |", "|---|---|---|---|---|---|---|---|---|"]
    for i, (r, run) in enumerate(ranked_runs(records, split), 1):
        s = run[split]
        removed = ", ".join(f"{m} {_f(v)}" for m, v in s["removed"].items())
        noise = [p["mean"] for p in s["noise"] if p["strength"] > 0]
        mark = " ✔ selected" if r["name"] == selected and run["training"] == "as configured" else ""
        lines.append(f"| {i} | `{r['name']}`{mark} | {run['training']} | {_f(s['clean'])} | {removed} | "
                     f"{_f(_at(s, mid))} | {_f(_at(s, rates[-1]))} | **{_f(s['auc_missing'])}** | "
                     f"{_f(sum(noise) / len(noise)) if noise else '—'} |")
    return lines


def _dropout_lines(records: list[dict[str, Any]], split: str) -> list[str]:
    pairs = [(r, r["runs"][0], r["runs"][1]) for r in records if len(r["runs"]) > 1 and r["runs"][1].get(split)]
    if not pairs:
        return []
    last = records[0]["rates"][-1]
    lines = [f"| ablation | clean: without → with | mean over rates: without → with | missing {last:g}: without → "
             "with | Δ mean over rates |", "|---|---|---|---|---|"]
    for r, a, b in pairs:
        sa, sb = a[split], b[split]
        lines.append(f"| `{r['name']}` ({b['training']}) | {_f(sa['clean'])} → {_f(sb['clean'])} | "
                     f"{_f(sa['auc_missing'])} → {_f(sb['auc_missing'])} | {_f(_at(sa, last))} → {_f(_at(sb, last))} | "
                     f"{sb['auc_missing'] - sa['auc_missing']:+.3f} |")
    return lines


def render(plan: dict[str, Any], records: list[dict[str, Any]], plot_name: str = "robustness.png") -> str:
    """The Markdown report (the plot linked by relative path)."""
    lines = ["# Robustness to missing and noisy modalities", ""]
    if not records:
        return "\n".join(lines + ["No ablation to evaluate (see the skipped ones below).", ""] + _skipped(plan))
    r0 = records[0]
    metric = LABELS.get(r0["metric"], r0["metric"])
    better = "higher" if r0["higher_is_better"] else "lower"
    selected = plan.get("selected")
    if r0["evaluated_on"] == "cv":
        how = (f"out-of-fold: the head is refitted on each of the {r0['n_folds']} folds of the first CV repeat (its "
               "training part, early stopping on an inner split of it, as the ablation's own CV) and scored on the "
               "corrupted held-out part, which that fit never saw; scores are means over the folds")
    else:
        how = ("validation: one fit on train (validation drives early stopping, so these scores are slightly "
               "optimistic), scored on the corrupted validation split")
    fill = "its mean over the fit's training rows" if r0["fill"] == "mean" else "zeros"
    lines += [
        "- **Evaluated:** " + ", ".join(f"`{r['name']}`" + (" (selected)" if r["name"] == selected else "")
                                         for r in records),
        f"- **Scored on:** {how}.",
        f"- **Metric:** {metric} ({better} is better), `selection.metric`.",
        f"- **Missing:** at rate r each sample's each modality is missing independently with probability r "
        f"(MultiBench-style, per modality; at high rates a sample can lose every modality); a missing vector is "
        f"replaced by {fill}. \"Without\" a modality: that modality missing for every sample.",
        f"- **Noise:** Gaussian, std = strength × each feature's training std, added to every modality; strengths "
        f"{', '.join(f'{x:g}' for x in r0['noise'])}.",
        f"- **Seeds:** masks and noise drawn with seeds {', '.join(map(str, r0['mask_seeds']))} (mean ± std over "
        "them; every rate thresholds the same draws, so a seed's curve is nested). Heads fitted with seed "
        f"{r0['fit_seed']}.",
        "",
    ]
    best = ranked_runs(records)
    if best:
        r, run = best[0]
        lines += [f"**Most robust head:** `{r['name']}` ({run['training']}), {metric} "
                  f"{_f(run['held_out']['auc_missing'])} "
                  f"on average over the missing rates {', '.join(f'{x:g}' for x in r0['rates'])} (clean "
                  f"{_f(run['held_out']['clean'])}). Rule: the best mean score over the missing rates (the area under "
                  "its curve, rates weighted equally); ties: the better clean score.", ""]
        configured = [p for p in best if p[1]["training"] == "as configured"]
        if configured and configured[0] is not best[0]:
            lines += ["Among the heads as configured (without added modality dropout): "
                      f"`{configured[0][0]['name']}`.", ""]
    split_name = "Out-of-fold" if r0["evaluated_on"] == "cv" else "Validation"
    lines += [f"## {split_name} scores", "", *_ranking(records, "held_out", selected), ""]
    drop = _dropout_lines(records, "held_out")
    if drop:
        md = next(run["modality_dropout"] for r in records for run in r["runs"][1:])
        lines += ["## What modality dropout buys", "",
                  f"Each neural fused head refitted with `modality_dropout: {md:g}` (during training each sample's "
                  "each modality is zeroed after standardisation, i.e. set to its training mean, with that "
                  "probability; never all of a sample's modalities):", "", *drop, ""]
    elif not r0.get("modality_dropout"):
        lines += ["Modality dropout is not compared (`robustness.modality_dropout` is off).", ""]
    elif not any(r.get("neural") and len(r["modalities"]) > 1 for r in records):
        lines += ["No neural fused head was evaluated, so modality dropout is not compared.", ""]
    if any(run.get("test") for r in records for run in r["runs"]):
        lines += ["## Test split (final models)", "",
                  "The saved final models (one per seed, mean over seeds; the modality-dropout runs refitted the same "
                  "way) on the corrupted labelled test split; corruption statistics from their training rows.", "",
                  *_ranking(records, "test", selected), ""]
        drop = _dropout_lines(records, "test")
        if drop:
            lines += [*drop, ""]
    lines += ["## Figure", "", "Score against missing rate and noise strength, one colour per ablation (dashed: "
              "trained with modality dropout), band ± std over the mask seeds:", "", f"![robustness]({plot_name})", ""]
    lines += _skipped(plan) + _consistency_lines(records)
    return "\n".join(lines)


def _skipped(plan: dict[str, Any]) -> list[str]:
    if not plan.get("skipped"):
        return []
    return ["## Not evaluated", "", *[f"- `{s['name']}`: {s['why']}" for s in plan["skipped"]], ""]


def _consistency_lines(records: list[dict[str, Any]]) -> list[str]:
    diffs = [(r["name"], r["runs"][0].get("consistency", {}).get("max_abs_diff")) for r in records]
    known = [d for _, d in diffs if d is not None]
    if not known:
        return []
    worst = max(known)
    how = "exactly (the very same fits)" if worst == 0 else f"up to {worst:.2g} (largest difference)"
    return ["## Check", "", f"The clean refits reproduce the held-out scores that {len(known)} ablation(s) recorded "
            f"for the same folds {how}.", ""]


def write_robustness(plan_path: Path, result_paths: list[Path], table: Path, plot: Path, md: Path) -> list[dict]:
    """Read the plan and the per-ablation records; write the table, plot and report. Returns the records."""
    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    records = [json.loads(Path(p).read_text(encoding="utf-8")) for p in result_paths]
    order = {n: i for i, n in enumerate(plan.get("ablations", []))}
    records.sort(key=lambda r: order.get(r["name"], len(order)))
    write_text(table, table_csv(table_rows(records)))
    robustness_png(records, plot, title="Robustness to missing and noisy modalities")
    write_text(md, render(plan, records, Path(plot).name))
    return records

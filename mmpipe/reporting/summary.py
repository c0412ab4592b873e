"""Summary across ablations: ranking by validation macro-F1, what each modality adds, selected vs svm.

Regression ablations (``task: regression``, e.g. CMU-MOSI scores) are ranked by validation MAE (lower is
better; ties: higher validation Corr) and their tables show Acc-2 (has-0 and non-0), F1 (both), Acc-7, MAE
and Corr. Every summary also shows the majority baseline (training majority class, or the training median
score for regression) from the ablations' ``metrics.json``.

The summary only says what its numbers support:

* test scores (and "test is the unbiased estimate") appear only when the test split is labelled;
* "Δ larger than both stds?" is answered only when at least one of the two has a spread over seeds; with zero
  spread (one seed, or deterministic heads such as ``logreg`` / ``svm``) it says the spread is unknown;
* a validation split too small to rank on (fewer than ``MIN_VAL_SAMPLES`` samples, or for classification
  fewer than ``MIN_VAL_PER_CLASS`` of some class) gets a warning at the top (``validation.too_small`` in
  ``summary.json``): at 40 samples one sample moves accuracy by 2.5 points, and in a class of 8 one sample
  moves that class's F1 (and so macro-F1) by several points: the size of the differences being ranked.
  The thresholds apply to whatever split ranks the ablations (a carved validation split, a layout's own
  dev set).

``run_digest`` gives the few lines to print at the end of a run (selected ablation, its score against the
``svm`` and majority baselines, where the predictions and the report are).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmpipe.core.atomic import write_text
from mmpipe.fusion.metrics import fmt_ms

METRICS = ("accuracy", "macro_f1", "weighted_f1")
LABELS = {"accuracy": "acc", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1"}
SELECTION_METRIC = "val_macro_f1"
BASELINE = "svm"
REG_METRICS = ("acc2_has0", "acc2_non0", "f1_has0", "f1_non0", "acc7", "mae", "corr")
REG_LABELS = {"acc2_has0": "Acc-2 has-0", "acc2_non0": "Acc-2 non-0", "f1_has0": "F1 has-0", "f1_non0": "F1 non-0",
              "acc7": "Acc-7", "acc5": "Acc-5", "mae": "MAE", "corr": "Corr"}
LOWER_IS_BETTER = {"mae", "log_loss"}
# Below these the validation split is too small to rank on (see the module docstring).
MIN_VAL_SAMPLES = 50
MIN_VAL_PER_CLASS = 10
NO_SPREAD = "unknown (no spread over seeds)"


class _Task:
    """What differs between classification and regression summaries."""

    def __init__(self, task: str, sel: str = "val", metric: str | None = None):
        self.task = task
        self.regression = task == "regression"
        self.metrics = REG_METRICS if self.regression else METRICS
        self.labels = REG_LABELS if self.regression else LABELS
        self.sel = sel  # the split that ranks: "cv" (cross-validation folds) or "val"
        self.select_metric = metric or ("mae" if self.regression else "macro_f1")
        if (self.select_metric == "mae") != self.regression:
            raise ValueError(f"selection.metric {self.select_metric!r} does not apply to task {task!r}")
        self.tie_metric = "corr" if self.regression else "accuracy"
        self.selection_metric = f"{sel}_{self.select_metric}"
        self.where = "cross-validated" if sel == "cv" else "validation"
        self.selection_words = f"{self.where} {self.labels.get(self.select_metric, self.select_metric)}"
        # the metric of the "what each modality adds" table (higher is better)
        self.modality_metric = "acc2_non0" if self.regression else "macro_f1"

    def sort_key(self, e: dict[str, Any]) -> tuple:
        main = _score(e, self.sel, self.select_metric)
        tie = _score(e, self.sel, self.tie_metric)
        main = float("inf") if main is None else (main if self.select_metric in LOWER_IS_BETTER else -main)
        return (main, -(tie or 0.0), e["name"])


def _load(path: Path) -> dict[str, Any]:
    r = json.loads(Path(path).read_text(encoding="utf-8"))
    for key in ("name", "head", "modalities", "val"):
        if key not in r:
            raise ValueError(f"{path}: not an ablation metrics.json (no {key!r})")
    return r


def _pick(agg: dict[str, Any] | None) -> dict[str, dict[str, float]] | None:
    if not agg:
        return None
    return {m: agg[m] for m in (*METRICS, "log_loss", *REG_METRICS, "acc5") if m in agg}


def _score(e: dict[str, Any], split: str = "val", metric: str = "macro_f1") -> float | None:
    s = e.get(split)
    return s[metric]["mean"] if s and metric in s else None


def _modkey(mods: list[str]) -> str:
    return "+".join(mods)


def _support(agg: dict[str, Any] | None) -> dict[str, int] | None:
    """Samples per class of a split (classification aggregates carry them in ``per_class``)."""
    pc = (agg or {}).get("per_class")
    return {c: int(v["support"]) for c, v in pc.items()} if pc else None


def validation_check(entries: list[dict[str, Any]], regression: bool = False) -> dict[str, Any]:
    """Whether the validation split that ranks ``entries`` is big enough to rank on.

    Uses the smallest validation split over the entries (they normally share one). Returns ``n`` (None when
    the metrics do not say), ``per_class`` (classification), ``too_small``, ``reasons`` and the thresholds.
    """
    ns = [e["n"]["val"] for e in entries if isinstance(e.get("n"), dict) and e["n"].get("val") is not None]
    n = min(ns) if ns else None
    support = None
    if not regression:
        sups = [e["val_support"] for e in entries if e.get("val_support")]
        if sups:
            support = {c: min(s.get(c, 0) for s in sups) for c in sups[0]}
            if n is None:
                n = sum(support.values())
    reasons = []
    if n is not None and n < MIN_VAL_SAMPLES:
        reasons.append(f"{n} samples, fewer than {MIN_VAL_SAMPLES}")
    small = {c: k for c, k in (support or {}).items() if k < MIN_VAL_PER_CLASS}
    if small:
        reasons.append(", ".join(f"{c}: {k}" for c, k in small.items()) + f", fewer than {MIN_VAL_PER_CLASS} per class")
    return {"n": n, "per_class": support, "too_small": bool(reasons), "reasons": reasons,
            "min_samples": MIN_VAL_SAMPLES, "min_per_class": None if regression else MIN_VAL_PER_CLASS}


def summarize(metrics_files: list[Path], out_md: Path, out_json: Path, select: str | None = None,
              metric: str | None = None, select_among: list[list[str]] | None = None,
              out_cost_png: Path | None = None) -> dict[str, Any]:
    """Rank the ablations whose ``metrics.json`` files are given; write ``out_md`` and ``out_json``.

    Ranking and selection use ``metric`` (default macro-F1, or MAE for regression): its mean over the
    cross-validation folds when the ablations were cross-validated, else over seeds on the validation split
    (ties: higher accuracy (Corr), then name). ``select`` forces the selected ablation by name; ``select_among``
    limits the choice to ablations on those modality sets (the rest are still ranked). Cross-validated
    ablations are compared with the svm baseline fold by fold (``cv.paired_comparison``). ``out_cost_png``: the
    score against inference latency and fit time, with the Pareto front (``plots.pareto_png``).
    """
    if not metrics_files:
        raise ValueError("summarize needs at least one metrics.json")
    entries = []
    seen: dict[str, Path] = {}
    tasks: set[str] = set()
    baseline = None
    for f in metrics_files:
        r = _load(Path(f))
        tasks.add(r.get("task", "classification"))
        if baseline is None and r.get("majority_baseline"):
            baseline = r["majority_baseline"]
        if r["name"] in seen:
            raise ValueError(f"ablation name {r['name']!r} appears twice: {seen[r['name']]} and {f}")
        seen[r["name"]] = Path(f)
        entries.append({
            "name": r["name"], "modalities": list(r["modalities"]), "head": r["head"], "params": r.get("params", {}),
            "seeds": r.get("seeds"), "val": _pick(r["val"]), "cv": _pick(r.get("cv")), "test": _pick(r.get("test")),
            "context": r.get("context", "none"), "metrics_file": str(f),
            "n": r.get("n"), "val_support": _support(r.get("cv") or r["val"]),
            "fold_scores": [dict(fl["scores"], repeat=fl["repeat"], fold=fl["fold"]) for fl in r.get("folds") or []],
            "cost": r.get("cost"), "ensemble": r.get("ensemble"),
        })
    if len(tasks) > 1:
        raise ValueError(f"the ablations mix tasks {sorted(tasks)}; summarise one task at a time")
    methods = {"cv" if e["cv"] else "val" for e in entries}
    if len(methods) > 1:
        raise ValueError("some ablations were cross-validated and some were not; rerun them with one selection.method")
    tk = _Task(tasks.pop(), methods.pop(), metric)
    entries.sort(key=tk.sort_key)
    for i, e in enumerate(entries, 1):
        e["rank"] = i
    by_name = {e["name"]: e for e in entries}
    if select is not None:
        if select not in by_name:
            raise KeyError(f"select={select!r} is not one of the ablations: {sorted(by_name)}")
        selected = by_name[select]
    else:
        allowed = None if select_among is None else {frozenset(m) for m in select_among}
        candidates = [e for e in entries if allowed is None or frozenset(e["modalities"]) in allowed]
        if not candidates:
            raise ValueError(f"predict.select_among {select_among} matches no ablation; the ablations use "
                             f"{sorted({'+'.join(e['modalities']) for e in entries})}")
        selected = candidates[0]
    comparison = _baseline_comparison(selected, entries, tk)
    validation = validation_check(entries, tk.regression) if tk.sel == "val" else None
    summary = {"ablations": entries, "selected": selected["name"], "selection_metric": tk.selection_metric,
               "selected_by": "config (select)" if select is not None else f"best {tk.selection_words} mean"
               + (" (lower is better)" if tk.select_metric in LOWER_IS_BETTER else "")
               + (" among " + ", ".join("+".join(m) for m in select_among) if select_among and select is None else ""),
               "selection": {"split": tk.sel, "metric": tk.select_metric},
               "baseline_comparison": comparison, "task": tk.task, "majority_baseline": baseline,
               "test_labelled": any(e["test"] for e in entries), "validation": validation}
    write_text(out_json, json.dumps(summary, indent=1) + "\n")
    among = ", ".join("+".join(m) for m in select_among) if select_among and select is None else ""
    md = _render(entries, selected, comparison, select is not None, Path(out_md), tk, baseline, validation, among)
    costed = [e for e in entries if e.get("cost")]
    if costed:
        md += _cost_section(costed, tk, Path(out_md), out_cost_png)
        if out_cost_png is not None:
            from mmpipe.reporting.plots import pareto_png


            higher = tk.select_metric not in LOWER_IS_BETTER
            pareto_png([{"name": e["name"], "score": _score(e, tk.sel, tk.select_metric), **e["cost"]} for e in costed],
                       out_cost_png, tk.selection_words, higher, title="Cost of each ablation (final models)")
    write_text(out_md, md)
    return summary


def _cost_section(entries: list[dict[str, Any]], tk: _Task, out_md: Path, png: Path | None) -> str:
    """The cost table (ranking order) and the Pareto figure's link."""
    from mmpipe.reporting.plots import pareto_front

    higher = tk.select_metric not in LOWER_IS_BETTER
    scores = [_score(e, tk.sel, tk.select_metric) for e in entries]
    lat = [e["cost"]["inference_ms_per_1000"] for e in entries]
    front = pareto_front(lat, [v if v is not None else (-1e9 if higher else 1e9) for v in scores], higher)
    lines = ["", "## Cost", "",
             "Parameters of the final model, fit time per final model (refit on all labelled samples), the ablation "
             "job's peak memory (its process, all seeds and folds) and the time to predict 1,000 samples on this "
             "machine. ◆: on the Pareto front of score against inference time (no other ablation is both faster "
             "and better).", "",
             f"| rank | ablation | {tk.selection_words} | parameters | fit s per model | peak MB | ms per 1,000 | |",
             "|---|---|---|---|---|---|---|---|"]
    for e, sc, f in zip(entries, scores, front):
        c = e["cost"]
        params = "—" if c.get("parameters") is None else f"{c['parameters']:,}"
        lines.append(f"| {e['rank']} | {e['name']} | {'—' if sc is None else f'{sc:.3f}'} | {params} | "
                     f"{c['fit_seconds_per_seed']:.2f} | {c['peak_rss_mb']:.0f} | {c['inference_ms_per_1000']:.1f} | "
                     f"{'◆' if f else ''} |")
    if png is not None:
        lines += ["", f"![score against cost]({_rel(str(png), out_md)})"]
    return "\n".join(lines) + "\n"


def _baseline_comparison(sel: dict[str, Any], entries: list[dict[str, Any]], tk: _Task | None = None) -> dict[str, Any]:
    """Selected vs the best ``svm`` ablation on the same modality set."""
    same = [e for e in entries if e["head"] == BASELINE and set(e["modalities"]) == set(sel["modalities"])]
    out: dict[str, Any] = {"baseline_head": BASELINE, "modalities": sel["modalities"], "baseline": None}
    if sel["head"] == BASELINE:
        out["note"] = "the selected ablation is the svm baseline itself"
        out["baseline"] = sel["name"]
        return out
    if not same:
        out["note"] = f"no {BASELINE} ablation on {_modkey(sel['modalities'])} to compare with"
        return out
    base = same[0]  # entries are ranked, so this is the best svm on these modalities
    out["baseline"] = base["name"]
    if tk is not None and tk.sel == "cv":
        out["paired"] = paired_folds(sel, base, tk)
    for split in ((tk.sel if tk else "val"), "test"):
        for m in (tk.metrics if tk else METRICS):
            a, b = _score(sel, split, m), _score(base, split, m)
            if a is not None and b is not None:
                out[f"{split}_{m}_delta"] = a - b
                sa, sb = sel[split][m]["std"], base[split][m]["std"]
                # None: neither has a spread over seeds, so the stds say nothing about the difference
                out[f"{split}_{m}_delta_exceeds_std"] = abs(a - b) > max(sa, sb) if max(sa, sb) > 0 else None
    return out


def paired_folds(a: dict[str, Any], b: dict[str, Any], tk: _Task) -> dict[str, Any]:
    """``a`` vs ``b`` fold by fold on every metric (the same folds: the shared ``folds.parquet``)."""
    from mmpipe.fusion.cv import paired_comparison

    fa = {(f["repeat"], f["fold"]): f for f in a["fold_scores"]}
    fb = {(f["repeat"], f["fold"]): f for f in b["fold_scores"]}
    keys = sorted(set(fa) & set(fb))
    n = a.get("n") or {}
    out: dict[str, Any] = {"folds": len(keys)}
    for m in tk.metrics:
        if keys and all(m in fa[k] and m in fb[k] for k in keys):
            out[m] = paired_comparison([fa[k][m] for k in keys], [fb[k][m] for k in keys], n.get("fold_fit", 0),
                                       n.get("fold_held_out", 0), lower_is_better=m in LOWER_IS_BETTER)
    return out


def _rel(path: str, out_md: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out_md.resolve().parent))
    except ValueError:
        return str(path)


def _baseline_row(baseline: dict[str, Any] | None, tk: _Task, splits: tuple[str, ...], n_lead: int) -> str | None:
    """A table row for the majority baseline (``n_lead`` cells before the metric columns)."""
    if not baseline:
        return None
    pred = f"{baseline['prediction']:.2f}" if tk.regression else f"`{baseline['prediction']}`"
    lead = ["—", f"*majority baseline* ({baseline['rule']}: {pred})"] + ["—"] * (n_lead - 2)
    cells = []
    for split in splits:
        b = baseline.get(split) or {}
        cells += ["—" if b.get(m) is None else f"{b[m]:.3f}" for m in tk.metrics]
    return "| " + " | ".join(lead + cells) + " |"


def _validation_lines(v: dict[str, Any] | None, regression: bool) -> list[str]:
    """The warning block for a validation split too small to rank on (nothing when it is big enough)."""
    if not v or not v.get("too_small"):
        return []
    need = f"{v['min_samples']} samples" + ("" if regression else f" (or {v['min_per_class']} of a class)")
    return [f"> ⚠️ **Validation split too small to rank on:** {'; '.join(v['reasons'])}. With fewer than {need}, "
            "one sample moves the scores about as much as the differences in this ranking, so the order (and the "
            "selected ablation) is mostly noise. Add samples or raise `split.val_fraction` before trusting it.", ""]


def _ensemble_sentence(sel: dict[str, Any], tk: _Task) -> str:
    """What the predictions themselves score: the mean of the selected ablation's seeds (with 2+ seeds)."""
    ens = sel.get("ensemble") or {}
    m = tk.select_metric
    words = {"test": "test", "val": "validation"}
    scores = [f"{words[sp]} {ens[sp][m]:.3f}" for sp in ("test", "val") if (ens.get(sp) or {}).get(m) is not None]
    if not scores:
        return ""
    return (f" Its predictions average its {len(sel['seeds'])} seeds' outputs (with `predict.refit: false`, the "
            f"default); that seed ensemble scores {tk.labels.get(m, m)} {', '.join(scores)}.")


def _render(entries: list[dict[str, Any]], sel: dict[str, Any], cmp: dict[str, Any], forced: bool,
            out_md: Path, tk: _Task | None = None, baseline: dict[str, Any] | None = None,
            validation: dict[str, Any] | None = None, among: str = "") -> str:
    tk = tk or _Task("classification")
    M, L = tk.metrics, tk.labels
    has_test = any(e["test"] for e in entries)
    best = entries[0]
    words = tk.selection_words
    seed_counts = {len(e["seeds"]) for e in entries if e.get("seeds")}
    spread = ("one seed each, so there is no spread: ± 0" if seed_counts == {1}
              else "± is the sample std over seeds, 0 for heads that do not depend on the seed")
    n_val = (validation or {}).get("n")
    sample_note = (f" One validation sample is {1 / n_val:.3f} of {'Acc-2' if tk.regression else 'accuracy'} "
                   f"here ({n_val} samples); the ± does not include that sampling noise." if n_val else "")
    if tk.sel == "cv":
        folds = max((len(e.get("fold_scores") or []) for e in entries), default=0)
        spread = f"± is the sample std over the {folds} folds"
        sample_note = ""
        honesty = ("Every fold's held-out samples were only predicted (early stopping used an inner split of the "
                   "fold's training part), so the cross-validated scores are honest estimates; all heads saw the "
                   "same folds." + (" Test scores come from the final models, refitted on all labelled samples."
                                    if has_test else " The test split has no labels."))
    elif has_test:
        honesty = "The validation split also drove early stopping, so test scores are the unbiased ones."
    else:
        honesty = ("The test split has no labels, so there are no test scores; validation also drove early "
                   "stopping and each head's own choices, so its scores are somewhat optimistic.")
    lines = ["# Ablation summary", "",
             f"{len(entries)} ablations ranked by **{words}** (mean over {'folds' if tk.sel == 'cv' else 'seeds'}"
             + ("; lower is better, ties: higher validation Corr" if tk.regression else "")
             + f"; {spread}). {honesty}{sample_note}", ""]
    lines += _validation_lines(validation, tk.regression)
    if tk.regression:
        lines += ["Regression on the sentiment score; binary and 7-class metrics are derived from the predicted "
                  "score as MMSA does: Acc-2 **has-0** = negative (< 0) vs non-negative (>= 0) on every sample, "
                  "Acc-2 **non-0** = negative vs positive without the samples whose true score is 0; F1 is "
                  "weighted; Acc-7 rounds the score clipped to [-3, 3]. Validation carved from the training data "
                  "can be optimistic when the features were themselves learnt on the training data"
                  + (": read the test table for the comparison." if has_test else "."), ""]
    lines += [f"**Selected: `{sel['name']}`** ({sel['head']} on {_modkey(sel['modalities'])}) — "
              + ("chosen in the config (`select`)." if forced else f"best {words}"
                 + (f" among the ablations on {among} (`predict.select_among`)." if among else "."))
              + ("" if sel is best or not (forced or among) else f" The best by {words} is `{best['name']}`.")
              + _ensemble_sentence(sel, tk), "", "## Ranking", ""]

    def link(e):
        mark = " ★ best" if e is best else ""
        mark += " ✔ selected" if e is sel and (forced or e is not best) else ""
        target = _rel(str(Path(e['metrics_file']).parent / 'report.md'), out_md)
        return f"**[{e['name']}]({target})**{mark}" if e is best else f"[{e['name']}]({target}){mark}"

    def table(splits: tuple[str, ...]) -> list[str]:
        header = "| rank | ablation | modalities | head | " + " | ".join(
            f"{sp} {L[m]}" for sp in splits for m in M)
        out = [header + " |", "|---|---|---|---|" + "---|" * (len(M) * len(splits))]
        for e in entries:
            row = f"| {e['rank']} | {link(e)} | {_modkey(e['modalities'])} | {e['head']} | " + " | ".join(
                fmt_ms((e[sp] or {}).get(m)) for sp in splits for m in M)
            out.append(row + " |")
        brow = _baseline_row(baseline, tk, splits, 4)
        if brow:
            out.append(brow)
        return out

    if tk.regression:
        lines += table((tk.sel,))
        if has_test:
            lines += ["", "## Test scores", "",
                      "The test split, reported once (same order as the ranking; mean ± sample std over seeds).", ""]
            lines += table(("test",))
    else:
        lines += table((tk.sel, "test") if has_test else (tk.sel,))

    # what each modality adds: per head (and parameter set), one column per modality set
    mm = tk.modality_metric
    mname = L.get(mm, mm) if tk.regression else "macro-F1"
    lines += ["", "## What each modality adds", "",
              f"{tk.where.capitalize()} {mname} per head and modality set" + (f" (test {mname} in brackets)" if has_test else "")
              + "; Δ is the best fused set minus the best single modality.", ""]
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for e in entries:
        key = (e["head"], json.dumps(e["params"], sort_keys=True))
        cell = groups.setdefault(key, {})
        mk = _modkey(sorted(e["modalities"]))
        if mk not in cell or (_score(e, tk.sel, mm) or 0.0) > (_score(cell[mk], tk.sel, mm) or 0.0):
            cell[mk] = e
    all_sets = sorted({k for g in groups.values() for k in g}, key=lambda s: (s.count("+"), s))
    heads_with_many = {h for h, _ in groups if sum(1 for hh, _ in groups if hh == h) > 1}
    lines += ["| head | " + " | ".join(all_sets) + " | Δ fused − best single |",
              "|---|" + "---|" * (len(all_sets) + 1)]
    for (head, pj), cell in sorted(groups.items()):
        label = head if head not in heads_with_many else f"{head} `{pj}`"
        vals = []
        for s in all_sets:
            e = cell.get(s)
            if e is None or _score(e, tk.sel, mm) is None:
                vals.append("—")
            else:
                t = _score(e, "test", mm)
                vals.append(f"{_score(e, tk.sel, mm):.3f}" + (f" ({t:.3f})" if t is not None else ""))
        singles = [_score(e, tk.sel, mm) for s, e in cell.items() if "+" not in s and _score(e, tk.sel, mm) is not None]
        fused = [_score(e, tk.sel, mm) for s, e in cell.items() if "+" in s and _score(e, tk.sel, mm) is not None]
        delta = f"{max(fused) - max(singles):+.3f}" if singles and fused else "—"
        lines.append(f"| {label} | " + " | ".join(vals) + f" | {delta} |")

    lines += ["", f"## Selected vs the `{BASELINE}` baseline", ""]
    if cmp.get("note"):
        lines.append(cmp["note"] + ".")
    elif cmp.get("paired"):
        lines += _paired_lines(sel, next(e for e in entries if e["name"] == cmp["baseline"]), cmp, tk)
    else:
        base = next(e for e in entries if e["name"] == cmp["baseline"])
        lines += [f"Same modalities ({_modkey(sel['modalities'])}): `{sel['name']}` vs `{base['name']}`.", "",
                  "| split | metric | selected | svm | Δ | Δ larger than both stds? |", "|---|---|---|---|---|---|"]
        no_spread = False
        for split in (tk.sel, "test"):
            for m in M:
                if f"{split}_{m}_delta" in cmp:
                    ex = cmp[f"{split}_{m}_delta_exceeds_std"]
                    no_spread |= ex is None
                    lines.append(f"| {split} | {L[m]} | {fmt_ms(sel[split][m])} | {fmt_ms(base[split][m])} | "
                                 f"{cmp[f'{split}_{m}_delta']:+.3f} | "
                                 f"{NO_SPREAD if ex is None else ('yes' if ex else 'no')} |")
        if no_spread:
            lines += ["", "Where both stds are 0 (one seed, or heads that do not depend on the seed) the seeds say "
                      "nothing about which differences are meaningful; compare Δ with the worth of one validation "
                      "sample instead."]
        sm = tk.select_metric
        d = cmp.get(f"{tk.sel}_{sm}_delta")
        if d is not None:
            wins = (lambda x: x < 0) if sm in LOWER_IS_BETTER else (lambda x: x > 0)
            sname = L.get(sm, sm)
            verdict = ("beats" if wins(d) else "does not beat") + f" the svm baseline on {tk.where} {sname}"
            t = cmp.get(f"test_{sm}_delta")
            if t is not None:
                verdict += f", and {'beats' if wins(t) else 'does not beat'} it on test {sname} ({t:+.3f})"
            elif not forced:
                verdict += " (the split it was selected on; no labelled test split confirms it)"
            lines += ["", f"The selected head {verdict}."]
    lines.append("")
    return "\n".join(lines)


def _paired_lines(sel: dict[str, Any], base: dict[str, Any], cmp: dict[str, Any], tk: _Task) -> list[str]:
    """The fold-by-fold comparison of the selected ablation with the svm baseline."""
    pr, L = cmp["paired"], tk.labels
    lines = [f"Same modalities ({_modkey(sel['modalities'])}) and the same {pr['folds']} folds: `{sel['name']}` vs "
             f"`{base['name']}`. Δ is selected − svm per fold (mean ± std over folds); p is the two-sided "
             "Nadeau-Bengio corrected resampled t-test, which allows for the overlap of the folds' training sets.", "",
             "| metric | selected | svm | Δ per fold | folds won / tied / lost | p |", "|---|---|---|---|---|---|"]
    for m in tk.metrics:
        c = pr.get(m)
        if not c:
            continue
        p = "—" if c["p"] is None else f"{c['p']:.3g}"
        lines.append(f"| {L[m]} | {fmt_ms(sel['cv'][m])} | {fmt_ms(base['cv'][m])} | {c['delta_mean']:+.3f} ± "
                     f"{c['delta_std']:.3f} | {c['wins']} / {c['ties']} / {c['losses']} | {p} |")
    sm = tk.select_metric
    if (sel.get("test") or {}).get(sm) and (base.get("test") or {}).get(sm):
        lines += ["", f"On the labelled test split ({L.get(sm, sm)}, mean over seeds): selected "
                  f"{fmt_ms(sel['test'][sm])}, svm {fmt_ms(base['test'][sm])}."]
    c = pr.get(sm)
    if c:
        better = c["delta_mean"] < 0 if sm in LOWER_IS_BETTER else c["delta_mean"] > 0
        sure = c["p"] is not None and c["p"] < 0.05
        lines += ["", f"The selected head {'beats' if better else 'does not beat'} the svm baseline on cross-validated "
                  f"{L.get(sm, sm)} ({c['delta_mean']:+.3f}, {c['wins']} of {c['n_folds']} folds)"
                  + (f"; the difference is {'' if sure else 'not '}significant at p < 0.05." if c["p"] is not None
                     else ".")]
    return lines


def run_digest(summary_json_path: str | Path, predictions_path: str | Path | None = None,
               report_path: str | Path | None = None) -> list[str]:
    """A few short lines for the end of a run (e.g. Snakemake's ``onsuccess``): the selected ablation, its
    validation score (mean ± std over seeds) against the ``svm`` baseline on the same modalities and the
    majority baseline, a warning when the validation split is too small to rank on, and where the
    predictions and the report are. Returns [] when ``summary_json_path`` does not exist (a run that stopped
    before the summary, e.g. ``snakemake features``); a path that does not exist is marked ``(not written)``.
    """
    path = Path(summary_json_path)
    if not path.is_file():
        return []
    s = json.loads(path.read_text(encoding="utf-8"))
    sel_info = s.get("selection") or {}
    tk = _Task(s.get("task", "classification"), sel_info.get("split", "val"), sel_info.get("metric"))
    by_name = {e["name"]: e for e in s["ablations"]}
    sel = by_name[s["selected"]]
    m = tk.select_metric
    mname = tk.selection_words
    how = "set in the config" if str(s.get("selected_by", "")).startswith("config") else f"best {tk.selection_words}"
    lines = [f"Selected: {sel['name']} ({sel['head']} on {_modkey(sel['modalities'])}), {how} "
             f"of {len(by_name)} ablations."]
    parts = [f"{mname[0].upper()}{mname[1:]} {fmt_ms((sel.get(tk.sel) or {}).get(m))}"]
    test = (sel.get("test") or {}).get(m) if s.get("test_labelled", bool(sel.get("test"))) else None
    if test:
        ens = ((sel.get("ensemble") or {}).get("test") or {}).get(m)
        parts[0] += f" (test {fmt_ms(test)}" + ("" if ens is None else f"; seed ensemble {ens:.3f}") + ")"
    cmp = s.get("baseline_comparison") or {}
    base = by_name.get(cmp.get("baseline") or "")
    if base is sel:
        parts.append(f"it is the {BASELINE} baseline itself")
    elif base is not None:
        parts.append(f"{BASELINE} baseline {fmt_ms((base.get(tk.sel) or {}).get(m))}")
    else:
        parts.append(f"no {BASELINE} baseline on {_modkey(sel['modalities'])}")
    maj = ((s.get("majority_baseline") or {}).get("val") or {}).get(m)
    if maj is not None:
        parts.append(f"majority baseline {maj:.3f}")
    lines.append("; ".join(parts) + ".")
    paired = (cmp.get("paired") or {}).get(m)
    if paired:
        p = "" if paired["p"] is None else f", p = {paired['p']:.2g}"
        lines.append(f"Paired on the same folds: {paired['delta_mean']:+.3f} against the {BASELINE} baseline, "
                     f"better in {paired['wins']} of {paired['n_folds']} folds{p}.")
    v = s.get("validation") or {}
    if v.get("too_small"):
        few = {c: k for c, k in (v.get("per_class") or {}).items() if k < (v.get("min_per_class") or 0)}
        what = [f"{v['n']} samples"] + ([", ".join(f"{c}: {k}" for c, k in few.items())] if few else [])
        lines.append(f"Warning: validation split too small to rank on ({'; '.join(what)}); see the report.")
    for what, p in (("Predictions", predictions_path), ("Report", report_path)):
        if p is not None:
            lines.append(f"{what}: {p}" + ("" if Path(p).exists() else " (not written)"))
    return lines

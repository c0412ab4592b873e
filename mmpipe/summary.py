"""Summary across ablations: ranking by validation macro-F1, what each modality adds, selected vs svm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmpipe.atomic import write_text
from mmpipe.metrics import fmt_ms

METRICS = ("accuracy", "macro_f1", "weighted_f1")
LABELS = {"accuracy": "acc", "macro_f1": "macro-F1", "weighted_f1": "weighted-F1"}
SELECTION_METRIC = "val_macro_f1"
BASELINE = "svm"


def _load(path: Path) -> dict[str, Any]:
    r = json.loads(Path(path).read_text(encoding="utf-8"))
    for key in ("name", "head", "modalities", "val"):
        if key not in r:
            raise ValueError(f"{path}: not an ablation metrics.json (no {key!r})")
    return r


def _pick(agg: dict[str, Any] | None) -> dict[str, dict[str, float]] | None:
    if not agg:
        return None
    return {m: agg[m] for m in (*METRICS, "log_loss") if m in agg}


def _score(e: dict[str, Any], split: str = "val", metric: str = "macro_f1") -> float | None:
    s = e.get(split)
    return s[metric]["mean"] if s and metric in s else None


def _modkey(mods: list[str]) -> str:
    return "+".join(mods)


def summarize(metrics_files: list[Path], out_md: Path, out_json: Path, select: str | None = None) -> dict[str, Any]:
    """Rank the ablations whose ``metrics.json`` files are given; write ``out_md`` and ``out_json``.

    Ranking and selection use the validation macro-F1 mean over seeds (ties: higher val accuracy,
    then name). ``select`` forces the selected ablation by name.
    """
    if not metrics_files:
        raise ValueError("summarize needs at least one metrics.json")
    entries = []
    seen: dict[str, Path] = {}
    for f in metrics_files:
        r = _load(Path(f))
        if r["name"] in seen:
            raise ValueError(f"ablation name {r['name']!r} appears twice: {seen[r['name']]} and {f}")
        seen[r["name"]] = Path(f)
        entries.append({
            "name": r["name"], "modalities": list(r["modalities"]), "head": r["head"], "params": r.get("params", {}),
            "seeds": r.get("seeds"), "val": _pick(r["val"]), "test": _pick(r.get("test")),
            "metrics_file": str(f),
        })
    entries.sort(key=lambda e: (-_score(e), -(_score(e, "val", "accuracy") or 0.0), e["name"]))
    for i, e in enumerate(entries, 1):
        e["rank"] = i
    by_name = {e["name"]: e for e in entries}
    if select is not None:
        if select not in by_name:
            raise KeyError(f"select={select!r} is not one of the ablations: {sorted(by_name)}")
        selected = by_name[select]
    else:
        selected = entries[0]
    comparison = _baseline_comparison(selected, entries)
    summary = {"ablations": entries, "selected": selected["name"], "selection_metric": SELECTION_METRIC,
               "selected_by": "config (select)" if select is not None else "best validation macro-F1 mean",
               "baseline_comparison": comparison}
    write_text(out_json, json.dumps(summary, indent=1) + "\n")
    write_text(out_md, _render(entries, selected, comparison, select is not None, Path(out_md)))
    return summary


def _baseline_comparison(sel: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
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
    for split in ("val", "test"):
        for m in METRICS:
            a, b = _score(sel, split, m), _score(base, split, m)
            if a is not None and b is not None:
                out[f"{split}_{m}_delta"] = a - b
                sa, sb = sel[split][m]["std"], base[split][m]["std"]
                out[f"{split}_{m}_delta_exceeds_std"] = abs(a - b) > max(sa, sb)
    return out


def _rel(path: str, out_md: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out_md.resolve().parent))
    except ValueError:
        return str(path)


def _render(entries: list[dict[str, Any]], sel: dict[str, Any], cmp: dict[str, Any], forced: bool,
            out_md: Path) -> str:
    has_test = any(e["test"] for e in entries)
    best = entries[0]
    lines = ["# Ablation summary", "",
             f"{len(entries)} ablations ranked by **validation macro-F1** (mean over seeds; ± is the sample std over "
             "seeds). The validation split also drove early stopping, so test scores are the unbiased ones.", "",
             f"**Selected: `{sel['name']}`** ({sel['head']} on {_modkey(sel['modalities'])}) — "
             + ("chosen in the config (`select`)." if forced else "best validation macro-F1.")
             + ("" if sel is best or not forced else f" The best by validation macro-F1 is `{best['name']}`."), "",
             "## Ranking", ""]
    header = "| rank | ablation | modalities | head | " + " | ".join(f"val {LABELS[m]}" for m in METRICS)
    sep = "|---|---|---|---|" + "---|" * len(METRICS)
    if has_test:
        header += " | " + " | ".join(f"test {LABELS[m]}" for m in METRICS)
        sep += "---|" * len(METRICS)
    lines += [header + " |", sep]
    for e in entries:
        mark = " ★ best" if e is best else ""
        mark += " ✔ selected" if e is sel and (forced or e is not best) else ""
        name = f"**[{e['name']}]({_rel(str(Path(e['metrics_file']).parent / 'report.md'), out_md)})**{mark}" \
            if e is best else f"[{e['name']}]({_rel(str(Path(e['metrics_file']).parent / 'report.md'), out_md)}){mark}"
        row = f"| {e['rank']} | {name} | {_modkey(e['modalities'])} | {e['head']} | " + " | ".join(
            fmt_ms((e['val'] or {}).get(m)) for m in METRICS)
        if has_test:
            row += " | " + " | ".join(fmt_ms((e["test"] or {}).get(m)) for m in METRICS)
        lines.append(row + " |")

    # what each modality adds: per head (and parameter set), one column per modality set
    lines += ["", "## What each modality adds", "",
              "Validation macro-F1 per head and modality set" + (" (test macro-F1 in brackets)" if has_test else "")
              + "; Δ is the best fused set minus the best single modality.", ""]
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for e in entries:
        key = (e["head"], json.dumps(e["params"], sort_keys=True))
        cell = groups.setdefault(key, {})
        mk = _modkey(sorted(e["modalities"]))
        if mk not in cell or _score(e) > _score(cell[mk]):
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
            if e is None:
                vals.append("—")
            else:
                t = _score(e, "test")
                vals.append(f"{_score(e):.3f}" + (f" ({t:.3f})" if t is not None else ""))
        singles = [_score(e) for s, e in cell.items() if "+" not in s]
        fused = [_score(e) for s, e in cell.items() if "+" in s]
        delta = f"{max(fused) - max(singles):+.3f}" if singles and fused else "—"
        lines.append(f"| {label} | " + " | ".join(vals) + f" | {delta} |")

    lines += ["", f"## Selected vs the `{BASELINE}` baseline", ""]
    if cmp.get("note"):
        lines.append(cmp["note"] + ".")
    else:
        base = next(e for e in entries if e["name"] == cmp["baseline"])
        lines += [f"Same modalities ({_modkey(sel['modalities'])}): `{sel['name']}` vs `{base['name']}`.", "",
                  "| split | metric | selected | svm | Δ | Δ larger than both stds? |", "|---|---|---|---|---|---|"]
        for split in ("val", "test"):
            for m in METRICS:
                if f"{split}_{m}_delta" in cmp:
                    lines.append(f"| {split} | {LABELS[m]} | {fmt_ms(sel[split][m])} | {fmt_ms(base[split][m])} | "
                                 f"{cmp[f'{split}_{m}_delta']:+.3f} | "
                                 f"{'yes' if cmp[f'{split}_{m}_delta_exceeds_std'] else 'no'} |")
        d = cmp.get("val_macro_f1_delta")
        if d is not None:
            verdict = ("beats" if d > 0 else "does not beat") + " the svm baseline on validation macro-F1"
            t = cmp.get("test_macro_f1_delta")
            if t is not None:
                verdict += f", and {'beats' if t > 0 else 'does not beat'} it on test macro-F1 ({t:+.3f})"
            lines += ["", f"The selected head {verdict}."]
    lines.append("")
    return "\n".join(lines)

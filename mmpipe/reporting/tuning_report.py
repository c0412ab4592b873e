"""The tuning report of one head: Optuna's optimisation history and parameter importances, and a Markdown page."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from mmpipe.reporting.plots import save_figure, plt


def _note_figure(text: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    save_figure(fig, path)


def tuning_figures(journal: Path, name: str, history_png: Path, importances_png: Path, metric: str) -> None:
    """Optuna's own matplotlib figures of the study; a figure that cannot be drawn (too few complete trials,
    no variation) says why instead."""
    import optuna
    from optuna.visualization import matplotlib as ovm

    from mmpipe.fusion.tune import load_study

    study = load_study(journal, name)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = ovm.plot_optimization_history(study)
        ax.set_ylabel(f"{metric}, cross-validated on the training split")
        ax.set_title(f"Optimisation history of {name}")
        ax.figure.set_size_inches(8, 4.5)
        save_figure(ax.figure, history_png)
        try:
            if len(complete) < 2 or len({t.value for t in complete}) < 2:
                raise ValueError("fewer than two complete trials with different scores")
            ax = ovm.plot_param_importances(study)
            ax.figure.set_size_inches(8, 4.5)
            save_figure(ax.figure, importances_png)
        except (ValueError, RuntimeError) as exc:
            _note_figure(f"No parameter importances: {exc}.", importances_png)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def tuning_markdown(r: dict[str, Any], out_md: Path) -> str:
    """``report.md`` of a study record (``mmpipe.fusion.tune.study_record``)."""
    best, untuned, c = r["best"], r.get("untuned"), r["counts"]
    lower = r["direction"] == "minimize"
    lines = [f"# Tuning `{r['variant']}`", "",
             f"- **Head:** `{r['head']}` on {'+'.join(r['modalities'])}",
             f"- **Objective:** {r['metric']} ({'lower' if lower else 'higher'} is better), the mean over "
             f"{r['folds']} stratified folds of the **training split only**: the validation and test splits are not "
             "part of the study, so no choice made here saw them",
             f"- **Trials:** {c['COMPLETE']} complete, {c['PRUNED']} pruned (median rule, after a fold), "
             f"{c['FAIL']} failed (e.g. left running by a killed worker), by {len(r.get('workers') or [1])} worker(s)",
             f"- **Study:** `{r['study']}` in `{Path(r['journal']).name}` (Optuna journal storage; a rerun resumes it)",
             "", "## Best trial", "",
             f"Trial {best['number']}: **{r['metric']} {best['value']:.4f}**"
             + (f"; the configured (untuned) setting, trial {untuned['number']}: {untuned['value']:.4f} "
                f"(Δ {best['value'] - untuned['value']:+.4f})" if untuned else ""), "",
             "| parameter | best | untuned | searched |", "|---|---|---|---|"]
    for name, space in r["space"].items():
        rng = (", ".join(map(str, space["choices"])) if "choices" in space
               else f"{space['low']:g} – {space['high']:g}{' (log)' if space.get('log') else ''}")
        u = _fmt(untuned["params"].get(name)) if untuned else "—"
        lines.append(f"| `{name}` | {_fmt(best['params'].get(name))} | {u} | {rng} |")
    lines += ["", f"`heads: {{{r['variant']}: {{tuned: true}}}}` makes this head's ablations use these parameters "
              "(`best.json`). Their cross-validated scores then include rows the study fitted on, so read the "
              "tuned-against-untuned difference in the summary as slightly optimistic.", "",
              "## Figures", "", "![optimisation history](history.png)", "",
              "![parameter importances](importances.png)", "",
              "## Trials", "", f"| trial | state | {r['metric']} | seconds | worker | parameters |",
              "|---|---|---|---|---|---|"]
    for t in r["trials"]:
        v = "—" if t["value"] is None else f"{t['value']:.4f}"
        s = "—" if t["seconds"] is None else f"{t['seconds']:.1f}"
        lines.append(f"| {t['number']}{' (untuned)' if t['untuned'] else ''} | {t['state'].lower()} | {v} | {s} | "
                     f"{t['worker']} | `{json.dumps({k: _fmt(x) for k, x in t['params'].items()})}` |")
    return "\n".join(lines) + "\n"

"""Robustness of the fused heads to missing and noisy modalities, scored only on rows no fit has seen.

What is corrupted, per sample and modality (the vector a head sees, context features included):

* **removed**: one modality filled for every sample;
* **missing at rate r** (MultiBench-style, per modality): each sample's each modality is missing independently
  with probability r, so at r = 0.9 with two modalities 81 % of the samples have none left;
* **noise of strength s**: Gaussian noise with std ``s`` x the feature's training std, added to every modality.

A missing vector is replaced by the mean of the fit's own training rows (``fill: mean``, what modality dropout
trains for: the zero vector after standardisation) or by zeros (``fill: zero``). Masks and noise come from
``seeds``; each seed draws one uniform per (sample, modality) and one normal per feature, and every rate
(strength) thresholds (scales) the same draws, so the curves of one seed are nested, not re-drawn.

Honesty: the final models of an ablation are fitted on all labelled non-test rows, so they are only scored on a
labelled test split. Out-of-sample scores come from refitting the head per fold of the FIRST repeat of the shared
folds, exactly as ``run_ablation`` does (fit on the fold's training part, early stopping on an inner split of it),
and corrupting the fold's held-out part; the score is the mean over folds, as the ablation's CV score.
``selection.method: split``: one fit on train (early stopping on val), scored on corrupted val. Fill values and noise
scales come from the rows each fit trained on. ``modality_dropout`` adds, for neural heads on two or more
modalities, the same evaluation of the head trained with that modality dropout (test: refitted per seed, like the
final models). Compute only: ``mmpipe.reporting.robustness_report`` writes the table, plot and report.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mmpipe.core.errors import ConfigError
from mmpipe.fusion import cv
from mmpipe.fusion.dataset import Features, SplitData

log = logging.getLogger(__name__)

FILLS = ("mean", "zero")
DEFAULTS: dict[str, Any] = {"fill": "mean", "rates": [round(0.1 * i, 1) for i in range(10)], "seeds": [0, 1, 2],
                            "noise": [0.0, 0.25, 0.5, 1.0, 2.0], "modality_dropout": 0.3}
SKIP_STACK = "stack head: its members are other ablations (evaluate those instead)"


# ---- settings and plan ---------------------------------------------------------------------------------------
def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved ``robustness:`` settings plus ``task`` and ``metric`` (``selection.metric``; null: macro_f1,
    or mae for regression) and ``higher_is_better``. Bad values are a ``ConfigError`` (planning time)."""
    r = {**DEFAULTS, **(config.get("robustness") or {})}
    regression = (config.get("labels") or {}).get("scheme") == "regression"
    metric = (config.get("selection") or {}).get("metric") or ("mae" if regression else "macro_f1")
    if (metric == "mae") != regression:
        raise ConfigError(f"robustness: selection.metric {metric!r} does not apply to "
                          f"{'regression' if regression else 'classification'}")
    if r["fill"] not in FILLS:
        raise ConfigError(f"robustness.fill must be one of {', '.join(FILLS)}, got {r['fill']!r}")
    for key, top in (("rates", 1.0), ("noise", None)):
        vals = r[key]
        if not vals or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (top and v > top)
                           for v in vals):
            raise ConfigError(f"robustness.{key}: a non-empty list of numbers >= 0{' and <= 1' if top else ''}, "
                              f"got {vals!r}")
    md = r["modality_dropout"] or 0.0
    if not 0 <= md < 1:
        raise ConfigError(f"robustness.modality_dropout must be in [0, 1) or null, got {md!r}")
    return {"fill": r["fill"], "rates": sorted(float(v) for v in r["rates"]),
            "noise": sorted(float(v) for v in r["noise"]), "seeds": [int(s) for s in r["seeds"]],
            "modality_dropout": float(md), "task": "regression" if regression else "classification",
            "metric": metric, "higher_is_better": metric not in cv.LOWER_IS_BETTER}


def evaluable(grid: dict[str, dict[str, Any]]) -> list[str]:
    """The ablations a robustness job can evaluate (every one but the stacks)."""
    return [n for n, s in grid.items() if s["head"] != "stack"]


def plan(grid: dict[str, dict[str, Any]], selected: str | None) -> dict[str, Any]:
    """Which ablations to evaluate: the selected one, and for every head variant its ablation on the largest fused
    (>= 2 modalities) subset, the selected ablation's modalities preferred when the variant has an ablation on
    them. Stacks are skipped. Returns ``{"selected", "ablations", "skipped": [{"name", "why"}]}``."""
    names, skipped = [], []
    sel = grid.get(selected) if selected else None
    if selected and sel is None:
        raise KeyError(f"selected ablation {selected!r} is not in the grid")
    if sel is not None:
        if sel["head"] == "stack":
            skipped.append({"name": selected, "why": SKIP_STACK})
        else:
            names.append(selected)
    preferred = frozenset(sel["modalities"]) if sel is not None and len(sel["modalities"]) >= 2 else None
    for variant in dict.fromkeys(s["variant"] for s in grid.values()):
        fused = [n for n, s in grid.items() if s["variant"] == variant and len(s["modalities"]) >= 2]
        if any(grid[n]["head"] == "stack" for n in fused):
            skipped += [{"name": n, "why": SKIP_STACK} for n in fused if n != selected]
            continue
        if not fused:
            skipped.append({"name": variant, "why": "no ablation of this head on two or more modalities"})
            continue
        pick = next((n for n in fused if frozenset(grid[n]["modalities"]) == preferred), None)
        pick = pick or max(fused, key=lambda n: len(grid[n]["modalities"]))
        if pick not in names:
            names.append(pick)
    return {"selected": selected, "ablations": names, "skipped": skipped}


# ---- corruptions -------------------------------------------------------------------------------------------
def training_stats(X: Features, rows: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per modality, the per-feature mean and std (ddof 0) over ``rows`` (None: all rows) of ``X``."""
    out = {}
    for m, a in X.items():
        a = np.asarray(a if rows is None else a[rows], dtype=np.float64)
        out[m] = (a.mean(axis=0).astype(np.float32), a.std(axis=0).astype(np.float32))
    return out


def fill_vectors(stats: dict[str, tuple[np.ndarray, np.ndarray]], fill: str) -> dict[str, np.ndarray]:
    """What replaces a missing vector, per modality: the training mean, or zeros."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    return {m: (mu if fill == "mean" else np.zeros_like(mu)) for m, (mu, _) in stats.items()}


def apply_mask(X: Features, missing: np.ndarray, fills: dict[str, np.ndarray]) -> Features:
    """``X`` with ``X[m][i]`` replaced by ``fills[m]`` where ``missing[i, j]`` (``j``: the order of ``X``)."""
    out = {}
    for j, (m, a) in enumerate(X.items()):
        a = np.array(a, dtype=np.float32, copy=True)
        a[missing[:, j]] = fills[m]
        out[m] = a
    return out


def remove_modality(X: Features, modality: str, fills: dict[str, np.ndarray]) -> Features:
    """``X`` with ``modality`` filled for every sample."""
    n = len(next(iter(X.values())))
    missing = np.zeros((n, len(X)), dtype=bool)
    missing[:, list(X).index(modality)] = True
    return apply_mask(X, missing, fills)


def missing_at_random(X: Features, rate: float, uniforms: np.ndarray, fills: dict[str, np.ndarray]) -> Features:
    """Each sample's each modality missing where its uniform draw (``(n, M)`` in [0, 1)) is below ``rate``."""
    return apply_mask(X, np.asarray(uniforms) < rate, fills)


def add_noise(X: Features, strength: float, normals: Features,
              stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> Features:
    """``X + strength x training std x normals`` (standard normal draws, one per feature), every modality."""
    return {m: (np.asarray(a, dtype=np.float32) + np.float32(strength) * stats[m][1] * normals[m]).astype(np.float32)
            for m, a in X.items()}


class Draws:
    """One seed's random draws for ``n`` rows: ``uniforms`` ``(n, M)`` for the masks and ``normals`` per modality
    ``(n, d)`` for the noise; ``stream`` separates independent sets of rows (the pool, the test split)."""

    def __init__(self, seed: int, n: int, dims: dict[str, int], stream: int = 0):
        mask_rng = np.random.default_rng([int(seed), int(stream), 0])
        noise_rng = np.random.default_rng([int(seed), int(stream), 1])
        self.uniforms = mask_rng.random((n, len(dims)))
        self.normals = {m: noise_rng.standard_normal((n, d), dtype=np.float32) for m, d in dims.items()}

    def rows(self, idx: np.ndarray) -> "Draws":
        out = object.__new__(Draws)
        out.uniforms, out.normals = self.uniforms[idx], {m: z[idx] for m, z in self.normals.items()}
        return out


def corruption_scores(predict: Callable[[Features], np.ndarray], score: Callable[[np.ndarray], float], X: Features,
                      stats: dict[str, tuple[np.ndarray, np.ndarray]], draws: list[Draws],
                      conf: dict[str, Any]) -> dict[str, Any]:
    """One fitted model on one set of rows: ``clean``, ``removed`` (modality -> score), ``missing`` and ``noise``
    (level -> one score per draw, i.e. per seed). ``predict`` maps features to outputs, ``score`` outputs to a
    number; ``conf`` holds ``fill``, ``rates`` and ``noise``."""
    fills = fill_vectors(stats, conf["fill"])
    clean = score(predict(X))
    out: dict[str, Any] = {"clean": clean,
                           "removed": {m: score(predict(remove_modality(X, m, fills))) for m in X},
                           "missing": {}, "noise": {}}
    for rate in conf["rates"]:
        out["missing"][rate] = [clean if rate == 0 else score(predict(missing_at_random(X, rate, d.uniforms, fills)))
                                for d in draws]
    for s in conf["noise"]:
        out["noise"][s] = [clean if s == 0 else score(predict(add_noise(X, s, d.normals, stats))) for d in draws]
    return out


def mean_scores(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The element-wise mean of several ``corruption_scores`` results (over folds, or over final-model seeds)."""
    mean = lambda vals: float(np.mean(vals))  # noqa: E731
    first = parts[0]
    return {"clean": mean([p["clean"] for p in parts]),
            "removed": {m: mean([p["removed"][m] for p in parts]) for m in first["removed"]},
            **{kind: {lvl: [mean([p[kind][lvl][i] for p in parts]) for i in range(len(first[kind][lvl]))]
                      for lvl in first[kind]} for kind in ("missing", "noise")}}


def summarise(r: dict[str, Any]) -> dict[str, Any]:
    """JSON form of ``mean_scores``: levels as a list of ``{key: level, scores, mean, std}`` (std: ddof 1 over
    seeds; 0 with one seed)."""
    def curve(levels: dict[float, list[float]], name: str) -> list[dict[str, Any]]:
        return [{name: float(lvl), "scores": [float(v) for v in vals], "mean": float(np.mean(vals)),
                 "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0} for lvl, vals in levels.items()]

    return {"clean": r["clean"], "removed": r["removed"], "missing": curve(r["missing"], "rate"),
            "noise": curve(r["noise"], "strength"), "auc_missing": float(np.mean([np.mean(v) for v in
                                                                                r["missing"].values()]))}


# ---- one ablation -------------------------------------------------------------------------------------------
def _scorer(t: np.ndarray, classes: list[str], metric: str, regression: bool) -> Callable[[np.ndarray], float]:
    from mmpipe.fusion.metrics import classification_metrics, regression_metrics

    if regression:
        return lambda out: float(regression_metrics(t, out)[metric])
    return lambda out: float(classification_metrics(t, out, classes)[metric])


def _predictor(model, groups: np.ndarray | None, regression: bool) -> Callable[[Features], np.ndarray]:
    if regression:
        return lambda X: model.predict(X, groups=groups)
    return lambda X: model.predict_proba(X, groups=groups)


def is_neural(head: str) -> bool:
    from mmpipe.fusion.heads import HEADS
    from mmpipe.fusion.heads.neural import NeuralHead

    return issubclass(HEADS.get(head), NeuralHead)


def held_out_folds(d: SplitData, task: str, selection: dict[str, Any], folds: np.ndarray | None,
                   seed: int) -> tuple[list, np.ndarray]:
    """The fits to score, as ``mmpipe.fusion.ablation.Fold`` s over the train+val pool (``cv_pool``), and the rows
    the final models trained on. ``cv``: one per fold of the FIRST repeat, early stopping on the inner split that
    ``run_ablation`` uses (same seed), held out: the fold; ``split``: fit train, stop and held out: val."""
    from mmpipe.fusion.ablation import Fold, cv_pool

    X, t, g, guids = cv_pool(d, task)
    if selection.get("method", "split") != "cv":
        n_tr, n = len(d.y_train), len(t)
        return [Fold(X, t, g, guids, np.arange(n_tr), np.arange(n_tr, n), np.arange(n_tr, n))], np.arange(n_tr)
    if folds is None:
        raise ValueError("selection.method cv needs the folds (results/<ds>/folds.parquet)")
    first = np.atleast_2d(np.asarray(folds))[:1]
    if first.shape[1] != len(t):
        raise ValueError(f"the folds cover {first.shape[1]} samples, the data has {len(t)}")
    regression = task == "regression"
    strat = cv.strata(None if regression else t, t if regression else None)
    out = []
    for r, k, tr, held in cv.fold_indices(first):
        fit_i, stop_i = cv.inner_split(strat[tr], None if g is None else g[tr],
                                       float(selection.get("inner_val", 0.15)), seed=seed + 97 * r + k)
        out.append(Fold(X, t, g, guids, tr[fit_i], tr[stop_i], held))
    return out, np.arange(len(t))


def trainings(head: str, modalities: list[str], params: dict[str, Any], rate: float) -> list[tuple[str, dict]]:
    """(label, head parameters) of each run: as configured, and with modality dropout ``rate`` for a neural head
    on two or more modalities (unless it is off, or the head already trains with that rate)."""
    out = [("as configured", params)]
    if rate > 0 and len(modalities) >= 2 and is_neural(head) and rate != float(params.get("modality_dropout") or 0):
        out.append((f"modality dropout {rate:g}", {**params, "modality_dropout": rate}))
    return out


def evaluate_ablation(data: SplitData, name: str, spec: dict[str, Any], conf: dict[str, Any],
                      selection: dict[str, Any], folds: np.ndarray | None, ablation_dir: Path,
                      threads: int | None = None) -> dict[str, Any]:
    """The robustness record of one ablation (``spec``: its grid entry; ``conf``: ``settings``; ``folds``: the
    ``(repeats, n)`` fold ids of the train+val rows for ``selection.method: cv``; ``ablation_dir``: its
    ``metrics.json`` and ``model_seed*.pt``), one run per ``trainings`` entry: held-out scores (mean over the
    folds) and, where the test split is labelled, test scores (mean over the final models' seeds)."""
    from mmpipe.fusion.ablation import Fold, fit_fold, fit_targets
    from mmpipe.fusion.context import check_mode, sequence_index, with_context
    from mmpipe.fusion.heads import HEADS
    from mmpipe.fusion.heads.base import load_head

    head, mods = spec["head"], list(spec["modalities"])
    if head == "stack":
        raise ValueError(f"{name}: {SKIP_STACK}")
    task, metric = conf["task"], conf["metric"]
    regression = task == "regression"
    metrics = json.loads((Path(ablation_dir) / "metrics.json").read_text(encoding="utf-8"))
    # the parameters the ablation fitted with (a `tuned: true` head's include its study's best ones)
    params = {**spec["params"], **metrics.get("params", {}), **({"threads": threads} if threads else {})}
    d = with_context(data.select(mods), check_mode(params.get("context")))
    classes, seeds = list(d.classes), [int(s) for s in spec["seeds"]]
    uses_groups = HEADS.get(head).uses_groups
    cv_mode = selection.get("method", "split") == "cv"
    splits, final_rows = held_out_folds(d, task, selection, folds, seeds[0])
    X, t = splits[0].X, splits[0].t
    t_test = fit_targets(d, task)[2]
    dims = {m: a.shape[1] for m, a in X.items()}
    pool_draws = [Draws(s, len(t), dims, stream=0) for s in conf["seeds"]]
    if t_test is not None:
        test_draws = [Draws(s, len(t_test), dims, stream=1) for s in conf["seeds"]]
        test_seq = sequence_index(d.g_test, d.guids_test) if uses_groups else None
        test_stats, test_score = training_stats(X, final_rows), _scorer(t_test, classes, metric, regression)

    runs = []
    head_params = {k: v for k, v in params.items() if k != "context"}
    for label, p in trainings(head, mods, head_params, float(conf.get("modality_dropout") or 0.0)):
        fold_scores, refits = [], []
        for i, fold in enumerate(splits):
            model, fit_s = fit_fold(head, p, seeds[0], len(classes), task, fold)
            refits.append(model.refit_params())
            held = fold.held
            r = corruption_scores(_predictor(model, fold.seq(held) if uses_groups else None, regression),
                                  _scorer(t[held], classes, metric, regression), {m: a[held] for m, a in X.items()},
                                  training_stats(X, fold.fit), [dr.rows(held) for dr in pool_draws], conf)
            fold_scores.append(r)
            log.info("%s [%s] %s %d: fit %.1f s on %d rows, %d held out; clean %s %.4f, missing rate %g: %.4f",
                     name, label, "fold" if cv_mode else "split", i, fit_s, len(fold.fit), len(held), metric,
                     r["clean"], conf["rates"][-1], float(np.mean(r["missing"][conf["rates"][-1]])))
        run: dict[str, Any] = {"training": label, "modality_dropout": float(p.get("modality_dropout") or 0.0),
                               "held_out": summarise(mean_scores(fold_scores)),
                               "folds": [x["clean"] for x in fold_scores]}
        if label == "as configured":
            run["consistency"] = _consistency(metrics, run["folds"], metric, cv_mode)
        if t_test is not None:
            parts = []
            for seed in seeds:
                if label == "as configured":  # the saved final model
                    model = load_head(head, Path(ablation_dir) / f"model_seed{seed}.pt")
                else:  # refitted as the final models were: all pool rows with the folds' choices, or train (+val stop)
                    extra = cv.combine_refit_params([dict(x) for x in refits]) if cv_mode else {}
                    final = Fold(X, t, splits[0].g, splits[0].guids, final_rows,
                                 None if cv_mode else splits[0].stop, None)
                    model = fit_fold(head, {**p, **extra}, seed, len(classes), task, final)[0]
                parts.append(corruption_scores(_predictor(model, test_seq, regression), test_score, d.X_test,
                                               test_stats, test_draws, conf))
            run["test"] = summarise(mean_scores(parts))
        runs.append(run)
    return {"name": name, "head": head, "variant": spec.get("variant", head), "modalities": mods, "task": task,
            "metric": metric, "higher_is_better": conf["higher_is_better"], "fill": conf["fill"],
            "mask_seeds": conf["seeds"], "rates": conf["rates"], "noise": conf["noise"],
            "modality_dropout": float(conf.get("modality_dropout") or 0.0),
            "evaluated_on": "cv" if cv_mode else "val", "n_folds": len(splits),
            "n_held_out": [int(len(f.held)) for f in splits], "fit_seed": seeds[0], "test_labelled": t_test is not None,
            "test_seeds": seeds if t_test is not None else [], "neural": is_neural(head), "runs": runs}


def _consistency(metrics: dict[str, Any], clean: list[float], metric: str, cv_mode: bool) -> dict[str, Any]:
    """The clean refits against what the ablation itself recorded (repeat 0 folds, or seed 0 on val)."""
    if cv_mode:
        ref = [f["scores"].get(metric) for f in metrics.get("folds") or [] if f.get("repeat") == 0]
    else:
        first = (metrics.get("per_seed") or [{}])[0]
        ref = [((first.get("val") or {}).get(metric))]
    if len(ref) != len(clean) or any(v is None for v in ref):
        return {"ablation": None, "refit": clean, "max_abs_diff": None}
    return {"ablation": [float(v) for v in ref], "refit": clean,
            "max_abs_diff": float(max(abs(a - b) for a, b in zip(ref, clean)))}

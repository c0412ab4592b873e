"""Optuna studies of a head's hyperparameters, scored by cross-validation on the TRAINING split alone.

The objective of a trial is the mean of the selection metric over ``tuning.folds`` stratified (grouped where
the data has groups) folds of the training split: each fold's fit stops early on an inner split of its
training part and is scored on its held-out part. The validation split and the test split are not part of
the data a study gets (``tuning_pool``), so no choice made here can have seen them.

A study lives in an Optuna journal file (``results/<ds>/tuning/<variant>/study.journal``). Its name carries a
digest of everything that defines it (head, fixed parameters, search space, metric, folds and the data itself),
so a changed setting starts a new study, and the same settings resume the old one: a killed worker's rerun
keeps every finished trial and fails its own trials that were left running. Several workers (``tuning.workers``,
e.g. SLURM jobs on different nodes) share one study through the journal's file lock; each worker asks for
trials until the study holds ``tuning.trials`` finished (complete or pruned) ones. Trial 0 is the head's
configured (untuned) setting when it lies in the space, so the study also measures what tuning bought. Neural heads prune a trial after a
fold when its running mean is worse than the median of earlier trials (Optuna's MedianPruner).

Planning needs only ``tuning_specs`` and ``check_space``: this module imports neither optuna nor torch at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from mmpipe.core.errors import ConfigError

FINISHED = ("COMPLETE", "PRUNED")


# ---- planning: which heads, on what, searching what -------------------------------------------------------
def default_modalities(config: dict[str, Any]) -> list[str]:
    """The modality set a head is tuned on: ``tuning.modalities``, else the largest of ``ablations.modalities``
    (the first of that size), else every encoder."""
    chosen = (config.get("tuning") or {}).get("modalities")
    if chosen:
        return list(chosen)
    subsets = (config.get("ablations") or {}).get("modalities") or [list(config["encoders"])]
    return list(max(subsets, key=len))


def check_space(space: dict[str, Any], head_cls: type, where: str) -> dict[str, dict[str, Any]]:
    """A search space checked against the head's parameters: ``{param: {low, high, log} | {choices}}``."""
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: the search space is empty; give `tuning.space.<head>: {{param: {{low: .., "
                          f"high: ..}}}}` (the head's parameters: {', '.join(sorted(head_cls.defaults))})")
    for name, spec in space.items():
        if name not in head_cls.defaults or name in ("seed", "task", "n_classes", "threads"):
            raise ConfigError(f"{where}: {name!r} is not a tunable parameter of the head "
                              f"(known: {', '.join(sorted(set(head_cls.defaults) - {'seed', 'task', 'n_classes', 'threads'}))})")
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}.{name}: give {{low: .., high: .., log: true|false}} or {{choices: [..]}}")
        if "choices" in spec:
            if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
                raise ConfigError(f"{where}.{name}: choices is a non-empty list, alone")
            continue
        low, high = spec.get("low"), spec.get("high")
        if set(spec) - {"low", "high", "log"} or not all(isinstance(v, Real) and not isinstance(v, bool)
                                                         for v in (low, high)) or not low < high:
            raise ConfigError(f"{where}.{name}: needs numbers low < high (and optionally log: true), got {spec}")
        if spec.get("log") and low <= 0:
            raise ConfigError(f"{where}.{name}: a log scale needs low > 0, got {low}")
    return space


def tuning_specs(config: dict[str, Any], grid: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """variant -> {head, variant, modalities, params, space, seed} for every head the ``tune`` target tunes:
    ``tuning.heads``, else every configured head with a search space (the head's default or
    ``tuning.space.<variant>``; stacks are never tuned), plus every head with ``tuned: true``."""
    from mmpipe.fusion.heads import HEADS

    tuning = config.get("tuning") or {}
    heads = config.get("heads") or {}
    modalities = default_modalities(config)
    unknown = [m for m in modalities if m not in config["encoders"]]
    if unknown:
        raise ConfigError(f"tuning.modalities: {unknown} not among the encoders ({', '.join(config['encoders'])})")
    own_spaces = tuning.get("space") or {}
    for v in own_spaces:
        if v not in heads:
            raise ConfigError(f"tuning.space.{v}: not a head of this config (heads: {', '.join(heads)})")
    wanted = tuning.get("heads")
    variants = list(wanted) if wanted is not None else [
        v for v, e in heads.items() if (e or {}).get("head", v) != "stack"
        and (v in own_spaces or HEADS.get((e or {}).get("head", v)).search_space)]
    variants += [v for v, e in heads.items() if (e or {}).get("tuned") and v not in variants]
    training = {k: v for k, v in (config.get("training") or {}).items() if k != "seeds"}
    seeds = (config.get("training") or {}).get("seeds") or [0]
    specs = {}
    for v in variants:
        if v not in heads:
            raise ConfigError(f"tuning.heads: {v!r} is not configured under heads: ({', '.join(heads)})")
        entry = dict(heads[v] or {})
        head = entry.pop("head", v)
        entry.pop("tuned", None)
        if head == "stack":
            raise ConfigError(f"heads.{v}: a stack is not tuned (tune its members instead)")
        klass = HEADS.get(head)
        space = check_space(own_spaces.get(v) or dict(klass.search_space), klass, f"tuning.space.{v}")
        takes = set(klass.defaults) | {"context"}
        params = {**{k: x for k, x in training.items() if k in takes}, **entry}
        specs[v] = {"head": head, "variant": v, "modalities": modalities, "params": params, "space": space,
                    "seed": int(seeds[0])}
    return specs


# ---- the data a study sees --------------------------------------------------------------------------------
def tuning_pool(d, task: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None, list[str]]:
    """The TRAINING split only (features, targets, groups, guids): no validation or test row, label or feature."""
    t = d.s_train if task == "regression" else d.y_train
    if t is None:
        raise ValueError("tuning a regression head needs a score for every training sample")
    return dict(d.X_train), np.asarray(t), d.g_train, list(d.guids_train)


def data_digest(X: dict[str, np.ndarray], t: np.ndarray, guids: list[str]) -> str:
    """A digest of the study's data: a re-extracted feature or a changed label starts a new study."""
    h = hashlib.sha256()
    for m in sorted(X):
        h.update(m.encode())
        h.update(np.ascontiguousarray(X[m], dtype=np.float32).tobytes())
    h.update(np.asarray(t).tobytes())
    h.update("\n".join(guids).encode())
    return h.hexdigest()[:16]


def study_name(spec: dict[str, Any], tuning: dict[str, Any], metric: str, digest: str) -> str:
    what = {k: spec[k] for k in ("head", "modalities", "space")}
    what["params"] = {k: v for k, v in spec["params"].items() if k != "threads"}  # a thread count changes no score
    what.update(metric=metric, folds=tuning["folds"], seed=spec["seed"], data=digest)
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{spec['variant']}-{key}"


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name, s in space.items():
        if "choices" in s:
            out[name] = trial.suggest_categorical(name, s["choices"])
        elif isinstance(s["low"], int) and isinstance(s["high"], int):
            out[name] = trial.suggest_int(name, s["low"], s["high"], log=bool(s.get("log")))
        else:
            out[name] = trial.suggest_float(name, float(s["low"]), float(s["high"]), log=bool(s.get("log")))
    return out


def _in_space(params: dict[str, Any], space: dict[str, dict[str, Any]], defaults: dict[str, Any]) -> dict[str, Any]:
    """The configured (untuned) values of the searched parameters, when every one of them lies in the space."""
    out = {}
    for name, s in space.items():
        v = params.get(name, defaults.get(name))
        ok = (v in s["choices"]) if "choices" in s else (isinstance(v, Real) and not isinstance(v, bool)
                                                          and s["low"] <= v <= s["high"])
        if not ok:
            return {}
        out[name] = int(v) if "choices" not in s and isinstance(s["low"], int) and isinstance(s["high"], int) else v
    return out


# ---- running a worker ---------------------------------------------------------------------------------------
def journal_storage(journal: Path):
    """Optuna's journal storage on ``journal``, locked with ``open(O_EXCL)`` lock files (NFS-safe)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    Path(journal).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(str(journal))))


def open_study(storage: Any, name: str, direction: str, seed: int, worker: int, neural: bool):
    import optuna

    pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1) if neural
              else optuna.pruners.NopPruner())
    return optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True,
                               sampler=optuna.samplers.TPESampler(seed=seed + 1000 * worker), pruner=pruner)


def run_worker(journal: Path, spec: dict[str, Any], tuning: dict[str, Any], metric: str, d, task: str,
               classes: list[str], worker: int = 0, log=None) -> dict[str, Any]:
    """One worker of the study of ``spec`` (from ``tuning_specs``) on ``d``'s training split; returns a record
    of the trials it ran."""
    import optuna
    from optuna.trial import TrialState

    from mmpipe.fusion import cv
    from mmpipe.fusion.ablation import Fold, _score, fit_fold
    from mmpipe.fusion.heads import HEADS
    from mmpipe.fusion.heads.neural import NeuralHead

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    regression = task == "regression"
    direction = "minimize" if metric in cv.LOWER_IS_BETTER else "maximize"
    X, t, g, guids = tuning_pool(d.select(spec["modalities"]), task)
    name = study_name(spec, tuning, metric, data_digest(X, t, guids))
    strat = cv.strata(None if regression else t, t if regression else None)
    folds = cv.make_folds(strat, g, int(tuning["folds"]), 1, seed=spec["seed"])
    klass = HEADS.get(spec["head"])
    storage = journal_storage(Path(journal))
    study = open_study(storage, name, direction, spec["seed"], worker, issubclass(klass, NeuralHead))
    me = {"worker": worker, "host": socket.gethostname()}
    run = {**me, "pid": os.getpid(), "run": uuid.uuid4().hex}  # who asked for a trial: this call of run_worker
    for tr in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if tr.user_attrs.get("worker") == worker:  # left running by this worker's killed run
            storage.set_trial_state_values(tr._trial_id, TrialState.FAIL)
    untuned = _in_space(spec["params"], spec["space"], klass.defaults)
    if untuned and not any(tr.user_attrs.get("untuned") for tr in study.get_trials(deepcopy=False)):
        # whichever worker starts first (another may already have run the whole study)
        study.enqueue_trial(untuned, user_attrs={"untuned": True}, skip_if_exists=True)

    def objective(trial):
        for k, v in run.items():
            trial.set_user_attr(k, v)
        params = {**spec["params"], **suggest(trial, spec["space"])}
        head_params = {k: v for k, v in params.items() if k != "context"}
        scores = []
        for _, k, tr_rows, held in cv.fold_indices(folds):
            fit_i, stop_i = cv.inner_split(strat[tr_rows], None if g is None else g[tr_rows],
                                           float(tuning["inner_val"]), seed=spec["seed"] + k)
            fold = Fold(X, t, g, guids, tr_rows[fit_i], tr_rows[stop_i], held)
            model, _ = fit_fold(spec["head"], head_params, spec["seed"], len(classes), task, fold)
            held_X = {m: a[held] for m, a in X.items()}
            seq = fold.seq(held) if klass.uses_groups else None
            scores.append(float(_score(model, held_X, t[held], seq, classes, regression)[0][metric]))
            trial.report(float(np.mean(scores)), k)
            if trial.should_prune():
                trial.set_user_attr("fold_scores", scores)
                raise optuna.TrialPruned()
        trial.set_user_attr("fold_scores", scores)
        return float(np.mean(scores))

    ran = []
    started = time.monotonic()
    timeout = tuning.get("timeout")
    while True:
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        left = None if timeout is None else float(timeout) - (time.monotonic() - started)
        if done >= int(tuning["trials"]) or (left is not None and left <= 0):
            break
        study.optimize(objective, n_trials=1, catch=())
        new = [tr for tr in study.get_trials(deepcopy=False) if tr.state.is_finished() and tr.number not in ran
               and tr.user_attrs.get("run") == run["run"]]
        for tr in new:
            ran.append(tr.number)
            if log:
                log.info("trial %d (%s): %s %s", tr.number, tr.state.name,
                         "-" if tr.value is None else f"{tr.value:.4f}", json.dumps(tr.params, sort_keys=True))
    return {"study": name, "journal": str(journal), "worker": worker, "trials": ran, **me, "metric": metric,
            "direction": direction, "seconds": round(time.monotonic() - started, 1)}


def study_record(journal: Path, name: str, spec: dict[str, Any], tuning: dict[str, Any], metric: str) -> dict[str, Any]:
    """``best.json``: the best trial's parameters (to merge over the head's own), its score, the untuned
    trial's score, and every trial."""
    study = load_study(journal, name)
    trials = [{"number": tr.number, "state": tr.state.name, "value": tr.value, "params": tr.params,
               "untuned": bool(tr.user_attrs.get("untuned")), "worker": tr.user_attrs.get("worker"),
               "fold_scores": tr.user_attrs.get("fold_scores"),
               "seconds": None if tr.duration is None else round(tr.duration.total_seconds(), 2)}
              for tr in study.trials]
    complete = [tr for tr in trials if tr["state"] == "COMPLETE"]
    if not complete:
        raise ValueError(f"study {name} in {journal} has no complete trial")
    minimize = metric == "mae"
    best = min(complete, key=lambda tr: (tr["value"] if minimize else -tr["value"], tr["number"]))
    untuned = next((tr for tr in complete if tr["untuned"]), None)
    counts = {s: sum(tr["state"] == s for tr in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    return {"variant": spec["variant"], "head": spec["head"], "modalities": spec["modalities"], "metric": metric,
            "direction": "minimize" if minimize else "maximize", "study": name, "journal": str(journal),
            "folds": int(tuning["folds"]), "data": "training split only (no validation or test sample)",
            "best": {"number": best["number"], "value": best["value"], "params": best["params"],
                     "fold_scores": best["fold_scores"]},
            "untuned": None if untuned is None else {"number": untuned["number"], "value": untuned["value"],
                                                     "params": untuned["params"]},
            "params": best["params"], "counts": counts, "space": spec["space"], "trials": trials}


def load_study(journal: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=journal_storage(Path(journal)))

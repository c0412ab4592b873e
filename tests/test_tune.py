"""Optuna tuning: the study sees the training split only, a killed study resumes, workers share one study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmpipe.core.errors import ConfigError
from mmpipe.fusion.grid import ablation_grid
from mmpipe.fusion.heads import HEADS
from mmpipe.fusion.tune import journal_storage, load_study, run_worker, study_record, tuning_specs
from test_stage2 import FAST, make_data

TESTS = Path(__file__).parent
TUNING = {"trials": 5, "timeout": None, "folds": 3, "inner_val": 0.2}


def spec(head="concat_mlp", params=None):
    return {"head": head, "variant": head, "modalities": ["text", "image"], "params": dict(params or FAST),
            "space": HEADS.get(head).search_space, "seed": 0}


def trials(journal: Path, name: str):
    return load_study(journal, name).trials


def test_the_study_never_sees_validation_or_test(tmp_path):
    a = make_data(seed=0)
    b = make_data(seed=0)
    rng = np.random.default_rng(5)
    b.y_val, b.y_test = rng.permutation(b.y_val), rng.permutation(b.y_test)  # shuffled labels
    b.X_val = {m: rng.normal(size=x.shape).astype(np.float32) for m, x in b.X_val.items()}  # and features
    b.X_test = {m: rng.normal(size=x.shape).astype(np.float32) for m, x in b.X_test.items()}
    got = []
    for name, d in (("a", a), ("b", b)):
        rec = run_worker(tmp_path / name / "study.journal", spec(), TUNING, "macro_f1", d, "classification", d.classes)
        got.append([(t.state, t.value, t.params) for t in trials(tmp_path / name / "study.journal", rec["study"])])
        names = rec["study"]
    assert got[0] == got[1] and len(got[0]) >= 5
    # while a changed TRAINING label is a different study, with other scores
    c = make_data(seed=0)
    c.y_train = c.y_train.copy()
    c.y_train[:20] = (c.y_train[:20] + 1) % 3
    rec = run_worker(tmp_path / "c" / "study.journal", spec(), TUNING, "macro_f1", c, "classification", c.classes)
    assert rec["study"] != names


def test_trial_zero_is_the_untuned_setting_and_best_json_records_it(tmp_path):
    d = make_data()
    journal = tmp_path / "study.journal"
    rec = run_worker(journal, spec(), TUNING, "macro_f1", d, "classification", d.classes)
    r = study_record(journal, rec["study"], spec(), TUNING, "macro_f1")
    assert r["trials"][0]["untuned"] and r["trials"][0]["params"] == {
        "lr": 1e-3, "hidden": 128, "dropout": 0.25, "weight_decay": 1e-2, "in_dropout": 0.0}
    assert r["untuned"]["value"] == r["trials"][0]["value"]
    values = [t["value"] for t in r["trials"] if t["state"] == "COMPLETE"]
    assert r["best"]["value"] == max(values) and r["params"] == r["best"]["params"]
    assert r["counts"]["COMPLETE"] + r["counts"]["PRUNED"] == 5
    # a rerun with more trials extends the same study
    rec2 = run_worker(journal, spec(), {**TUNING, "trials": 7}, "macro_f1", d, "classification", d.classes)
    assert rec2["study"] == rec["study"] and rec2["trials"] == [5, 6]


WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_stage2 import make_data
from test_tune import spec, TUNING
from mmpipe.fusion.tune import run_worker
d = make_data()
rec = run_worker(Path({journal!r}), spec(), {{**TUNING, "trials": {n}}}, "macro_f1", d, "classification", d.classes,
                 worker={worker})
Path({out!r}).write_text(json.dumps(rec))
"""


def start_worker(tmp_path: Path, n: int, worker: int) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"worker{worker}.json"
    code = WORKER.format(tests=str(TESTS), journal=str(tmp_path / "study.journal"), n=n, worker=worker, out=str(out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code], env=env), out


def all_trials(journal: Path) -> list:
    """The trials of every study in ``journal`` (none while the worker has not created its study)."""
    import optuna

    if not journal.exists():
        return []
    storage = journal_storage(journal)
    return [t for n in optuna.get_all_study_names(storage=storage)
            for t in optuna.load_study(study_name=n, storage=storage).trials]


def finished(journal: Path) -> list:
    return [t for t in all_trials(journal) if t.state.is_finished()]


def test_a_killed_study_resumes_with_its_earlier_trials(tmp_path):
    journal = tmp_path / "study.journal"
    proc, _ = start_worker(tmp_path, 200, 0)
    deadline = time.monotonic() + 240
    while len(finished(journal)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.value, t.params) for t in finished(journal)}
    interrupted = [t.number for t in all_trials(journal) if t.state.name == "RUNNING"]  # none if killed between trials
    assert 3 <= len(before) < 12
    d = make_data()
    rec = run_worker(journal, spec(), {**TUNING, "trials": 12}, "macro_f1", d, "classification", d.classes)
    after = trials(journal, rec["study"])
    assert {t.number: (t.value, t.params) for t in after if t.number in before} == before  # kept as they were
    states = [t.state.name for t in after]
    assert "RUNNING" not in states  # the killed run's trial was failed by the same worker's rerun
    assert sum(s in ("COMPLETE", "PRUNED") for s in states) == 12
    assert [t.number for t in after if t.state.name == "FAIL"] == interrupted  # the trial the kill interrupted
    assert sorted(rec["trials"]) == [t.number for t in after if t.number not in before and t.state.name != "FAIL"]


def test_two_workers_share_one_study_and_lose_or_repeat_no_trial(tmp_path):
    procs = [start_worker(tmp_path, 10, w) for w in (0, 1)]
    for proc, _ in procs:
        assert proc.wait(timeout=600) == 0
    recs = [json.loads(out.read_text()) for _, out in procs]
    assert recs[0]["study"] == recs[1]["study"]
    all_trials = trials(tmp_path / "study.journal", recs[0]["study"])
    numbers = [t.number for t in all_trials]
    assert len(numbers) == len(set(numbers))
    assert all(t.state.is_finished() and t.state.name != "FAIL" for t in all_trials)
    ran = [set(r["trials"]) for r in recs]
    assert ran[0] and ran[1] and not ran[0] & ran[1]  # both worked, on different trials
    assert ran[0] | ran[1] == set(numbers)  # every trial ran by one of them
    assert 10 <= len(numbers) <= 11  # the target, overshot by at most the trial in flight of the other worker
    assert {t.user_attrs["worker"] for t in all_trials} == {0, 1}


def config(**over):
    c = {"encoders": {"text": {}, "image": {}}, "heads": {"concat_mlp": {}, "svm": {}, "wide": {"head": "concat_mlp"},
                                                         "stack": {"members": ["text__svm"]}},
         "training": {"seeds": [0]}, "ablations": {"modalities": [["text"], ["text", "image"]]}, "tuning": {}}
    c.update(over)
    return c


def test_tuning_specs():
    c = config()
    s = tuning_specs(c, ablation_grid(c))
    assert list(s) == ["concat_mlp", "svm", "wide"]  # every head with a search space; never the stack
    assert s["wide"]["head"] == "concat_mlp" and s["svm"]["space"] == {"C": {"low": 1e-4, "high": 100.0, "log": True}}
    assert all(v["modalities"] == ["text", "image"] for v in s.values())  # the largest ablation set
    c = config(tuning={"heads": ["svm"], "space": {"svm": {"C": {"low": 0.1, "high": 10, "log": True}}},
                       "modalities": ["image"]})
    c["heads"]["concat_mlp"] = {"tuned": True}
    s = tuning_specs(c, ablation_grid(c))
    assert list(s) == ["svm", "concat_mlp"] and s["svm"]["space"]["C"]["low"] == 0.1
    assert s["svm"]["modalities"] == ["image"] and "tuned" not in s["concat_mlp"]["params"]
    assert ablation_grid(c)["text__concat_mlp"]["tuned"] and not ablation_grid(c)["text__svm"]["tuned"]


@pytest.mark.parametrize("space,needle", [
    ({"svm": {"gamma_x": {"low": 1, "high": 2}}}, "'gamma_x' is not a tunable parameter"),
    ({"svm": {"C": {"low": 2.0, "high": 1.0}}}, "needs numbers low < high"),
    ({"svm": {"C": {"low": 0.0, "high": 1.0, "log": True}}}, "a log scale needs low > 0"),
    ({"nope": {"C": {"low": 1.0, "high": 2.0}}}, "tuning.space.nope: not a head"),
])
def test_bad_search_spaces_are_named(space, needle):
    c = config(tuning={"space": space})
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        tuning_specs(c, ablation_grid(c))


@pytest.mark.slow
def test_tune_target_then_tuned_ablations(tmp_path):
    """`snakemake tune` on the demo; a rerun does nothing; `tuned: true` ablations use best.json, and re-tuning
    reruns them and nothing upstream."""
    from workflow import count, planned_jobs, snakemake, tiny_config, write_config

    c = tiny_config(tmp_path, "demo", shards=2, demo={"n": 120, "seed": 0}, selection={"folds": 2, "repeats": 1},
                    training={"seeds": [0]}, tuning={"trials": 4, "workers": 2, "heads": ["concat_mlp", "logreg"]})
    snakemake(tmp_path, "tune")
    res = tmp_path / "results" / "demo" / "tuning"
    for head in ("concat_mlp", "logreg"):
        best = json.loads((res / head / "best.json").read_text())
        assert best["counts"]["COMPLETE"] + best["counts"]["PRUNED"] >= 4 and best["counts"]["RUNNING"] == 0
        assert {w["worker"] for w in best["workers"]} == {0, 1}
        for png in ("history.png", "importances.png"):
            assert (res / head / png).read_bytes()[:4] == b"\x89PNG"
        assert "training split only" in (res / head / "report.md").read_text()
    assert "Nothing to be done" in snakemake(tmp_path, "tune").stderr
    c["heads"]["concat_mlp"]["tuned"] = True
    write_config(tmp_path, c)
    snakemake(tmp_path, "ablations")
    best = json.loads((res / "concat_mlp" / "best.json").read_text())["params"]
    m = json.loads((tmp_path / "results/demo/ablations/text+image__concat_mlp/metrics.json").read_text())
    assert {k: m["params"][k] for k in best} == best
    # more trials: the study is extended, and only the tuned head's ablations rerun
    c["tuning"]["trials"] = 5
    write_config(tmp_path, c)
    jobs = planned_jobs(snakemake(tmp_path, "ablations", "-n"))
    assert {r for r, _ in jobs} <= {"tune_worker", "tune_report", "ablation", "summary"}
    assert count(jobs, "tune_worker") == 2 and count(jobs, "tune_report", variant="logreg") == 0
    assert {wc["ablation"] for r, wc in jobs if r == "ablation"} == {"text__concat_mlp", "image__concat_mlp",
                                                                      "text+image__concat_mlp"}


def test_any_worker_that_starts_a_study_runs_the_untuned_setting_once(tmp_path):
    d = make_data()
    journal = tmp_path / "study.journal"
    rec = run_worker(journal, spec(), {**TUNING, "trials": 3}, "macro_f1", d, "classification", d.classes, worker=1)
    run_worker(journal, spec(), {**TUNING, "trials": 4}, "macro_f1", d, "classification", d.classes, worker=0)
    untuned = [t for t in trials(journal, rec["study"]) if t.user_attrs.get("untuned")]
    assert [t.number for t in untuned] == [0] and untuned[0].user_attrs["worker"] == 1

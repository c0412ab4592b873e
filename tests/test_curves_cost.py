"""TensorBoard curves of every neural fit, read back with TensorBoard's own reader, and the cost accounting."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mmpipe.fusion.ablation import run_ablation
from mmpipe.fusion.cost import inference_ms_per_1000
from mmpipe.fusion.heads.base import load_head
from mmpipe.reporting.plots import pareto_front
from mmpipe.reporting.summary import summarize
from test_stage2 import FAST, make_data

SELECTION = {"method": "cv", "folds": 3, "repeats": 1, "inner_val": 0.2}


def _folds(n: int) -> np.ndarray:
    return (np.arange(n) % 3)[None, :]


def _run(tmp_path, head, params, name):
    d = make_data()
    n = len(d.y_train) + len(d.y_val)
    out = tmp_path / "ablations" / name
    r = run_ablation(d, name, ["text", "image"], head, params, [0, 1], out, selection=SELECTION, folds=_folds(n),
                     tensorboard_dir=tmp_path / "tensorboard" / name)
    return r, out


def _scalars(run_dir):
    ea = EventAccumulator(str(run_dir))
    ea.Reload()
    return ea, {tag: [e.value for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def test_every_neural_fit_writes_event_files_that_tensorboard_reads(tmp_path):
    r, _ = _run(tmp_path, "concat_mlp", FAST, "text+image__concat_mlp")
    tb = tmp_path / "tensorboard" / "text+image__concat_mlp"
    runs = sorted(p.name for p in tb.iterdir())
    assert runs == ["repeat0_fold0", "repeat0_fold1", "repeat0_fold2", "seed0", "seed1"]
    for fold in r["folds"]:
        ea, sc = _scalars(tb / f"repeat0_fold{fold['fold']}")
        history = fold["history"]
        assert sc["loss/train"] == pytest.approx([h["train_loss"] for h in history], rel=1e-6)
        assert sc["early_stopping/macro_f1"] == pytest.approx([h["val_macro_f1"] for h in history], rel=1e-6)
        assert sc["learning_rate"] == pytest.approx([FAST.get("lr", 1e-3)] * len(history))
        assert [e.step for e in ea.Scalars("loss/train")] == list(range(1, len(history) + 1))
        # the hparams entry: the fit's held-out score
        assert sc["hparam/macro_f1"] == pytest.approx([fold["scores"]["macro_f1"]])
    _, sc = _scalars(tb / "seed1")
    epochs = r["per_seed"][1]["refit_params"]["epochs"]
    assert len(sc["loss/train"]) == epochs  # the refit trains exactly the folds' median epoch count


def test_a_rerun_replaces_its_runs_and_linear_heads_write_none(tmp_path):
    _run(tmp_path, "concat_mlp", FAST, "a")
    r, _ = _run(tmp_path, "concat_mlp", FAST, "a")
    _, sc = _scalars(tmp_path / "tensorboard" / "a" / "seed0")
    assert len(sc["loss/train"]) == r["per_seed"][0]["refit_params"]["epochs"]  # one run, not two appended
    _run(tmp_path, "logreg", {"threads": 1}, "b")
    assert list((tmp_path / "tensorboard" / "b").iterdir()) == []


@pytest.mark.parametrize("head,params", [("concat_mlp", FAST), ("logreg", {"threads": 1}), ("svm", {"threads": 1})])
def test_cost_is_counted_from_the_fitted_model(tmp_path, head, params):
    r, out = _run(tmp_path, head, params, f"text+image__{head}")
    c = r["cost"]
    model = load_head(head, out / "model_seed1.pt")
    d = make_data()
    if head == "concat_mlp":
        expected = sum(p.numel() for p in model.module_.parameters())
    elif head == "logreg":
        expected = model.model_.coef_.size + model.model_.intercept_.size
    else:  # support vectors, their dual coefficients and intercepts, the calibrator's coefficients
        sv = model.svc_
        expected = (sv.dual_coef_.size + sv.intercept_.size + model.X_sv_.size + model.calibrator_.coef_.size
                    + model.calibrator_.intercept_.size)
    assert c["parameters"] == expected > 0
    assert c["fit_seconds_per_seed"] == pytest.approx(np.mean([s["fit_seconds"] for s in r["per_seed"]]), abs=1e-3)
    assert c["peak_rss_mb"] > 50  # python + numpy alone
    assert c["inference_ms_per_1000"] > 0
    # the same measurement, repeated, is of the same order (latency scales per sample)
    again = inference_ms_per_1000(model, {m: np.concatenate([d.X_test[m]] * 4) for m in ("text", "image")})
    assert 0.02 < again / c["inference_ms_per_1000"] < 50
    assert json.loads((out / "metrics.json").read_text())["cost"] == c
    assert "**Cost:**" in (out / "report.md").read_text()


def test_pareto_front():
    # cost, score: (1, .5) (2, .7) (3, .6) (4, .9) (2, .7) duplicate is on the front too
    front = pareto_front([1, 2, 3, 4, 2], [0.5, 0.7, 0.6, 0.9, 0.7])
    assert front == [True, True, False, True, True]
    assert pareto_front([1, 2], [0.3, 0.2], higher_is_better=False) == [True, True]
    assert pareto_front([1, 2], [0.2, 0.3], higher_is_better=False) == [True, False]


def test_summary_has_a_cost_table_and_the_pareto_figure(tmp_path):
    files = []
    for head, params in (("concat_mlp", FAST), ("logreg", {"threads": 1})):
        _run(tmp_path, head, params, f"text+image__{head}")
        files.append(tmp_path / "ablations" / f"text+image__{head}" / "metrics.json")
    _run(tmp_path, "svm", {"threads": 1}, "text+image__svm")
    files.append(tmp_path / "ablations" / "text+image__svm" / "metrics.json")
    s = summarize(files, tmp_path / "report.md", tmp_path / "summary.json", out_cost_png=tmp_path / "cost.png")
    md = (tmp_path / "report.md").read_text()
    assert "## Cost" in md and "![score against cost](cost.png)" in md
    assert (tmp_path / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(e["cost"]["parameters"] > 0 for e in s["ablations"])
    # the fastest ablation is always on the front
    fastest = min(s["ablations"], key=lambda e: e["cost"]["inference_ms_per_1000"])
    row = next(line for line in md.splitlines() if line.startswith("| ") and f"| {fastest['name']} |" in line)
    assert row.rstrip().endswith("◆ |")

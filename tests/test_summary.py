"""The summary says only what its numbers support, and run_digest gives the end-of-run lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmpipe.reporting.summary import MIN_VAL_PER_CLASS, MIN_VAL_SAMPLES, NO_SPREAD, run_digest, summarize

CLASSES = ("negative", "neutral", "positive")


def metrics(root: Path, name: str, head: str, mods: list[str], val_f1: float, std: float = 0.01,
            test: bool = False, support: tuple[int, int, int] = (25, 15, 30), seeds: int = 3) -> Path:
    """A metrics.json as run_ablation writes it (the fields the summary reads)."""
    def agg(v: float) -> dict:
        out = {m: {"mean": v, "std": std} for m in ("accuracy", "macro_f1", "weighted_f1")}
        out["per_class"] = {c: {"f1": {"mean": v, "std": std}, "support": k} for c, k in zip(CLASSES, support)}
        return out

    d = root / name
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({
        "name": name, "head": head, "modalities": mods, "params": {}, "seeds": list(range(seeds)),
        "classes": list(CLASSES), "task": "classification",
        "n": {"train": 300, "val": sum(support), "test": 90}, "test_labelled": test,
        "val": agg(val_f1), "test": agg(val_f1 - 0.03) if test else None,
        "majority_baseline": {"prediction": "positive", "rule": "most frequent training class",
                              "val": {"accuracy": 0.43, "macro_f1": 0.20, "weighted_f1": 0.26},
                              "test": {"accuracy": 0.40, "macro_f1": 0.19, "weighted_f1": 0.23} if test else None},
    }))
    return d / "metrics.json"


def grid(root: Path, **kw) -> list[Path]:
    std_svm = kw.pop("std_svm", 0.0)
    std = kw.pop("std", 0.01)
    return [metrics(root, "text__gated", "gated", ["text"], 0.62, std=std, **kw),
            metrics(root, "image__gated", "gated", ["image"], 0.60, std=std, **kw),
            metrics(root, "text+image__gated", "gated", ["text", "image"], 0.80, std=std, **kw),
            metrics(root, "text+image__svm", "svm", ["text", "image"], 0.66, std=std_svm, **kw)]


def test_no_test_labels_no_test_claims(tmp_path):
    s = summarize(grid(tmp_path), tmp_path / "report.md", tmp_path / "summary.json")
    md = (tmp_path / "report.md").read_text()
    assert s["test_labelled"] is False
    assert "unbiased" not in md and "test macro-F1" not in md and "| test |" not in md
    assert "no labels" in md and "no labelled test split" in md
    assert s["validation"] == {"n": 70, "per_class": dict(zip(CLASSES, (25, 15, 30))), "too_small": False,
                               "reasons": [], "min_samples": MIN_VAL_SAMPLES, "min_per_class": MIN_VAL_PER_CLASS}
    assert "too small" not in md


def test_test_labels_give_the_test_side(tmp_path):
    s = summarize(grid(tmp_path, test=True), tmp_path / "report.md", tmp_path / "summary.json")
    md = (tmp_path / "report.md").read_text()
    assert s["test_labelled"] is True
    assert "test scores are the unbiased ones" in md and "| test | macro-F1 |" in md
    assert "and beats it on test macro-F1" in md


def test_zero_spread_is_not_significance(tmp_path):
    # both stds 0 (one seed each): the difference is not called larger than the spread
    s = summarize(grid(tmp_path, std=0.0, seeds=1), tmp_path / "report.md", tmp_path / "summary.json")
    assert s["baseline_comparison"]["val_macro_f1_delta"] == pytest.approx(0.14)
    assert s["baseline_comparison"]["val_macro_f1_delta_exceeds_std"] is None
    md = (tmp_path / "report.md").read_text()
    row = next(ln for ln in md.splitlines() if ln.startswith("| val | macro-F1 |"))
    assert NO_SPREAD in row and "yes" not in row
    assert "one seed each" in md and "say nothing" in md


def test_some_spread_is_compared(tmp_path):
    s = summarize(grid(tmp_path, std=0.02, std_svm=0.0), tmp_path / "r.md", tmp_path / "s.json")
    assert s["baseline_comparison"]["val_macro_f1_delta_exceeds_std"] is True
    row = next(ln for ln in (tmp_path / "r.md").read_text().splitlines() if ln.startswith("| val | macro-F1 |"))
    assert row.endswith("| yes |")


@pytest.mark.parametrize("support, reason", [((12, 8, 15), "neutral: 8"), ((15, 14, 15), "44 samples")])
def test_small_validation_split_warns(tmp_path, support, reason):
    s = summarize(grid(tmp_path, support=support), tmp_path / "report.md", tmp_path / "summary.json")
    v = s["validation"]
    assert v["too_small"] and any(reason in r for r in v["reasons"])
    md = (tmp_path / "report.md").read_text()
    warning = next(ln for ln in md.splitlines() if "too small to rank on" in ln)
    assert reason in warning and md.index(warning) < md.index("## Ranking")
    lines = run_digest(tmp_path / "summary.json", tmp_path / "p.txt", tmp_path / "report.md")
    assert any(line.startswith("Warning:") and reason in line for line in lines)


def test_run_digest(tmp_path):
    summarize(grid(tmp_path), tmp_path / "report.md", tmp_path / "summary.json")
    (tmp_path / "predictions.txt").write_text("guid,tag\n")
    lines = run_digest(tmp_path / "summary.json", tmp_path / "predictions.txt", tmp_path / "report.md")
    assert 3 <= len(lines) <= 5 and all(len(line) < 160 for line in lines)
    assert lines[0].startswith("Selected: text+image__gated (gated on text+image)") and "of 4 ablations" in lines[0]
    assert lines[1] == ("Validation macro-F1 0.800 ± 0.010; svm baseline 0.660 ± 0.000; "
                        "majority baseline 0.200.")
    assert lines[2:] == [f"Predictions: {tmp_path / 'predictions.txt'}", f"Report: {tmp_path / 'report.md'}"]
    # a missing output is flagged, a missing summary gives nothing (a run that stopped before it)
    (tmp_path / "predictions.txt").unlink()
    assert run_digest(tmp_path / "summary.json", tmp_path / "predictions.txt")[-1].endswith("(not written)")
    assert run_digest(tmp_path / "nope.json", tmp_path / "p.txt", tmp_path / "r.md") == []


def test_run_digest_with_test_and_forced_svm(tmp_path):
    files = grid(tmp_path, test=True)
    summarize(files, tmp_path / "report.md", tmp_path / "summary.json", select="text+image__svm")
    lines = run_digest(tmp_path / "summary.json")
    assert lines[0].startswith("Selected: text+image__svm (svm on text+image), set in the config")
    assert lines[1] == ("Validation macro-F1 0.660 ± 0.000 (test 0.630 ± 0.000); it is the svm baseline itself; "
                        "majority baseline 0.200.")


def test_select_among_limits_the_choice_and_ranks_the_rest(tmp_path):
    """predict.select_among: the best ablation on an allowed modality set is selected; the better one outside
    them is still ranked first and named in the report."""
    s = summarize(grid(tmp_path), tmp_path / "report.md", tmp_path / "summary.json", select_among=[["text"]])
    assert s["selected"] == "text__gated" and s["ablations"][0]["name"] == "text+image__gated"
    assert s["selected_by"].endswith("among text")
    md = (tmp_path / "report.md").read_text()
    assert "among the ablations on text (`predict.select_among`)" in md and "is `text+image__gated`" in md
    with pytest.raises(ValueError, match="matches no ablation"):
        summarize(grid(tmp_path / "b"), tmp_path / "r.md", tmp_path / "s.json", select_among=[["audio"]])

"""One-file extension: a head, an encoder backend and a layout, each one file in a folder outside the package,
named under ``plugins:``, are checked at planning time and run through the real workflow."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from workflow import snakemake

PLUGIN = '''
"""A layout, an encoder backend and a head, as a user would write them."""
import json
from pathlib import Path

import numpy as np

from mmpipe.core.atomic import atomic_path
from mmpipe.encoders import BatchedEncoder, register as register_encoder
from mmpipe.fusion.heads import Head, register as register_head
from mmpipe.ingest.layouts import Layout, LayoutRead, RawSample, register as register_layout


@register_layout("jsonl_set")
class JsonlSet(Layout):
    """samples.jsonl: one {"id", "text", "label", "split"} per line."""

    @staticmethod
    def source_files(root):
        return [str(Path(root) / "samples.jsonl")]

    @staticmethod
    def read(root, config):
        path = Path(root) / "samples.jsonl"
        samples = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            r = json.loads(line)
            samples.append(RawSample(guid=r["id"], source=str(path), line=n, split=r["split"],
                                     label=r.get("label"), text=r["text"]))
        return LayoutRead(samples=samples)


@register_encoder("letter_counts")
class LetterCounts(BatchedEncoder):
    """Relative frequency of each of ``letters`` in the text."""

    modality = "text"
    KEYS = frozenset({"letters", "batch_size"})

    def __init__(self, letters="abcdefghijklmnopqrstuvwxyz", batch_size=16):
        self.letters, self.batch_size, self._dim = letters, batch_size, len(letters)

    def inputs(self, items):
        return list(items)

    def forward(self, batch):
        counts = np.array([[t.lower().count(c) for c in self.letters] for t in batch], dtype=np.float32)
        return counts / np.maximum(counts.sum(1, keepdims=True), 1)

    def fingerprint(self):
        return {"backend": self.backend, "letters": self.letters}


@register_head("centroid")
class Centroid(Head):
    """Nearest class centroid on the concatenated features; softmax over negative distances."""

    defaults = {**Head.defaults, "temperature": 1.0}

    def fit(self, X, y, X_val=None, y_val=None, *, groups=None, groups_val=None):
        Z = np.concatenate([X[m] for m in sorted(X)], axis=1)
        k = self.params["n_classes"] or int(y.max()) + 1
        self.centroids_ = np.stack([Z[y == c].mean(0) if (y == c).any() else np.zeros(Z.shape[1]) for c in range(k)])
        return self

    def predict_proba(self, X, *, groups=None):
        Z = np.concatenate([X[m] for m in sorted(X)], axis=1)
        d = ((Z[:, None, :] - self.centroids_[None]) ** 2).sum(-1) / self.params["temperature"]
        e = np.exp(-(d - d.min(1, keepdims=True)))
        return e / e.sum(1, keepdims=True)

    def save(self, path):
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"params": self.params, "centroids": self.centroids_.tolist()}))

    @classmethod
    def load(cls, path):
        state = json.loads(Path(path).read_text())
        head = cls(**state["params"])
        head.centroids_ = np.asarray(state["centroids"])
        return head
'''


def write_set(root: Path, n: int = 80) -> Path:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        label = ["neg", "pos"][i % 2]
        words = ["good joy yay wow"] if label == "pos" else ["bad sad ugh meh"]
        text = " ".join(words * int(rng.integers(1, 4)) + ["the day"])
        split = "test" if i >= n - 10 else "train"
        lines.append(json.dumps({"id": f"s{i}", "text": text, "split": split,
                                 "label": None if split == "test" else label}))
    root.mkdir(parents=True)
    (root / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return root


def plugin_config(work: Path, **head) -> dict:
    (work / "my_plugins").mkdir(exist_ok=True)
    (work / "my_plugins" / "extras.py").write_text(textwrap.dedent(PLUGIN))
    config = {"data": str(write_set(work / "letters")) if not (work / "letters").exists() else str(work / "letters"),
              "layout": "jsonl_set", "plugins": ["my_plugins"], "labels": {"classes": ["neg", "pos"]},
              "shards": 2, "split": {"val_fraction": 0.25},
              "encoders": {"text": {"backend": "letter_counts", "letters": "gjywbsum"}},
              "heads": {"centroid": {"temperature": 0.5, **head}, "logreg": {}},
              "training": {"seeds": [0]}}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    return config


def test_plugin_head_encoder_and_layout_run_through_the_workflow(tmp_path):
    plugin_config(tmp_path)
    snakemake(tmp_path, "predictions")
    res = tmp_path / "results" / "letters"
    metrics = json.loads((res / "ablations" / "text__centroid" / "metrics.json").read_text())
    assert metrics["head"] == "centroid"
    assert metrics["cv"]["accuracy"]["mean"] == 1.0  # the letters separate the two classes exactly, in every fold
    meta = json.loads(__import__("pyarrow.parquet").parquet.read_schema(
        next((res / "features" / "text").glob("*.parquet"))).metadata[b"mmpipe"])
    assert meta["fingerprint"] == {"backend": "letter_counts", "letters": "gjywbsum"}
    rows = (res / "predictions.txt").read_text().splitlines()
    assert rows[0] == "guid,tag" and len(rows) == 11


@pytest.mark.parametrize("head, word", [({"temprature": 2}, "temprature")])
def test_plugin_parameters_are_checked_at_planning_time(tmp_path, head, word):
    plugin_config(tmp_path, **head)
    proc = snakemake(tmp_path, "-n", "predictions", check=False)
    assert proc.returncode != 0
    assert f"heads.centroid: head 'centroid': unknown parameter(s) {word}" in proc.stdout + proc.stderr

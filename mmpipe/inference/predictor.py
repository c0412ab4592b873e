"""``Predictor``: a model bundle (``mmpipe.inference.bundle``) applied to new raw samples.

Checked rows (``mmpipe.inference.inputs.check_samples``) are encoded with the bundle's encoders, reusing the
run's cached vectors where the guid and content hash match, then each row goes to the first head of the bundle
whose modalities it has. Encoders are built once per ``Predictor`` and checked against the bundle's fingerprints
before any vector is used.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmpipe.core.errors import MmpipeError
from mmpipe.encoders.extract import INPUT_COLUMN
from mmpipe.inference.bundle import load_model_json
from mmpipe.ingest.dialogue import COLUMN as CONTEXT, encoder_items

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """One row per predicted sample, in input order: the tag, the probabilities (or the score) and the
    ablation that served it."""

    guids: list[str]
    tags: list[str]
    classes: list[str]
    outputs: np.ndarray                     # (n, n_classes) probabilities, or (n,) scores for regression
    served_by: list[str]
    regression: bool = False
    reused: dict[str, int] = field(default_factory=dict)  # encoder -> cached vectors reused

    def records(self) -> list[dict[str, Any]]:
        """JSON-ready rows: guid, tag, ``p_<class>`` per class (or ``score``) and ``served_by``."""
        out = []
        for i, g in enumerate(self.guids):
            rec: dict[str, Any] = {"guid": g, "tag": self.tags[i]}
            if self.regression:
                rec["score"] = float(self.outputs[i])
            else:
                rec.update({f"p_{c}": float(self.outputs[i, j]) for j, c in enumerate(self.classes)})
            rec["served_by"] = self.served_by[i]
            out.append(rec)
        return out


def _fingerprint_diff(want: dict[str, Any], got: dict[str, Any]) -> str:
    keys = sorted(set(want) | set(got))
    diffs = [f"{k}: bundle {want.get(k)!r}, here {got.get(k)!r}" for k in keys if want.get(k) != got.get(k)]
    return "; ".join(diffs) or "the fingerprints differ"


class Predictor:
    """The bundle at ``bundle_dir``, ready to predict; ``runtime``: ``torch`` or ``onnx`` (an exported head,
    ``mmpipe.inference.onnx_export``). Thread-safe: one prediction runs at a time."""

    def __init__(self, bundle_dir: str | Path, threads: int | None = None, use_cache: bool = True,
                 runtime: str = "torch", onnx_dir: str | Path | None = None):
        self.dir = Path(bundle_dir)
        self.model = load_model_json(self.dir)
        self.config = json.loads((self.dir / "config.json").read_text(encoding="utf-8"))
        self.task = self.model["task"]
        self.regression = self.task == "regression"
        self.classes = list(self.model.get("classes") or [])
        self.threads = threads
        self.runtime = runtime
        self.onnx_dir = Path(onnx_dir) if onnx_dir else self.dir / "onnx"
        if runtime == "onnx":
            from mmpipe.inference.onnx_export import check_export

            check_export(self.onnx_dir, self.model)
        self._encoders: dict[str, Any] = {}
        self._heads: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._cache = self._load_cache() if use_cache else {}

    # --- encoders -------------------------------------------------------------------------------------
    def encoder(self, name: str) -> Any:
        """The bundle's encoder ``name``, built once and checked against the bundle's fingerprint."""
        if name in self._encoders:
            return self._encoders[name]
        entry = self.model["encoders"][name]
        spec = dict(entry["spec"])
        if spec.get("adapt"):
            from mmpipe.encoders.adapt import CrossfitEncoder

            enc = CrossfitEncoder(spec, [self.dir / a for a in entry["adapters"]], self.threads)
            base = entry["fingerprint"].get("adapted")
            if base and enc.base_fingerprint_id() != base:
                raise MmpipeError(f"encoder {name!r}: its adapters were trained from base encoder {base}, but "
                                  f"{spec.get('model')!r} here has fingerprint {enc.base_fingerprint_id()} "
                                  f"(other weights or preprocessing); install the weights the bundle was built with")
        elif spec.get("runtime") == "onnx":
            from mmpipe.encoders.text_onnx import OnnxTextEncoder

            enc = OnnxTextEncoder(self.dir / entry["onnx"], threads=self.threads)
        else:
            from mmpipe.encoders.base import ENCODERS, build_encoder

            if self.threads and "threads" in ENCODERS.get(spec["backend"]).KEYS:
                spec["threads"] = self.threads
            enc = build_encoder(spec)
        if enc.fingerprint_id() != entry["fingerprint_id"]:
            raise MmpipeError(f"encoder {name!r} does not match the bundle: "
                              f"{_fingerprint_diff(entry['fingerprint'], enc.fingerprint())}")
        self._encoders[name] = enc
        return enc

    def input_column(self, name: str) -> str:
        """The row field an encoder reads: ``text``, a media path, or an imported ``vector:<field>``."""
        spec = self.model["encoders"][name]["spec"]
        if spec.get("column"):
            return spec["column"]
        if spec["backend"] == "imported":
            from mmpipe.ingest.vector_columns import vector_column

            return vector_column(spec["field"])
        return INPUT_COLUMN.get(self.model["encoders"][name]["modality"], "text")

    def _load_cache(self) -> dict[str, dict[str, tuple[str, np.ndarray]]]:
        """encoder -> guid -> (content hash, vector) from the run's shards, where they still match the bundle."""
        cache = self.model.get("cache")
        if not cache:
            return {}
        manifest = self.dir / cache["manifest"]
        if not manifest.is_file():
            return {}
        import polars as pl

        from mmpipe.core.shards import read_meta, read_shards

        hashes = dict(pl.read_parquet(manifest, columns=["guid", "content_hash"]).iter_rows())
        out: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
        for name, paths in cache["features"].items():
            files = [self.dir / p for p in paths]
            if name not in self.model["encoders"] or not files or not all(f.is_file() for f in files):
                continue
            if any(read_meta(f).get("fingerprint_id") != self.model["encoders"][name]["fingerprint_id"]
                   for f in files):
                continue  # the shards were rebuilt by another encoder since the bundle was made
            guids, X, _ = read_shards(files)
            out[name] = {g: (hashes.get(g), X[i]) for i, g in enumerate(guids)}
        return out

    def _cached(self, name: str, row: dict[str, Any]) -> np.ndarray | None:
        hit = self._cache.get(name, {}).get(row["guid"])
        return hit[1] if hit is not None and hit[0] == row.get("content_hash") else None

    def available(self, rows: list[dict[str, Any]], name: str) -> np.ndarray:
        """Which rows have encoder ``name``'s input (or its cached vector)."""
        col = self.input_column(name)
        return np.array([r.get(col) is not None or self._cached(name, r) is not None for r in rows], dtype=bool)

    def features(self, rows: list[dict[str, Any]], need: dict[str, list[int]], progress: bool = False
                 ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Per encoder: ``(n, dim)`` vectors of the rows in ``need[encoder]`` (cached where the guid and content
        hash match, else encoded in one batched call; NaN for the other rows), and how many were reused."""
        X, reused = {}, {}
        for name, idx in need.items():
            col = self.input_column(name)
            out = np.full((len(rows), int(self.model["encoders"][name]["dim"])), np.nan, dtype=np.float32)
            todo = []
            for i in idx:
                vec = self._cached(name, rows[i])
                if vec is not None:
                    out[i] = vec
                else:
                    todo.append(i)
            if todo:
                items = [rows[i][col] for i in todo]
                if col == "text":
                    items = encoder_items(items, [rows[i].get(CONTEXT) for i in todo],
                                          self.model["encoders"][name]["spec"])
                vec = self.encoder(name).encode(items, progress=progress)
                if vec.shape[1] != out.shape[1]:
                    raise MmpipeError(f"encoder {name!r} gave vectors of width {vec.shape[1]}, the bundle's heads "
                                      f"take {out.shape[1]}")
                out[todo] = vec
            X[name], reused[name] = out, len(idx) - len(todo)
        return X, reused

    # --- heads ----------------------------------------------------------------------------------------
    def heads(self, entry: dict[str, Any]) -> list[Any]:
        key = entry["ablation"]
        if key not in self._heads:
            if self.runtime == "onnx":
                from mmpipe.inference.onnx_export import OnnxHead

                self._heads[key] = [OnnxHead(self.onnx_dir, entry, s) for s in entry["seeds"]]
            else:
                from mmpipe.fusion.heads.base import HEADS

                cls = HEADS.get(entry["head"])
                self._heads[key] = [cls.load(self.dir / f) for f in entry["files"]]
        return self._heads[key]

    def head_outputs(self, entry: dict[str, Any], X: dict[str, np.ndarray], rows: list[dict[str, Any]]
                     ) -> np.ndarray:
        """The seeds' mean output of one bundle head on rows that have all its modalities."""
        from mmpipe.fusion.context import add_context, sequence_index
        from mmpipe.fusion.heads.base import HEADS
        from mmpipe.fusion.predict import head_outputs

        Xm = {m: X[m] for m in entry["modalities"]}
        groups = np.array([r["group"] if r.get("group") is not None else f"\0{r['guid']}" for r in rows],
                          dtype=object)
        if entry.get("context") not in (None, "none"):
            Xm = add_context(Xm, groups, entry["context"])
        seq = sequence_index(groups, [r["guid"] for r in rows]) if HEADS.get(entry["head"]).uses_groups else None
        return head_outputs(self.heads(entry), Xm, seq, self.regression)

    def predict_rows(self, rows: list[dict[str, Any]], progress: bool = False) -> Predictions:
        """Predict checked rows; a row that no head of the bundle can take is an ``MmpipeError`` naming it."""
        with self._lock:
            return self._predict_rows(rows, progress)

    def _predict_rows(self, rows: list[dict[str, Any]], progress: bool) -> Predictions:
        heads = self.model["heads"]
        names = sorted({m for e in heads for m in e["modalities"]})
        have = {name: self.available(rows, name) for name in names}
        served: list[int | None] = []
        for i in range(len(rows)):
            served.append(next((k for k, e in enumerate(heads) if all(have[m][i] for m in e["modalities"])), None))
        refused = [i for i, k in enumerate(served) if k is None]
        if refused:
            lacks = lambda i: [m for m in heads[0]["modalities"] if not have[m][i]]  # noqa: E731
            detail = "; ".join(f"{rows[i]['guid']} (no {', '.join(lacks(i))})" for i in refused[:10])
            more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
            raise MmpipeError(f"{len(refused)} sample(s) lack a modality that every head of the bundle needs: "
                              f"{detail}{more}; see missing_modalities in {self.dir / 'model.json'}")
        n = len(rows)
        need: dict[str, list[int]] = {}
        for i, k in enumerate(served):
            for m in heads[k]["modalities"]:  # type: ignore[index]
                need.setdefault(m, []).append(i)
        X, reused = self.features(rows, need, progress)  # only what the serving heads take
        out = np.zeros((n,) if self.regression else (n, len(self.classes)), dtype=np.float64)
        for k, entry in enumerate(heads):
            idx = [i for i in range(n) if served[i] == k]
            if idx:
                Xk = {m: X[m][idx] for m in entry["modalities"]}
                out[idx] = self.head_outputs(entry, Xk, [rows[i] for i in idx])
        if self.regression:
            from mmpipe.fusion.predict import score_tags

            tags = score_tags(out, self.classes) if self.classes else [f"{s:.3f}" for s in out]
        else:
            tags = [self.classes[j] for j in out.argmax(axis=1)]
        return Predictions([r["guid"] for r in rows], tags, self.classes, out,
                           [heads[k]["ablation"] for k in served], self.regression, reused)  # type: ignore[index]

    def predict_samples(self, samples: list[Any], progress: bool = False, skip_bad: bool = False
                        ) -> tuple[Predictions, list[Any]]:
        """Check, encode and predict ``RawSample``s; bad samples raise (naming each), or with ``skip_bad`` are
        returned beside the predictions of the good ones."""
        from mmpipe.inference.inputs import check_samples
        from mmpipe.ingest.manifest import _combined

        rows, bad = check_samples(samples, self.config)
        if bad and not skip_bad:
            raise _combined(bad, hint="--skip-bad predicts the others and lists these")
        return self.predict_rows(rows, progress), bad


def manifest_rows(manifest_path: str | Path, split: str, root: str | Path) -> list[dict[str, Any]]:
    """The manifest's rows of one split, in its order, with media paths made absolute (under ``root``)."""
    import polars as pl

    from mmpipe.ingest.manifest import MEDIA

    df = pl.read_parquet(manifest_path).filter(pl.col("split") == split)
    rows = df.to_dicts()
    for r in rows:
        for key in MEDIA:
            if r.get(key) is not None:
                r[key] = str(Path(root) / r[key])
    return rows

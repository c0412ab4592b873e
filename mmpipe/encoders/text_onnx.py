"""``runtime: onnx`` for a frozen ``hf_text`` encoder: export it once to ONNX, then encode on onnxruntime.

A torch text job spends seconds before its first batch: importing torch and transformers, and
``from_pretrained`` (which imports torch._dynamo, sympy and scipy through transformers). With ``runtime: onnx``
the workflow's ``encoder_onnx`` step exports the model once (``export``: the model's last hidden state as a graph,
its tokenizer as ``tokenizer.json``, checked against the torch encoder), and every extraction job then needs only
onnxruntime, tokenizers and numpy: ``OnnxTextEncoder``. Tokenisation, length-sorted batching, pooling (mean, CLS,
max, over the text's own segment with ``context``) and normalisation are the torch encoder's.

The vectors agree with the torch encoder's to ``TOLERANCE`` (checked at export), not bit for bit, so the
fingerprint is the torch encoder's plus ``"runtime": "onnxruntime"``: the two never share cached vectors.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmpipe.core.atomic import atomic_dir
from mmpipe.core.errors import ConfigError, MmpipeError
from mmpipe.encoders.base import BatchedEncoder

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx")
GRAPH, TOKENIZER, META = "model.onnx", "tokenizer.json", "encoder.json"
OPSET = 17
TOLERANCE = 1e-4  # max abs difference to the torch encoder's vectors, checked at export
CHECK_TEXTS = ["good", "this movie is so very good and the music is great", "", "i hate it", "ok " * 200]


def check_runtime(spec: dict[str, Any]) -> None:
    """Planning-time check of an entry's ``runtime``: ``onnx`` is for frozen ``hf_text`` encoders."""
    runtime = spec.get("runtime", "torch")
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "onnx" and spec.get("backend") != "hf_text":
        raise ConfigError(f"runtime: onnx is for hf_text encoders, not {spec.get('backend')!r}")
    if runtime == "onnx" and spec.get("adapt"):
        raise ConfigError("runtime: onnx is for frozen encoders; an adapted one (adapt:) runs its fold models on torch")


def torch_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The entry as the torch encoder takes it (without ``runtime``)."""
    return {k: v for k, v in spec.items() if k != "runtime"}


def export(spec: dict[str, Any], out_dir: str | Path, threads: int | None = None) -> dict[str, Any]:
    """Export the ``hf_text`` entry ``spec`` to ``out_dir`` (the graph, ``tokenizer.json``, ``encoder.json``),
    checked against the torch encoder on a few texts (and text/context pairs); returns the metadata."""
    import torch

    from mmpipe.encoders.base import build_encoder

    enc = build_encoder({**torch_spec(spec), "device": "cpu", **({"threads": threads} if threads else {})})
    if not getattr(enc.tokenizer, "is_fast", False):
        raise ConfigError(f"runtime: onnx needs a fast (tokenizers) tokenizer; {spec.get('model')!r} has "
                          f"{type(enc.tokenizer).__name__}")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc.tokenizer.model_input_names]

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = enc.model

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, xs))).last_hidden_state.float()

    pair = enc.tokenizer(["a a a a a a", "a"], ["b b", "b b b"], padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "hidden"]}
    fingerprint = {**enc.fingerprint(), "runtime": "onnxruntime"}
    meta = {"fingerprint": fingerprint, "model": spec.get("model"), "pooling": enc.pooling,
            "normalize": enc.normalize, "tweet_normalize": enc.tweet_normalize, "context": enc.with_context,
            "max_length": enc.max_length, "batch_size": enc.batch_size, "dim": int(enc.dim), "inputs": names,
            "pad_token_id": int(enc.tokenizer.pad_token_id or 0), "padding_side": enc.tokenizer.padding_side}
    with atomic_dir(out_dir) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Hidden().eval(), tuple(pair[n].to(torch.int64) for n in names), str(tmp / GRAPH),
                              dynamo=False, input_names=names, output_names=["hidden"], dynamic_axes=axes,
                              opset_version=OPSET, do_constant_folding=True)
        enc.tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER))
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        items = CHECK_TEXTS if not enc.with_context else [(t, c) for t, c in zip(CHECK_TEXTS, [None, "so good", "",
                                                                                              "b " * 300, "ok"])]
        want = enc.encode(items, progress=False)
        got = OnnxTextEncoder(tmp, threads=threads).encode(items, progress=False)
        diff = float(np.abs(got - want).max())
        if not np.isfinite(diff) or diff > TOLERANCE:
            raise MmpipeError(f"{out_dir}: the ONNX graph of {spec.get('model')!r} disagrees with the torch encoder "
                              f"(max abs difference {diff:.3g}, tolerance {TOLERANCE})")
        meta["check_max_abs_diff"] = diff
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    return meta


def export_logged(name: str, spec: dict[str, Any], out_dir: str | Path, threads: int | None = None) -> None:
    """``export``, with a log line: how long it took and how far the graph is from the torch encoder."""
    start = time.perf_counter()
    meta = export(spec, out_dir, threads)
    log.info("%s: exported %s to %s in %.1f s; max abs difference to the torch encoder %.2g (tolerance %g)", name,
             spec.get("model"), out_dir, time.perf_counter() - start, meta["check_max_abs_diff"], TOLERANCE)


class OnnxTextEncoder(BatchedEncoder):
    """An exported ``hf_text`` encoder (the folder ``export`` wrote) on onnxruntime's CPU provider.

    Needs numpy, tokenizers and onnxruntime only. The session is opened on first use (``warm_up``)."""

    modality = "text"
    unit = "text"
    backend = "hf_text"

    def __init__(self, path: str | Path, threads: int | None = None, batch_size: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.path = Path(path)
        meta_path = self.path / META
        if not meta_path.is_file():
            raise MmpipeError(f"{self.path}: not an exported text encoder ({META} missing); rerun its encoder_onnx step")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.model_name = f"{self.meta['model']} (onnx)"
        self.threads = threads
        self.batch_size = int(batch_size or self.meta["batch_size"])
        self.with_context = bool(self.meta["context"])
        self._dim = int(self.meta["dim"])
        self.tokenizer = Tokenizer.from_file(str(self.path / TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(self.meta["max_length"]))
        self._session: Any = None
        self._encoded: dict[Any, Any] = {}  # item -> its encoding, from the last ``order``

    def fingerprint(self) -> dict[str, Any]:
        return self.meta["fingerprint"]

    @property
    def session(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.inter_op_num_threads = 1
            if self.threads:
                so.intra_op_num_threads = int(self.threads)
            self._session = ort.InferenceSession(str(self.path / GRAPH), so, providers=["CPUExecutionProvider"])
        return self._session

    def warm_up(self) -> None:
        self.forward([self.blank()])

    def inputs(self, items: Sequence[Any]) -> list[Any]:
        """As the torch encoder takes them: ``mmpipe.encoders.text_hf.text_inputs``."""
        from mmpipe.encoders.text_hf import text_inputs

        return text_inputs(items, self.meta["tweet_normalize"], self.with_context)

    def blank(self) -> Any:
        return ("a", None) if self.with_context else "a"

    def _encode(self, items: list[Any]) -> list[Any]:
        if not self.with_context:
            return self.tokenizer.encode_batch(items)
        return [self.tokenizer.encode(t, c) if c else self.tokenizer.encode(t) for t, c in items]

    def order(self, items: list[Any]) -> np.ndarray:
        """Longest first (by token count), as the torch encoder batches. The encodings are kept for the batches
        (``collate``), so that each text is tokenised once."""
        encs = self._encode(items)
        self._encoded = dict(zip(items, encs))
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(items))
        return np.argsort(-lengths, kind="stable")

    def collate(self, batch: list[Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The graph's inputs, tokenised and padded to the longest of the batch, and the pooling mask (the
        attention mask, or the text's own segment with ``context``)."""
        known = self._encoded
        encs = [known[x] for x in batch] if all(x in known for x in batch) else self._encode(batch)
        width = max(len(e.ids) for e in encs)
        right = self.meta["padding_side"] == "right"
        cols = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        feed = {n: np.full((len(encs), width), self.meta["pad_token_id"] if n == "input_ids" else 0, dtype=np.int64)
                for n in self.meta["inputs"]}
        pool = np.zeros((len(encs), width), dtype=np.float32)
        for i, e in enumerate(encs):
            at = slice(0, len(e.ids)) if right else slice(width - len(e.ids), width)
            for n in feed:
                feed[n][i, at] = getattr(e, cols[n])
            seq = e.sequence_ids
            own = seq.index(1) if 1 in seq else len(e.ids)  # the text's segment and its leading specials
            pool[i, at.start: at.start + own] = 1.0
        return feed, pool if self.with_context else feed["attention_mask"].astype(np.float32)

    def embed(self, collated: tuple[dict[str, np.ndarray], np.ndarray]) -> np.ndarray:
        """The graph's last hidden state, pooled (and normalised where configured)."""
        feed, mask = collated
        hidden = self.session.run(["hidden"], feed)[0]
        if self.meta["pooling"] == "cls":
            vec = hidden[:, 0]
        elif self.meta["pooling"] == "max":
            vec = np.where(mask[..., None] > 0, hidden, -np.inf).max(1)
            vec = np.where(np.isinf(vec), 0.0, vec)
        else:
            vec = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        if self.meta["normalize"]:
            vec = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        return vec.astype(np.float32)

    def forward(self, batch: list[Any]) -> np.ndarray:
        return self.embed(self.collate(batch))

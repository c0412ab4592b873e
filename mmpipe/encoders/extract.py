"""Run one encoder over one shard slice of the manifest and write its feature shard.

The shard is the job's own earlier output as well (a Snakemake ``update()`` output): the vectors of samples whose
(guid, content hash, encoder fingerprint) it already holds are kept byte for byte, and only the rest are encoded.
A removed sample drops out with its slice row. polars (and, through the encoder, torch) are imported when a shard
is extracted, not with this module.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmpipe.encoders.base import build_encoder
from mmpipe.core.shards import previous_shards, reuse_or_encode, write_shard

log = logging.getLogger(__name__)

# Which shard-slice column an encoder of each modality reads.
INPUT_COLUMN = {"text": "text", "image": "image_path", "audio": "audio_path", "video": "video_path"}


def extract_shard(slice_path: str | Path, name: str, spec: dict[str, Any], out_path: str | Path,
                  data_root: str | Path = ".", threads: int = 1, progress: bool = True,
                  adapters: list[str] | None = None, folds: str | None = None, onnx: str | None = None) -> int:
    """Write the vectors of every sample of ``slice_path`` that has this encoder's modality, reusing those that
    ``out_path`` already holds; returns how many were encoded.

    Media paths in the slice are relative to ``data_root``; ``threads`` goes to the encoder (torch's threads, or
    librosa's workers). An entry with ``adapt:`` is encoded cross-fitted with its fold ``adapters`` and the
    ``folds`` file (``mmpipe.encoders.adapt``); one with ``runtime: onnx`` runs the ``onnx`` export folder on
    onnxruntime (``mmpipe.encoders.text_onnx``).
    """
    if spec.get("adapt"):
        from mmpipe.encoders.adapt import extract_shard_crossfitted

        if not adapters or not folds:
            raise ValueError(f"encoder {name!r} is adapted (adapt:) and needs its fold adapters and the folds file")
        return extract_shard_crossfitted(str(slice_path), name, spec, str(out_path), adapters, folds,
                                         threads=max(1, threads), progress=progress, data_root=data_root)

    from mmpipe.encoders.base import ENCODERS

    takes_threads = "threads" in ENCODERS.get(spec["backend"]).KEYS
    t0 = time.perf_counter()
    if spec.get("runtime") == "onnx":
        from mmpipe.encoders.text_onnx import OnnxTextEncoder

        if not onnx:
            raise ValueError(f"encoder {name!r} runs on onnxruntime (runtime: onnx) and needs its export folder")
        encoder = OnnxTextEncoder(onnx, threads=max(1, threads), batch_size=spec.get("batch_size"))
    else:
        encoder = build_encoder({**spec, "threads": max(1, threads)} if takes_threads else spec)
    guids, hashes, items = shard_items(slice_path, encoder, spec, data_root)
    times = {"built": time.perf_counter() - t0, "loaded": 0.0, "encoded": 0.0}

    def encode_rows(rows: list[int]) -> np.ndarray:
        start = time.perf_counter()
        encoder.warm_up()
        times["loaded"], start = time.perf_counter() - start, time.perf_counter()
        out = encoder.encode(items[rows] if isinstance(items, np.ndarray) else [items[i] for i in rows],
                             progress=progress)
        times["encoded"] = time.perf_counter() - start
        return out

    vectors, encoded = reuse_or_encode(previous_shards(out_path), encoder.fingerprint_id(), guids, hashes,
                                       encode_rows)
    meta = {"encoder": name, "fingerprint": encoder.fingerprint(), "fingerprint_id": encoder.fingerprint_id(),
            "modality": encoder.modality, "dim": int(vectors.shape[1])}
    write_shard(out_path, guids, vectors, meta, hashes)
    rate = encoded / times["encoded"] if encoded and times["encoded"] > 0 else 0.0
    log.info("%s: encoded %d, reused %d of %s (width %d); encoder built in %.2f s, model loaded in %.2f s, "
             "encoded in %.2f s (%.1f per s); %.2f s in all", name, encoded, len(guids) - encoded, slice_path,
             vectors.shape[1], times["built"], times["loaded"], times["encoded"], rate, time.perf_counter() - t0)
    return encoded


def shard_items(slice_path: str | Path, encoder: Any, spec: dict[str, Any],
                data_root: str | Path = ".") -> tuple[list[str], list[str], Any]:
    """The guids, content hashes and encoder inputs (texts, media paths under ``data_root``, or an ``(n, dim)``
    array of imported vectors) of the slice's samples that have the encoder's modality."""
    import polars as pl

    from mmpipe.ingest.dialogue import COLUMN as CONTEXT, encoder_items
    from mmpipe.ingest.manifest import MEDIA as MEDIA_COLUMNS

    column = spec.get("column") or getattr(encoder, "input_column", None) or INPUT_COLUMN[encoder.modality]
    df = pl.read_parquet(slice_path)
    if column in df.columns:
        df = df.filter(pl.col(column).is_not_null())
    if column in df.columns and isinstance(df.schema[column], pl.Array):  # imported vectors: an (n, dim) array
        items = df[column].to_numpy()
    else:
        items = df[column].to_list() if column in df.columns else df["guid"].to_list()
    if column in MEDIA_COLUMNS:
        items = [str(Path(data_root) / p) for p in items]
    elif column == "text":
        items = encoder_items(items, df[CONTEXT].to_list() if CONTEXT in df.columns else None, spec)
    return df["guid"].to_list(), df["content_hash"].to_list(), items

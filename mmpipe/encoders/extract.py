"""Run one encoder over one shard slice of the manifest and write its feature shard."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import polars as pl
import torch

from mmpipe.encoders import build_encoder
from mmpipe.encoders.shards import INPUT_COLUMN, write_shard
from mmpipe.ingest.manifest import MEDIA as MEDIA_COLUMNS

log = logging.getLogger(__name__)


def extract_shard(slice_path: str | Path, name: str, spec: dict[str, Any], out_path: str | Path,
                  data_root: str | Path = ".", threads: int = 1, progress: bool = True) -> int:
    """Encode every sample of ``slice_path`` that has this encoder's modality; returns the count.

    Media paths in the slice are relative to ``data_root``.
    """
    torch.set_num_threads(max(1, threads))
    encoder = build_encoder({**spec, "threads": threads})
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
    start = time.perf_counter()
    with torch.inference_mode():
        vectors = encoder.encode(items, progress=progress)
    seconds = time.perf_counter() - start
    meta = {"encoder": name, "fingerprint": encoder.fingerprint(), "fingerprint_id": encoder.fingerprint_id(),
            "modality": encoder.modality, "dim": encoder.dim}
    write_shard(out_path, df["guid"].to_list(), vectors, meta)
    log.info("%s: %d vectors of %d in %.1f s from %s", name, len(items), encoder.dim, seconds, slice_path)
    return len(items)

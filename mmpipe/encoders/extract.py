"""Run one encoder over one shard slice of the manifest and write its feature shard.

polars (and, through the encoder, torch) are imported when a shard is extracted, not with this module.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mmpipe.encoders.base import build_encoder
from mmpipe.core.shards import write_shard

log = logging.getLogger(__name__)

# Which shard-slice column an encoder of each modality reads.
INPUT_COLUMN = {"text": "text", "image": "image_path", "audio": "audio_path", "video": "video_path"}


def extract_shard(slice_path: str | Path, name: str, spec: dict[str, Any], out_path: str | Path,
                  data_root: str | Path = ".", threads: int = 1, progress: bool = True,
                  adapters: list[str] | None = None, folds: str | None = None) -> int:
    """Encode every sample of ``slice_path`` that has this encoder's modality; returns the count.

    Media paths in the slice are relative to ``data_root``; ``threads`` goes to the encoder (torch's threads, or
    librosa's workers). An entry with ``adapt:`` is encoded cross-fitted with its fold ``adapters`` and the
    ``folds`` file (``mmpipe.encoders.adapt``).
    """
    import polars as pl

    if spec.get("adapt"):
        from mmpipe.encoders.adapt import extract_shard_crossfitted

        if not adapters or not folds:
            raise ValueError(f"encoder {name!r} is adapted (adapt:) and needs its fold adapters and the folds file")
        return extract_shard_crossfitted(str(slice_path), name, spec, str(out_path), adapters, folds,
                                         threads=max(1, threads), progress=progress)

    from mmpipe.ingest.manifest import MEDIA as MEDIA_COLUMNS

    from mmpipe.encoders.base import ENCODERS

    takes_threads = "threads" in ENCODERS.get(spec["backend"]).KEYS
    start = time.perf_counter()
    encoder = build_encoder({**spec, "threads": max(1, threads)} if takes_threads else spec)
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
    built, start = time.perf_counter() - start, time.perf_counter()
    vectors = encoder.encode(items, progress=progress)
    seconds = time.perf_counter() - start
    meta = {"encoder": name, "fingerprint": encoder.fingerprint(), "fingerprint_id": encoder.fingerprint_id(),
            "modality": encoder.modality, "dim": encoder.dim}
    write_shard(out_path, df["guid"].to_list(), vectors, meta)
    log.info("%s: %d vectors of width %d from %s; encoder built in %.1f s, encoded in %.1f s (%.0f per s)", name,
             len(items), encoder.dim, slice_path, built, seconds, len(items) / seconds if seconds > 0 else 0.0)
    return len(items)

"""Imported vectors in the manifest: one fixed-size float32 column ``vector:<field>`` per imported field.

A layout that reads vectors extracted elsewhere puts them in ``RawSample.vectors``. The manifest hashes
their bytes into the sample's content hash and carries them in the shard slices (not in ``manifest.parquet``,
which stays small for stage 2), where the ``imported`` encoder turns them into feature shards.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import polars as pl

from mmpipe.ingest.layouts.base import RawSample

log = logging.getLogger(__name__)

VECTOR_PREFIX = "vector:"


def vector_column(field: str) -> str:
    """The manifest / shard-slice column of imported field ``field``."""
    return f"{VECTOR_PREFIX}{field}"


def vector_columns(df: pl.DataFrame) -> list[str]:
    """The imported-vector columns of a manifest or shard slice."""
    return [c for c in df.columns if c.startswith(VECTOR_PREFIX)]


def hash_vectors(h: Any, vectors: dict[str, Any] | None) -> None:
    """Mix a sample's imported vectors (field names and float32 bytes) into the hash ``h``."""
    for name in sorted(vectors or {}):
        h.update(b"vector\0" + name.encode() + b"\0")
        h.update(np.ascontiguousarray(vectors[name], dtype=np.float32).tobytes())


def with_vectors(manifest: pl.DataFrame, samples: Sequence[RawSample]) -> pl.DataFrame:
    """``manifest`` plus one ``vector:<field>`` column per imported field (null where a sample has none)."""
    by_guid = {s.guid: s.vectors for s in samples if s.vectors}
    if not by_guid:
        return manifest
    widths: dict[str, int] = {}
    for vecs in by_guid.values():
        for name, vec in vecs.items():
            widths.setdefault(name, int(np.asarray(vec).size))
    guids = manifest["guid"].to_list()
    columns = []
    for name in sorted(widths):
        d = widths[name]
        rows = [(by_guid.get(g) or {}).get(name) for g in guids]
        dtype = pl.Array(pl.Float32, d)
        if rows and all(r is not None for r in rows):
            series = pl.Series(vector_column(name), np.stack([np.asarray(r, np.float32) for r in rows]), dtype=dtype)
        else:
            series = pl.Series(vector_column(name), [None if r is None else np.asarray(r, np.float32).tolist()
                                                     for r in rows], dtype=dtype)
        columns.append(series)
    log.info("imported vector fields: %s", ", ".join(f"{n} ({widths[n]}-d)" for n in sorted(widths)))
    return manifest.with_columns(columns)

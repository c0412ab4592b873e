"""Feature shards: ``guid`` plus a fixed-size list of float32, with the encoder fingerprint in the metadata.

pyarrow is imported by the functions that need it. Stage 1 writes these shards and stage 2 reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmpipe.core.atomic import atomic_path
from mmpipe.core.errors import MmpipeError

META_KEY = b"mmpipe"


class ShardError(MmpipeError):
    """A feature shard that cannot be used as it is (non-finite vectors, unreadable, foreign)."""


def write_shard(path: str | Path, guids: Sequence[str], vectors: np.ndarray, meta: dict[str, Any]) -> None:
    """Write one feature shard atomically (temp file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    bad = _non_finite(vectors, list(guids))
    if bad:
        raise ShardError(f"encoder {meta.get('encoder')!r} gave NaN or infinite vectors for {bad} in {path}; "
                         "nothing was written")
    dim = int(vectors.shape[1]) if vectors.ndim == 2 else int(meta["dim"])
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = pa.table({"guid": pa.array(list(guids), type=pa.string()),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
    table = table.replace_schema_metadata({META_KEY: json.dumps({**meta, "dim": dim}, sort_keys=True).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _non_finite(X: np.ndarray, guids: list[str]) -> str | None:
    """The samples (count and first guids) whose vectors hold NaN or infinite values; None when all are finite."""
    if X.size == 0 or np.isfinite(X).all():
        return None
    bad = np.flatnonzero(~np.isfinite(X.reshape(len(X), -1)).all(axis=1))
    names = ", ".join(str(guids[i]) for i in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return f"{len(bad)} sample(s) ({names})"


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata stored with a feature shard (encoder fingerprint, dim)."""
    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(path).metadata[META_KEY])


def read_shards(paths: Sequence[str | Path]) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Concatenate feature shards: guids, a ``(n, dim)`` float32 matrix, and the (shared) metadata."""
    import pyarrow.parquet as pq

    guids: list[str] = []
    blocks: list[np.ndarray] = []
    meta: dict[str, Any] | None = None
    for p in paths:
        try:
            table = pq.read_table(p)
            m = json.loads(table.schema.metadata[META_KEY])
        except Exception as exc:  # truncated or foreign files raise ArrowInvalid, OSError, KeyError, ...
            raise ShardError(f"{p}: not a readable mmpipe feature shard ({type(exc).__name__}: {exc}); delete it "
                             "and rerun the workflow to rebuild it") from exc
        if meta is None:
            meta = m
        elif m.get("fingerprint") != meta.get("fingerprint"):
            raise ValueError(f"{p}: made by a different encoder than {paths[0]}; rerun extraction")
        dim = m["dim"]
        vec = table.column("vector").combine_chunks()
        block = vec.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
        shard_guids = table.column("guid").to_pylist()
        bad = _non_finite(block, shard_guids)
        if bad:
            raise ShardError(f"{p} (encoder {m.get('encoder')!r}) holds NaN or infinite vectors for {bad}; "
                             "delete it and rerun the workflow to rebuild it")
        blocks.append(block)
        guids += shard_guids
    if meta is None:
        raise ValueError("no feature shards given")
    X = np.concatenate(blocks) if blocks else np.zeros((0, meta["dim"]), np.float32)
    return guids, X, meta


def remove_unreadable(root: str | Path) -> list[tuple[Path, str]]:
    """Delete the feature shards under ``root`` (``<encoder>/<i>.parquet``) whose Parquet footer or mmpipe
    metadata cannot be read (a truncated or foreign file), so that the workflow rebuilds exactly those; returns
    (path, why) per removed shard. Reads footers only: cheap enough for every planning run."""
    import pyarrow.parquet as pq

    removed = []
    for path in sorted(Path(root).glob("*/*.parquet")):
        try:
            meta = pq.read_metadata(path)
            if META_KEY not in (meta.metadata or {}):
                raise ValueError("no mmpipe metadata: not written by an mmpipe encoder")
        except Exception as exc:  # ArrowInvalid, OSError, ValueError: all mean the same here
            path.unlink()
            removed.append((path, f"{type(exc).__name__}: {exc}"))
    return removed

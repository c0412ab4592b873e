"""Feature shards: ``guid``, the sample's ``content_hash`` and a fixed-size list of float32, with the encoder
fingerprint in the metadata. An extraction job keeps the vectors of its previous shard whose (guid, content hash,
fingerprint) still hold (``reusable``), so new samples cost only themselves.

pyarrow is imported by the functions that need it. Stage 1 writes these shards and stage 2 reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmpipe.core.atomic import atomic_path
from mmpipe.core.errors import MmpipeError

META_KEY = b"mmpipe"


class ShardError(MmpipeError):
    """A feature shard that cannot be used as it is (non-finite vectors, unreadable, foreign)."""


def write_shard(path: str | Path, guids: Sequence[str], vectors: np.ndarray, meta: dict[str, Any],
                content_hashes: Sequence[str] | None = None) -> None:
    """Write one feature shard atomically (temp file, then rename); ``content_hashes`` (the manifest's, one per
    guid) let a later job reuse these vectors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    bad = _non_finite(vectors, list(guids))
    if bad:
        raise ShardError(f"encoder {meta.get('encoder')!r} gave NaN or infinite vectors for {bad} in {path}; "
                         "nothing was written")
    dim = int(vectors.shape[1]) if vectors.ndim == 2 else int(meta["dim"])
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    columns = {"guid": pa.array(list(guids), type=pa.string())}
    if content_hashes is not None:
        columns["content_hash"] = pa.array(list(content_hashes), type=pa.string())
    table = pa.table({**columns, "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
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


def _keys(path: str | Path, fingerprint_id: str) -> list[tuple[str, str]] | None:
    """The (guid, content hash) of each row of an earlier shard that a job may reuse; None when there is no such
    shard, it is unreadable, it holds no content hashes, or another encoder made it (``fingerprint_id``)."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        if (json.loads(schema.metadata[META_KEY]).get("fingerprint_id") != fingerprint_id
                or "content_hash" not in schema.names):
            return None
        table = pq.read_table(path, columns=["guid", "content_hash"])
    except Exception:  # missing, truncated or foreign: nothing to reuse there
        return None
    return list(zip(table.column("guid").to_pylist(), table.column("content_hash").to_pylist()))


def _rows(path: str | Path, rows: list[int]) -> np.ndarray:
    """Rows of a shard's vectors, float32 as stored."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["vector"])
    dim = json.loads(table.schema.metadata[META_KEY])["dim"]
    X = table.column("vector").combine_chunks().values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    return X[rows].astype(np.float32, copy=False)


def reuse_or_encode(previous: Sequence[str | Path], fingerprint_id: str, guids: Sequence[str],
                    hashes: Sequence[str], encode_rows: Callable[[list[int]], np.ndarray]) -> tuple[np.ndarray, int]:
    """The vectors of ``guids`` in order, reusing earlier shards.

    A row of a ``previous`` shard (the job's own first, then its siblings, so that a sample that moved shard is
    found too) with the same (guid, content hash) and ``fingerprint_id`` is copied as it is; ``encode_rows(indices)``
    encodes the rest. Only the key columns of each shard are read, and vectors only from shards that have hits, so
    memory stays at a shard's size. Returns the matrix and how many rows were encoded.
    """
    pending = {key: i for i, key in enumerate(zip(guids, hashes))}
    kept: list[int] = []
    blocks: list[np.ndarray] = []
    for path in previous:
        keys = _keys(path, fingerprint_id) if pending else None
        hits = [(r, pending.pop(key)) for r, key in enumerate(keys or ()) if key in pending]
        if hits:
            blocks.append(_rows(path, [r for r, _ in hits]))
            kept += [i for _, i in hits]
    todo = sorted(pending.values())
    if kept and not todo:
        fresh = np.zeros((0, blocks[0].shape[1]), np.float32)
    else:
        fresh = np.asarray(encode_rows(todo), dtype=np.float32)
    if not kept:
        return fresh, len(todo)
    vectors = np.empty((len(guids), blocks[0].shape[1]), np.float32)
    vectors[kept] = np.concatenate(blocks)
    vectors[todo] = fresh
    return vectors, len(todo)


def previous_shards(path: str | Path) -> list[Path]:
    """Where a job writing the shard ``path`` may find vectors to reuse: ``path`` itself, then its siblings."""
    path = Path(path)
    return [path] + sorted(p for p in path.parent.glob("*.parquet") if p != path)


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

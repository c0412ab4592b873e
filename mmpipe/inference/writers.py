"""Prediction tables: CSV, JSONL or Parquet, chosen by the file suffix; written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmpipe.core.atomic import atomic_path
from mmpipe.core.errors import MmpipeError

SUFFIXES = (".csv", ".jsonl", ".parquet")


def write_table(records: list[dict[str, Any]], path: Path) -> None:
    """One row per record (columns: the union of the records' keys, in first-seen order)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise MmpipeError(f"{path}: the output must end in {', '.join(SUFFIXES)}")
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    with atomic_path(path) as tmp:
        if suffix == ".jsonl":
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
            return
        import polars as pl

        df = pl.DataFrame([{c: r.get(c) for c in columns} for r in records], infer_schema_length=None)
        if suffix == ".csv":
            df.write_csv(tmp)
        else:
            df.write_parquet(tmp)

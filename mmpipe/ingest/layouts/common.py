"""Helpers shared by the layouts that read tables and index files: options, columns, splits, labels, vectors.

Every reader yields ``(line, record)`` pairs, where ``line`` is the 1-based line of the record in its file
(the row number for Parquet), so that a bad record is reported as ``file:line``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from mmpipe.core.errors import BadSampleError, ConfigError

SPLIT_ALIASES = {
    "train": "train", "training": "train", "trn": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val", "develop": "val", "development": "val",
    "test": "test", "testing": "test", "tst": "test",
}
POSITIVE, NEGATIVE = "positive", "negative"


# ---------------------------------------------------------------------------------------------- options
def layout_options(config: dict[str, Any], layout: str, allowed: Iterable[str]) -> dict[str, Any]:
    """The ``layout_options`` of the config, checked against the keys this layout knows."""
    opts = config.get("layout_options") or {}
    if not isinstance(opts, dict):
        raise ConfigError(f"layout_options must be a mapping, got {type(opts).__name__}")
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ConfigError(f"layout {layout!r}: unknown layout_options key(s) {unknown}; allowed: {sorted(allowed)}")
    return dict(opts)


def norm_split(value: Any) -> str | None:
    """``train`` / ``val`` / ``test`` for the usual spellings (dev, valid, validation, ...); None if unknown."""
    if value is None:
        return None
    return SPLIT_ALIASES.get(str(value).strip().lower())


def split_of_name(name: str) -> str | None:
    """The split a file or folder name starts with (``dev_sent_emo.csv`` -> ``val``), or None."""
    head = re.split(r"[^a-z]", Path(name).name.lower(), maxsplit=1)[0]
    return SPLIT_ALIASES.get(head)


# ---------------------------------------------------------------------------------------------- columns
def find_column(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str,
                source: str | os.PathLike[str], required: bool = False) -> str | None:
    """The column named by ``wanted`` (exact, else case-insensitive), or the first of ``candidates`` present.

    A ``wanted`` column that is absent, or a required one that cannot be found, is a ``BadSampleError``.
    """
    lower = {c.lower(): c for c in reversed(list(columns))}
    if wanted is not None:
        if wanted in columns:
            return wanted
        if wanted.lower() in lower:
            return lower[wanted.lower()]
        raise BadSampleError(source, f"no column {wanted!r} for the {what} (columns: {', '.join(columns)})", line=1)
    for c in candidates:
        if c.lower() in lower:
            return lower[c.lower()]
    if required:
        raise BadSampleError(source, f"no {what} column (tried {', '.join(candidates)}; columns: "
                                     f"{', '.join(columns)}); name it in layout_options", line=1)
    return None


def cell(record: dict[str, Any], column: str | None) -> Any:
    """The value of ``column`` with empty strings and NaN read as missing."""
    if column is None:
        return None
    value = record.get(column)
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def id_string(value: Any) -> str:
    """A guid from a cell: integral floats lose their ``.0``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


# ---------------------------------------------------------------------------------------------- labels
def sign_label(score: float) -> str:
    """Binary sentiment of a score: ``positive`` for >= 0 (as the CMU-MOSI/MOSEI binary labels), else ``negative``."""
    return POSITIVE if score >= 0 else NEGATIVE


class Labels:
    """Turns a label cell into ``(label, score)`` following ``labels:`` in the config.

    * ``scheme: regression``: the cell is a number (a sentiment score); ``score`` is that number and ``label``
      its binary class (``sign_label``); a score outside ``range`` is an error.
    * classification (default): the cell is a class name; an integer cell that is not itself a class name
      indexes ``classes``; with ``classes`` given, anything else is an unknown label.
    """

    def __init__(self, config: dict[str, Any]):
        labels = config.get("labels") or {}
        self.scheme = labels.get("scheme", "classification")
        self.classes = labels.get("classes")
        rng = labels.get("range")
        self.range = (float(rng[0]), float(rng[1])) if rng else None
        self.regression = self.scheme == "regression"

    def score(self, value: Any) -> float:
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"label {value!r} is not a number (labels.scheme is regression)") from None
        if not math.isfinite(score):
            raise ValueError(f"label {value!r} is not a finite number")
        if self.range is not None and not self.range[0] <= score <= self.range[1]:
            raise ValueError(f"score {score:g} is outside labels.range [{self.range[0]:g}, {self.range[1]:g}]")
        return score

    def parse(self, value: Any, score_value: Any = None) -> tuple[str | None, float | None]:
        """``(label, score)``; raises ValueError with a message for a bad cell."""
        if self.regression:
            raw = score_value if score_value is not None else value
            if raw is None:
                return None, None
            score = self.score(raw)
            label = sign_label(score)
            if value is not None and score_value is not None:  # an explicit class column next to the score
                label = self.class_name(value)
            return self.checked(label), score
        score = self.score(score_value) if score_value is not None else None
        if value is None:
            return None, score
        return self.class_name(value), score

    def class_name(self, value: Any) -> str:
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        name = str(value).strip()
        if self.classes is None or name in self.classes:
            return name
        if re.fullmatch(r"-?\d+", name) and 0 <= int(name) < len(self.classes):
            return self.classes[int(name)]
        raise ValueError(f"unknown label {name!r} (known: {', '.join(self.classes)})")

    def checked(self, label: str) -> str:
        if self.classes is not None and label not in self.classes:
            raise ValueError(f"label {label!r} is not in labels.classes ({', '.join(self.classes)})")
        return label


# ---------------------------------------------------------------------------------------------- vectors
_SEP = re.compile(r"[\s,;]+")


def parse_vector(value: Any, pooling: str | None = None) -> np.ndarray | None:
    """A 1-D float32 vector from a list, an array, a JSON list string or a separated string of numbers.

    2-D values (frames x features) are averaged (``pooling: mean``) or maxed over frames when ``pooling`` is
    given, else refused. Raises ValueError for anything else.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text[0] == "[":
            value = json.loads(text)
        else:
            value = [float(x) for x in _SEP.split(text.strip("()")) if x]
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        arr = np.asarray([np.asarray(v, dtype=np.float32) for v in value], dtype=np.float32)
    if arr.ndim == 2:
        if pooling == "mean":
            arr = arr.mean(axis=0)
        elif pooling == "max":
            arr = arr.max(axis=0)
        else:
            raise ValueError(f"is a {arr.shape[0]} x {arr.shape[1]} sequence, not a vector; set "
                             "layout_options.sequence_pooling: mean (or max) to pool it")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"is not a non-empty 1-D vector (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise ValueError("holds NaN or infinite values")
    return arr


class VectorWidths:
    """Checks that every vector of a field has the width of the field's first vector."""

    def __init__(self) -> None:
        self.widths: dict[str, tuple[int, str]] = {}

    def check(self, field: str, vec: np.ndarray, where: str) -> None:
        if field not in self.widths:
            self.widths[field] = (vec.size, where)
            return
        width, first = self.widths[field]
        if vec.size != width:
            raise ValueError(f"vector {field!r} has {vec.size} values, but {width} at {first}")


# ---------------------------------------------------------------------------------------------- readers
def read_text(path: Path, encoding: str | None = None) -> str:
    """A text file's content: ``encoding`` if given, else UTF-8 (BOM dropped) with the project's fallbacks."""
    data = path.read_bytes()
    if encoding:
        return data.decode(encoding)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        from mmpipe.ingest.decode import decode_bytes

        return decode_bytes(data).text


def csv_records(path: Path, delimiter: str | None = None, encoding: str | None = None
                ) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """Header and ``(line, row)`` pairs of a CSV/TSV file (quoted fields may span lines)."""
    text = read_text(path, encoding)
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = "\t" if path.suffix.lower() == ".tsv" or first.count("\t") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise BadSampleError(path, "file is empty; expected a header row", line=1) from None
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise BadSampleError(path, f"duplicate column name(s) {dup} in the header", line=1)

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                yield line, {"__error__": f"expected {len(header)} fields, found {len(row)}"}
                continue
            yield line, dict(zip(header, row))

    return header, rows()


def jsonl_records(path: Path, encoding: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, raw in enumerate(read_text(path, encoding).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield n, {"__error__": f"invalid JSON: {exc.msg} (column {exc.colno})"}
            continue
        yield n, obj if isinstance(obj, dict) else {"__error__": f"expected a JSON object, found {type(obj).__name__}"}


SAMPLE_LIST_KEYS = ("samples", "data", "items", "records", "annotations")


def json_records(path: Path, id_keys: Sequence[str] = (), encoding: str | None = None
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a JSON file: a list of objects, an object holding such a list (``samples``, ``data``, ...),
    or an object of objects keyed by id (the key becomes ``id``). Lines are found by locating each record's
    id in the text, in order (records without an id get the line of the previous one)."""
    text = read_text(path, encoding)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadSampleError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
    if isinstance(doc, dict):
        inner = next((doc[k] for k in SAMPLE_LIST_KEYS if isinstance(doc.get(k), list)), None)
        if inner is not None:
            doc = inner
        elif doc and all(isinstance(v, dict) for v in doc.values()):
            doc = [{"id": k, **v} for k, v in doc.items()]
        else:
            raise BadSampleError(path, f"expected a list of samples (or an object with one of "
                                       f"{', '.join(SAMPLE_LIST_KEYS)}), found an object with keys "
                                       f"{', '.join(list(doc)[:8])}", line=1)
    if not isinstance(doc, list):
        raise BadSampleError(path, f"expected a list of samples, found {type(doc).__name__}", line=1)
    pos, line = 0, 1
    for rec in doc:
        if not isinstance(rec, dict):
            yield line, {"__error__": f"expected an object per sample, found {type(rec).__name__}"}
            continue
        key = next((k for k in (*id_keys, "id") if k in rec), None)
        if key is not None:
            needle = json.dumps(key)
            at = text.find(needle, pos)
            if at >= 0:
                line += text.count("\n", pos, at)
                pos = at + len(needle)
        yield line, rec


def parquet_records(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """Column names and ``(row, record)`` pairs of a Parquet file (row numbers start at 1)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise BadSampleError(path, f"cannot read Parquet: {exc}") from exc

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        row = 0
        for batch in table.to_batches(max_chunksize=4096):
            cols = batch.to_pydict()
            for i in range(batch.num_rows):
                row += 1
                yield row, {c: v[i] for c, v in cols.items()}

    return table.column_names, rows()


def walk_files(root: Path, skip_hidden: bool = True) -> list[str]:
    """Every file under ``root`` (sorted), without hidden files and folders."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if skip_hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out += [os.path.join(dirpath, f) for f in filenames if not (skip_hidden and f.startswith("."))]
    return sorted(out)


def count_lines(paths: list[str] | list[Path]) -> int:
    """Newlines in the files that exist (a cheap sample count for list and table files)."""
    n = 0
    for path in paths:
        if Path(path).is_file():
            with open(path, "rb") as f:
                n += sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    return n

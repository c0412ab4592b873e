"""The "vectors" layout: samples whose vectors were extracted elsewhere (imported through ``backend: imported``).

Two forms, told apart by ``layout_options.format`` (``auto`` by default: ``mosi_poria`` when the folder holds
``mosi_utterances.csv``, else ``index``):

**index**: one per-sample index file in the folder (``index.parquet|jsonl|json|csv|tsv``, or the only such
file, or ``layout_options.index``), the CMU-MOSEI index form. Each record has an id, a split, a label (with
``labels.scheme: regression``, a sentiment score such as -3..3; its binary class is derived by sign), and
per-modality vectors such as ``text_features``, ``audio_features``, ``video_features``; optionally a text, a
group (e.g. ``video_id``: validation is carved from train by group) and media paths (relative to the index).
Vectors may be JSON/Parquet lists, strings of numbers (``"[0.1, 0.2]"`` or ``"0.1 0.2"``), or, in a CSV, one
column per value (``audio_features_0``, ``audio_features_1``, ...). Which fields are vectors: the columns in
``layout_options.vectors``, by default every column whose name ends in ``_features``/``_feats``/
``_embedding``/``_vector``, every numbered column group, and every column holding lists of numbers.
Column names are found case-insensitively among the usual spellings; ``layout_options.id`` / ``split`` /
``label`` / ``score`` / ``text`` / ``group`` / ``audio_path`` / ``video_path`` / ``image_path`` name them.

**mosi_poria**: the CMU-MOSI utterance features of Poria et al. (2017): ``mosi_utterances.csv`` (utterance id,
video id, split, row in that split's feature CSVs, binary label, continuous score, transcript) and
``features/{text,audio,video}/<m>_{train,test}0.csv`` (no header, last column the binary label, which must
agree with ``mosi_utterances.csv``). The vector fields are ``text``, ``audio`` and ``video`` (or the subset in
``layout_options.vectors``); the transcript is the sample's text; the group is the video, so validation is
carved from train by video, never by utterance.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mmpipe.core.errors import BadSampleError, ConfigError
from mmpipe.ingest.layouts.base import Layout, LayoutRead, RawSample, register
from mmpipe.ingest.layouts.common import (NEGATIVE, POSITIVE, Labels, VectorWidths, cell, csv_records, find_column,
                                   id_string, json_records, jsonl_records, layout_options, norm_split,
                                   parquet_records, parse_vector, sign_label, walk_files)

OPTIONS = {"format", "index", "id", "split", "label", "score", "text", "group", "vectors", "audio_path",
           "video_path", "image_path", "sequence_pooling", "encoding", "delimiter"}
FORMATS = ("auto", "index", "mosi_poria")
INDEX_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".tsv")
MOSI_TABLE = "mosi_utterances.csv"
MOSI_MODALITIES = ("text", "audio", "video")
MOSI_SPLITS = ("train", "test")

ID_COLUMNS = ("id", "guid", "sample_id", "segment_id", "utterance_id", "clip_id", "uid", "key", "name")
SPLIT_COLUMNS = ("split", "mode", "fold", "set", "partition", "subset")
LABEL_COLUMNS = ("label", "labels", "sentiment", "emotion", "class", "tag", "y", "target")
SCORE_COLUMNS = ("score", "sentiment_score", "regression_label", "valence")
TEXT_COLUMNS = ("text", "transcript", "transcription", "utterance", "sentence", "words", "raw_text")
GROUP_COLUMNS = ("group", "video_id", "vid", "dialogue_id", "session")
MEDIA_COLUMNS = {
    "audio_path": ("audio_path", "speech_path", "wav_path", "audio_file"),
    "video_path": ("video_path", "video_file", "mp4_path"),
    "image_path": ("image_path", "img_path", "image_file"),
}
VECTOR_SUFFIXES = ("_features", "_feats", "_feature", "_embedding", "_embeddings", "_vector", "_vectors")


def mosi_files(root: Path) -> list[Path]:
    return [root / "features" / m / f"{m}_{s}0.csv" for m in MOSI_MODALITIES for s in MOSI_SPLITS]


def detect(root: Path, opts: dict[str, Any]) -> str:
    fmt = opts.get("format", "auto")
    if fmt not in FORMATS:
        raise ConfigError(f"layout 'features': layout_options.format must be one of {FORMATS}, got {fmt!r}")
    if fmt != "auto":
        return fmt
    return "mosi_poria" if (root / MOSI_TABLE).is_file() else "index"


def source_files(root: Path) -> list[str]:
    """The files the manifest reads: the MOSI table and feature CSVs, or everything in the folder."""
    root = Path(root)
    if (root / MOSI_TABLE).is_file():
        return [str(p) for p in [root / MOSI_TABLE, *mosi_files(root)] if p.is_file()]
    return walk_files(root) if root.is_dir() else []


def read(root: Path, config: dict[str, Any]) -> LayoutRead:
    root = Path(root)
    opts = layout_options(config, "vectors", OPTIONS)
    if detect(root, opts) == "mosi_poria":
        return _read_mosi(root, opts, Labels(config))
    return _read_index(root, opts, Labels(config))


# ---------------------------------------------------------------------------------------------- index form
def index_file(root: Path, opts: dict[str, Any]) -> Path:
    if opts.get("index"):
        path = root / opts["index"]
        if not path.is_file():
            raise BadSampleError(path, "index file is missing")
        return path
    if not root.is_dir():
        raise BadSampleError(root, "data folder is missing")
    found = sorted(p for p in root.iterdir()
                   if p.is_file() and p.suffix.lower() in INDEX_SUFFIXES and not p.name.startswith("."))
    named = [p for p in found if p.stem.lower() == "index"]
    if len(named) == 1:
        return named[0]
    if len(found) == 1:
        return found[0]
    if not found:
        raise BadSampleError(root, f"no index file ({', '.join('*' + s for s in INDEX_SUFFIXES)}) in the folder")
    raise BadSampleError(root, f"several candidate index files ({', '.join(p.name for p in found)}); "
                               "name one with layout_options.index")


def _records(path: Path, opts: dict[str, Any]) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return csv_records(path, opts.get("delimiter"), opts.get("encoding"))
    if suffix == ".parquet":
        return parquet_records(path)
    if suffix == ".jsonl":
        records = list(jsonl_records(path, opts.get("encoding")))
    else:
        id_keys = [opts["id"]] if opts.get("id") else list(ID_COLUMNS)
        records = list(json_records(path, id_keys, opts.get("encoding")))
    columns: dict[str, None] = {}
    for _, rec in records:
        columns.update(dict.fromkeys(k for k in rec if k != "__error__"))
    return list(columns), iter(records)


def numbered_groups(columns: list[str]) -> dict[str, list[str]]:
    """Columns ``<name>_0 .. <name>_<n-1>`` (or from 1), two or more, grouped under ``<name>``."""
    by_prefix: dict[str, dict[int, str]] = {}
    for c in columns:
        m = re.fullmatch(r"(.+?)_?(\d+)", c)
        if m:
            by_prefix.setdefault(m.group(1).rstrip("_"), {})[int(m.group(2))] = c
    groups = {}
    for prefix, cols in by_prefix.items():
        idx = sorted(cols)
        if len(idx) >= 2 and idx[0] in (0, 1) and idx == list(range(idx[0], idx[0] + len(idx))) \
                and prefix not in columns:
            groups[prefix] = [cols[i] for i in idx]
    return groups


def _is_numeric_list(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "fiu" and value.size > 0
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) or isinstance(v, (list, tuple)) for v in value[:8])


def _read_index(root: Path, opts: dict[str, Any], labels: Labels) -> LayoutRead:
    path = index_file(root, opts)
    columns, records = _records(path, opts)
    records = list(records)
    col = {
        "id": find_column(columns, opts.get("id"), ID_COLUMNS, "sample id", path, required=True),
        "split": find_column(columns, opts.get("split"), SPLIT_COLUMNS, "split", path),
        "label": find_column(columns, opts.get("label"), LABEL_COLUMNS, "label", path),
        "text": find_column(columns, opts.get("text"), TEXT_COLUMNS, "text", path),
    }
    score_candidates = [c for c in SCORE_COLUMNS if c.lower() != (col["label"] or "").lower()]
    col["score"] = find_column(columns, opts.get("score"), score_candidates if labels.regression else (), "score",
                               path)
    col["group"] = find_column(columns, opts.get("group"),
                               [c for c in GROUP_COLUMNS if c.lower() != col["id"].lower()], "group", path)
    media = {k: find_column(columns, opts.get(k), cands, k, path) for k, cands in MEDIA_COLUMNS.items()}
    if col["label"] is None and col["score"] is None:
        raise BadSampleError(path, f"no label column (tried {', '.join(LABEL_COLUMNS)}); name it with "
                                   "layout_options.label", line=1)
    used = {c for c in [*col.values(), *media.values()] if c}

    # Vector fields: named, or suffix-named columns, numbered column groups, and list-valued columns.
    groups = numbered_groups([c for c in columns if c not in used])
    if opts.get("vectors"):
        fields: dict[str, list[str] | str] = {}
        for name in opts["vectors"]:
            if name in columns:
                fields[name] = name
            elif name in groups:
                fields[name] = groups[name]
            else:
                raise BadSampleError(path, f"no vector column {name!r} (columns: {', '.join(columns[:30])}"
                                           f"{' ...' if len(columns) > 30 else ''})", line=1)
    else:
        fields = {c: c for c in columns if c not in used and c.lower().endswith(VECTOR_SUFFIXES)}
        fields.update({p: cs for p, cs in groups.items() if p not in fields})
        in_groups = {c for cs in groups.values() for c in cs}
        for c in columns:
            if c in used or c in fields or c in in_groups:
                continue
            first = next((r.get(c) for _, r in records if r.get(c) is not None), None)
            if _is_numeric_list(first):
                fields[c] = c
    pooling = opts.get("sequence_pooling")

    problems: list[BadSampleError] = []
    samples: list[RawSample] = []
    seen: dict[str, int] = {}
    widths = VectorWidths()
    base = path.parent
    for line, rec in records:
        def bad(msg: str, guid: str | None = None) -> None:
            problems.append(BadSampleError(path, msg, line=line, guid=guid))

        if "__error__" in rec:
            bad(rec["__error__"])
            continue
        raw_id = cell(rec, col["id"])
        if raw_id is None:
            bad(f"no sample id ({col['id']!r} is empty)")
            continue
        guid = id_string(raw_id)
        if guid in seen:
            bad(f"duplicate id {guid} (first at line {seen[guid]})", guid)
            continue
        seen[guid] = line
        split = "train"
        if col["split"]:
            split = norm_split(cell(rec, col["split"]))
            if split is None:
                bad(f"id {guid}: unknown split {rec.get(col['split'])!r} (use train, val/dev/valid or test)", guid)
                continue
        try:
            label, score = labels.parse(cell(rec, col["label"]), cell(rec, col["score"]))
        except ValueError as exc:
            bad(f"id {guid}: {exc}", guid)
            continue
        if label is None and split != "test":
            bad(f"id {guid}: no label (only test samples may be unlabelled)", guid)
            continue
        vectors: dict[str, np.ndarray] = {}
        try:
            for name, source in fields.items():
                value = [cell(rec, c) for c in source] if isinstance(source, list) else cell(rec, source)
                if isinstance(value, list) and isinstance(source, list) and all(v is None for v in value):
                    value = None
                vec = parse_vector(value, pooling)
                if vec is not None:
                    widths.check(name, vec, f"{path.name}:{line}")
                    vectors[name] = vec
        except (ValueError, TypeError) as exc:
            bad(f"id {guid}: vector {name!r} {exc}", guid)
            continue
        text = cell(rec, col["text"])
        group = cell(rec, col["group"])
        s = RawSample(guid=guid, source=str(path), line=line, split=split, label=label, score=score,
                      group=id_string(group) if group is not None else None,
                      text=str(text) if text is not None else None, vectors=vectors or None)
        for key, c in media.items():
            value = cell(rec, c)
            if value is not None:
                setattr(s, key, (base / str(value)).resolve())
        samples.append(s)
    return LayoutRead(samples=samples, problems=problems)


# ---------------------------------------------------------------------------------------------- MOSI (Poria)
def _load_matrix(path: Path) -> np.ndarray:
    import polars as pl

    if not path.is_file():
        raise BadSampleError(path, "feature file is missing")
    try:
        arr = pl.read_csv(path, has_header=False, infer_schema_length=0).cast(pl.Float64).to_numpy()
    except Exception as exc:
        raise BadSampleError(path, f"cannot read the feature CSV: {exc}") from exc
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise BadSampleError(path, f"expected a vector and a label per row, found shape {arr.shape}")
    return arr


def _read_mosi(root: Path, opts: dict[str, Any], labels: Labels) -> LayoutRead:
    table = root / MOSI_TABLE
    if not table.is_file():
        raise BadSampleError(table, "the CMU-MOSI utterance table is missing")
    extra = sorted(set(opts) - {"format", "vectors"})
    if extra:
        raise ConfigError(f"layout 'features' (mosi_poria form): layout_options {extra} do not apply; "
                          "allowed: format, vectors")
    mods = list(opts.get("vectors") or MOSI_MODALITIES)
    if not set(mods) <= set(MOSI_MODALITIES):
        raise ConfigError(f"layout 'features' (mosi_poria form): vectors must be among {MOSI_MODALITIES}, got {mods}")
    header, rows = csv_records(table)
    need = ["utterance_id", "video_id", "split", "row_in_split_feature_csv", "binary_label", "sentiment_score",
            "transcript"]
    missing = [c for c in need if c not in header]
    if missing:
        raise BadSampleError(table, f"missing column(s) {missing} (found {', '.join(header)})", line=1)
    mats: dict[tuple[str, str], tuple[Path, np.ndarray]] = {}
    used: dict[tuple[str, str], set[int]] = {}
    for m in mods:
        for s in MOSI_SPLITS:
            path = root / "features" / m / f"{m}_{s}0.csv"
            mats[(m, s)] = (path, _load_matrix(path))
            used[(m, s)] = set()
    problems: list[BadSampleError] = []
    samples: list[RawSample] = []
    seen: dict[str, int] = {}
    for line, rec in rows:
        def bad(msg: str, guid: str | None = None, file: Path = table, at: int = line) -> None:
            problems.append(BadSampleError(file, msg, line=at, guid=guid))

        if "__error__" in rec:
            bad(rec["__error__"])
            continue
        guid = rec["utterance_id"].strip()
        if not guid:
            bad("empty utterance_id")
            continue
        if guid in seen:
            bad(f"duplicate utterance_id {guid} (first at line {seen[guid]})", guid)
            continue
        seen[guid] = line
        split = norm_split(rec["split"])
        if split not in MOSI_SPLITS:
            bad(f"{guid}: split {rec['split']!r} is neither train nor test", guid)
            continue
        try:
            r = int(rec["row_in_split_feature_csv"])
            binary = int(float(rec["binary_label"]))
            score = labels.score(rec["sentiment_score"])
        except ValueError as exc:
            bad(f"{guid}: {exc}", guid)
            continue
        if binary not in (0, 1):
            bad(f"{guid}: binary_label {binary} is neither 0 nor 1", guid)
            continue
        label = POSITIVE if binary == 1 else NEGATIVE
        if sign_label(score) != label:
            bad(f"{guid}: score {score:g} disagrees in sign with binary_label {binary}", guid)
            continue
        try:
            label = labels.checked(label)
        except ValueError as exc:
            bad(f"{guid}: {exc}", guid)
            continue
        vectors: dict[str, np.ndarray] = {}
        for m in mods:
            path, mat = mats[(m, split)]
            if not 0 <= r < mat.shape[0]:
                bad(f"{guid}: row_in_split_feature_csv {r} is beyond {path.name} ({mat.shape[0]} rows)", guid)
                break
            if r in used[(m, split)]:
                bad(f"{guid}: row {r} of {path.name} is given to two utterances", guid)
                break
            vec, tail = mat[r, :-1], mat[r, -1]
            if tail != binary:
                bad(f"{guid}: the label column says {tail:g}, {MOSI_TABLE} line {line} says {binary}", guid,
                    file=path, at=r + 1)
                break
            if not np.isfinite(vec).all():
                bad(f"{guid}: NaN or infinite feature values", guid, file=path, at=r + 1)
                break
            used[(m, split)].add(r)
            vectors[m] = vec.astype(np.float32)
        else:
            samples.append(RawSample(guid=guid, source=str(table), line=line, split=split, label=label, score=score,
                                     group=rec["video_id"].strip() or None, text=rec["transcript"],
                                     vectors=vectors or None))
    unlisted = []
    for (m, s), (path, mat) in mats.items():
        spare = sorted(set(range(mat.shape[0])) - used[(m, s)])
        if spare:
            rel = path.relative_to(root).as_posix()
            unlisted.append(f"{rel}: {len(spare)} row(s) no utterance names (first at line {spare[0] + 1})")
    return LayoutRead(samples=samples, problems=problems, unlisted=unlisted)


@register("vectors")
class Vectors(Layout):
    options = frozenset(OPTIONS)
    read = staticmethod(read)
    source_files = staticmethod(source_files)

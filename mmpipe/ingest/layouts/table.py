"""The "table" layout: CSV/TSV files of texts and labels (the text emotion form: MELD, GoEmotions-style sets).

Files: ``layout_options.files`` (``{train: ..., val: ..., test: ...}``, paths relative to the data folder) or
``layout_options.file`` (one table). Without either, the folder's ``*.csv``/``*.tsv`` files whose names start
with a split name are used per split (``train_sent_emo.csv``, ``dev_sent_emo.csv`` -> val,
``test_sent_emo.csv``); else its only table.

Columns (found case-insensitively; ``layout_options`` names them): ``text`` (text, utterance, sentence, ...),
``label`` (label, emotion, sentiment, class, tag; empty for unlabelled test rows), optional ``split`` (in a
single table; rows without one are train), optional ``id`` (one column, or a list joined with ``_``, e.g.
``[Dialogue_ID, Utterance_ID]``; without it the guid is ``<file stem>-<line>``), optional ``group`` (rows of a
group, e.g. a dialogue, stay on the same side of the validation cut). With several files the guid and group
are prefixed by the split (``train_0_3``), as ids restart in each file. ``delimiter`` and ``encoding`` (default:
UTF-8, else the project's decoding fallbacks) may be set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmpipe.core.errors import BadSampleError, ConfigError
from mmpipe.ingest.layouts.base import Layout, LayoutRead, RawSample, register
from mmpipe.ingest.layouts.common import (Labels, cell, count_lines, csv_records, find_column, id_string,
                                          layout_options, norm_split, split_of_name, walk_files)

OPTIONS = {"file", "files", "text", "label", "score", "split", "id", "group", "speaker", "delimiter", "encoding"}
SUFFIXES = (".csv", ".tsv")
TEXT_COLUMNS = ("text", "utterance", "sentence", "content", "tweet", "transcription", "transcript", "review")
LABEL_COLUMNS = ("label", "emotion", "sentiment", "class", "tag", "labels", "category")
SCORE_COLUMNS = ("score", "sentiment_score", "valence")
SPLIT_COLUMNS = ("split", "set", "subset", "partition", "fold")
ID_COLUMNS = ("id", "guid", "sample_id", "uid")


def _tables(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES
                  and not p.name.startswith("."))


def source_files(root: Path) -> list[str]:
    """Every table in the data folder and below it (the manifest depends on them)."""
    root = Path(root)
    return [f for f in walk_files(root) if f.lower().endswith(SUFFIXES)] if root.is_dir() else []


def files_of(root: Path, opts: dict[str, Any]) -> list[tuple[Path, str | None]]:
    """``(table, split or None)`` pairs: None means the table has its own split column (or is all train)."""
    if opts.get("files") and opts.get("file"):
        raise ConfigError("layout 'table': give layout_options.file or layout_options.files, not both")
    if opts.get("files"):
        files = opts["files"]
        if not isinstance(files, dict) or not files:
            raise ConfigError("layout 'table': layout_options.files maps split names to tables, e.g. "
                              "{train: train.csv, val: dev.csv, test: test.csv}")
        out = []
        for name, rel in files.items():
            split = norm_split(name)
            if split is None:
                raise ConfigError(f"layout 'table': layout_options.files: unknown split {name!r}")
            out.append((root / rel, split))
        return out
    if opts.get("file"):
        return [(root / opts["file"], None)]
    tables = _tables(root)
    by_split = [(p, split_of_name(p.name)) for p in tables]
    named = [(p, s) for p, s in by_split if s is not None]
    if named:
        named.sort(key=lambda ps: ("train", "val", "test").index(ps[1]))
        splits = [s for _, s in named]
        dup = sorted({s for s in splits if splits.count(s) > 1})
        if dup:
            raise BadSampleError(root, f"several tables for split(s) {dup} "
                                       f"({', '.join(p.name for p, s in named if s in dup)}); "
                                       "name them with layout_options.files")
        return named
    if len(tables) == 1:
        return [(tables[0], None)]
    if not tables:
        raise BadSampleError(root, "no table (*.csv, *.tsv) in the data folder")
    raise BadSampleError(root, f"several tables ({', '.join(p.name for p in tables)}) and none named after a "
                               "split; choose with layout_options.file or layout_options.files")


def read(root: Path, config: dict[str, Any]) -> LayoutRead:
    root = Path(root)
    opts = layout_options(config, "table", OPTIONS)
    labels = Labels(config)
    files = files_of(root, opts)
    several = len(files) > 1
    problems: list[BadSampleError] = []
    samples: list[RawSample] = []
    seen: dict[str, tuple[str, int]] = {}
    id_opt = opts.get("id")
    id_wanted = [id_opt] if isinstance(id_opt, str) else list(id_opt or [])
    for path, file_split in files:
        if not path.is_file():
            raise BadSampleError(path, "table is missing")
        header, rows = csv_records(path, opts.get("delimiter"), opts.get("encoding"))
        text_col = find_column(header, opts.get("text"), TEXT_COLUMNS, "text", path, required=True)
        label_col = find_column(header, opts.get("label"), LABEL_COLUMNS, "label", path,
                                required=not labels.regression)
        score_col = find_column(header, opts.get("score"), SCORE_COLUMNS if labels.regression else (), "score", path)
        split_col = find_column(header, opts.get("split"), SPLIT_COLUMNS, "split", path) if file_split is None \
            else None
        id_cols = [find_column(header, w, (), "id", path) for w in id_wanted] if id_wanted \
            else [c for c in [find_column(header, None, ID_COLUMNS, "id", path)] if c]
        group_col = find_column(header, opts.get("group"), (), "group", path) if opts.get("group") else None
        speaker_col = find_column(header, opts.get("speaker"), (), "speaker", path) if opts.get("speaker") else None
        for line, rec in rows:
            def bad(msg: str, guid: str | None = None) -> None:
                problems.append(BadSampleError(path, msg, line=line, guid=guid))

            if "__error__" in rec:
                bad(rec["__error__"])
                continue
            split = file_split or "train"
            if split_col is not None and cell(rec, split_col) is not None:
                split = norm_split(cell(rec, split_col))
                if split is None:
                    bad(f"unknown split {rec[split_col]!r} (use train, val/dev/valid or test)")
                    continue
            if id_cols:
                parts = [cell(rec, c) for c in id_cols]
                if any(p is None for p in parts):
                    bad(f"empty id column(s) {[c for c, p in zip(id_cols, parts) if p is None]}")
                    continue
                guid = "_".join(id_string(p) for p in parts)
            else:
                guid = f"{path.stem}-{line}"
            if several:
                guid = f"{split}_{guid}"
            if guid in seen:
                first = seen[guid]
                bad(f"duplicate id {guid} (first at {Path(first[0]).name}:{first[1]})", guid)
                continue
            seen[guid] = (str(path), line)
            try:
                label, score = labels.parse(cell(rec, label_col), cell(rec, score_col))
            except ValueError as exc:
                bad(f"{guid}: {exc}", guid)
                continue
            if label is None and split != "test":
                bad(f"{guid}: no label (only test rows may be unlabelled)", guid)
                continue
            group = cell(rec, group_col)
            if group is not None:
                group = f"{split}_{id_string(group)}" if several else id_string(group)
            text = rec.get(text_col)
            speaker = cell(rec, speaker_col)
            samples.append(RawSample(guid=guid, source=str(path), line=line, split=split, label=label, score=score,
                                     group=group, speaker=None if speaker is None else str(speaker).strip(),
                                     text="" if text is None else str(text)))
    return LayoutRead(samples=samples, problems=problems)


@register("table")
class Table(Layout):
    options = frozenset(OPTIONS)
    read = staticmethod(read)
    source_files = staticmethod(source_files)

    @staticmethod
    def count(root: Path) -> int:
        return count_lines(source_files(root))

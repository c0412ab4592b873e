"""New samples for ``mmpipe predict`` and ``mmpipe serve``, as the layouts' ``RawSample``s.

Three ways in: a folder in a layout the bundle's config reads (lab: the samples of its test list by default), a
folder of loose files paired by file stem (``3.txt`` + ``3.jpg``), or a CSV / JSONL table with one sample per row
(columns ``guid``, ``text`` or ``text_file``, ``image``, ``audio``, ``video``, and ``group``: a dialogue, whose rows
in order give each other context under ``text.context_turns``, with ``speaker`` naming who says each; relative paths
are relative to the table). Each
sample is then decoded and checked exactly as the manifest does (``check_samples``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from mmpipe.core.errors import BadSampleError, MmpipeError
from mmpipe.ingest import layouts
from mmpipe.ingest.layouts.base import RawSample
from mmpipe.ingest.layouts.lab import MEDIA as BY_SUFFIX
from mmpipe.ingest.vector_columns import vector_column

# table column -> RawSample field (the first of each group that a table has wins)
COLUMNS = {"text": ("text",), "group": ("group",), "speaker": ("speaker",), "text_path": ("text_file", "text_path"),
           "image_path": ("image", "image_path"), "audio_path": ("audio", "audio_path"),
           "video_path": ("video", "video_path")}
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl")


def one_sample(guid: str | None = None, text: str | None = None, text_file: str | None = None,
               image: str | None = None, audio: str | None = None, video: str | None = None) -> RawSample:
    """One sample from the command line (``--text`` / ``--text-file`` / ``--image`` ...)."""
    if text is not None and text_file is not None:
        raise MmpipeError("give --text or --text-file, not both")
    paths = {"text_path": text_file, "image_path": image, "audio_path": audio, "video_path": video}
    if text is None and not any(paths.values()):
        raise MmpipeError("nothing to predict: give an input folder or table, or --text / --text-file / --image")
    first = next((p for p in paths.values() if p), None)
    guid = guid or (Path(first).stem if first else "sample")
    return RawSample(guid=guid, source="command line", line=1, split="test", text=text,
                     **{k: Path(v) for k, v in paths.items() if v})


def read_input(path: str | Path, config: dict[str, Any], split: str = "test") -> list[RawSample]:
    """The samples of one input: a table file, a layout folder, or a folder of loose files."""
    path = Path(path)
    if not path.exists():
        raise MmpipeError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise MmpipeError(f"{path}: expected a folder or a table ({', '.join(TABLE_SUFFIXES)}) of samples; "
                              f"for one file use --text-file / --image / --audio / --video")
        return read_table(path)
    if _looks_like_layout(path, config):
        read = layouts.get(config.get("layout", "lab")).read(path, {**config, "data": str(path)})
        if read.problems:
            raise read.problems[0]
        samples = read.samples if split == "all" else [s for s in read.samples if s.split == split]
        if not samples:
            raise MmpipeError(f"{path}: the {config.get('layout', 'lab')} layout lists no {split} samples "
                              f"(use --split all for every listed sample)")
        return samples
    return read_loose_files(path)


def _looks_like_layout(path: Path, config: dict[str, Any]) -> bool:
    layout = config.get("layout", "lab")
    try:
        files = layouts.source_files(layout, path)
    except Exception:  # a layout that cannot even list its files here does not describe the folder
        return False
    return layout != "lab" or any(Path(f).name in ("train.txt", "test_without_label.txt") for f in files)


def read_loose_files(folder: Path) -> list[RawSample]:
    """Files of ``folder`` (or of its ``data/``) paired by stem: ``<guid>.txt``, ``<guid>.jpg``, ..."""
    root = folder / "data" if (folder / "data").is_dir() else folder
    by_guid: dict[str, dict[str, Path]] = {}
    for name in sorted(os.listdir(root)):
        p = root / name
        field = BY_SUFFIX.get(p.suffix.lower())
        if name.startswith(".") or not p.is_file() or field is None:
            continue
        slot = by_guid.setdefault(p.stem, {})
        if field in slot:
            raise BadSampleError(p, f"two {field.split('_')[0]} files for guid {p.stem}: {slot[field].name} and {name}")
        slot[field] = p
    if not by_guid:
        raise MmpipeError(f"{root}: no sample files ({', '.join(sorted(BY_SUFFIX))})")
    return [RawSample(guid=g, source=str(root), line=i, split="test", **fields)
            for i, (g, fields) in enumerate(sorted(by_guid.items()), 1)]


def read_table(path: Path) -> list[RawSample]:
    """One sample per row of a CSV / TSV / JSONL table."""
    from mmpipe.ingest.layouts.common import csv_records, jsonl_records

    records: Iterable[tuple[int, dict[str, Any]]]
    if path.suffix.lower() == ".jsonl":
        records = jsonl_records(path)
    else:
        _, records = csv_records(path, delimiter="\t" if path.suffix.lower() == ".tsv" else None)
    base = path.parent
    samples = []
    for line, rec in records:
        if "__error__" in rec:
            raise BadSampleError(path, rec["__error__"], line=line)
        keys = {k.strip().lower(): k for k in rec}
        fields: dict[str, Any] = {}
        for field, names in COLUMNS.items():
            name = next((keys[n] for n in names if n in keys and rec[keys[n]] not in (None, "")), None)
            if name is not None:
                value = str(rec[name])
                is_path = field.endswith("_path")
                fields[field] = (Path(value) if os.path.isabs(value) else base / value) if is_path else value
        if not fields:
            raise BadSampleError(path, f"no sample fields; expected one of {', '.join(n for v in COLUMNS.values() for n in v)}",
                                 line=line)
        guid = str(rec[keys["guid"]]) if "guid" in keys and rec[keys["guid"]] not in (None, "") else str(line)
        samples.append(RawSample(guid=guid, source=str(path), line=line, split="test", **fields))
    if not samples:
        raise MmpipeError(f"{path}: no rows")
    return samples


def check_samples(samples: list[RawSample], config: dict[str, Any], root: Path | None = None
                  ) -> tuple[list[dict[str, Any]], list[BadSampleError]]:
    """Decode and check each sample as the manifest does; returns the good rows (media paths absolute) and the
    problems, in input order. Duplicate guids are a problem of the later sample."""
    from mmpipe.ingest.dialogue import add_text_context, context_turns
    from mmpipe.ingest.manifest import MEDIA, _check_sample

    rows, bad, seen = [], [], set()
    base = root or Path("/")
    for s in samples:
        if s.guid in seen:
            bad.append(BadSampleError(s.source, f"duplicate guid {s.guid}", line=s.line, guid=s.guid))
            continue
        seen.add(s.guid)
        try:
            row = _check_sample(s, config, base)
        except BadSampleError as exc:
            bad.append(exc)
            continue
        for key in MEDIA:
            if row[key] is not None:
                row[key] = str((base / row[key]).resolve())
        for field, vec in (s.vectors or {}).items():  # imported vectors (vectors layouts)
            row[vector_column(field)] = vec
        rows.append(row)
    add_text_context(rows, context_turns(config))
    return rows, bad

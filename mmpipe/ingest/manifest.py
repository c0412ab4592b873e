"""Build the manifest (one row per listed sample) and its stable shard slices.

Each sample is checked here, once: listed files exist, text decodes and is not empty, images open.
Bad samples stop the run (``on_bad_sample: fail``) or are left out and listed (``skip``).
Media paths are stored relative to the data folder, so a moved folder keeps its cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from PIL import Image

from mmpipe.ingest import layouts
from mmpipe.core.atomic import atomic_path, write_bytes_if_changed, write_text
from mmpipe.ingest.decode import clean_text, decode_file
from mmpipe.ingest.dialogue import COLUMN as CONTEXT, SPEAKER, add_text_context, context_turns
from mmpipe.core.errors import BadSampleError
from mmpipe.ingest.layouts.base import RawSample
from mmpipe.ingest.vector_columns import hash_vectors, vector_columns, with_vectors
from mmpipe.ingest.media import check_audio, check_video
from mmpipe.ingest.split import is_validation, shard_of

log = logging.getLogger(__name__)

MEDIA = ("image_path", "audio_path", "video_path")
SCHEMA = {
    "guid": pl.String, "split": pl.String, "label": pl.String, "score": pl.Float64, "group": pl.String,
    "text": pl.String, "text_encoding": pl.String, "text_lossy": pl.Boolean,
    "image_path": pl.String, "audio_path": pl.String, "video_path": pl.String, "content_hash": pl.String,
}
# What an encoder needs: the shard slices hold only these, so a label change never reruns extraction.
SLICE_COLUMNS = ["guid", "text", "image_path", "audio_path", "video_path", "content_hash"]


@dataclass
class ManifestResult:
    manifest: pl.DataFrame
    skipped: list[BadSampleError]
    unlisted: list[str]
    multi_frame: list[str] = field(default_factory=list)  # images with several frames: their first is encoded


def _check_image(path: Path) -> int:
    """Open and decode ``path``; returns its frame count (an animated GIF is encoded from its first frame)."""
    with Image.open(path) as im:
        frames = int(getattr(im, "n_frames", 1) or 1)
        im.draft("RGB", (64, 64))  # JPEG: decode at reduced scale, still reads every byte
        im.load()
    return frames


def _check_sample(s: RawSample, config: dict[str, Any], root: Path) -> dict[str, Any]:
    """Decode and verify one sample; raise BadSampleError naming the list line and the file."""
    where = dict(file=s.source, line=s.line, guid=s.guid)
    h = hashlib.sha256(s.guid.encode())
    row: dict[str, Any] = {"guid": s.guid, "split": s.split, "label": s.label, "score": s.score,
                           "group": s.group, "text": s.text, "text_encoding": None, "text_lossy": False}
    if s.speaker is not None:
        row[SPEAKER] = s.speaker
    text_cfg = config.get("text", {})
    if s.text_path is not None:
        if not s.text_path.is_file():
            raise BadSampleError(problem=f"guid {s.guid}: text file {s.text_path} is missing", **where)
        data = s.text_path.read_bytes()
        h.update(data)
        dec = decode_file(s.text_path, fallbacks=tuple(text_cfg.get("fallback_encodings", ())),
                          min_confidence=text_cfg.get("chardet_min_confidence", 0.8))
        if dec.binary is not None:
            raise BadSampleError(problem=f"guid {s.guid}: {s.text_path} is not text ({dec.binary})", **where)
        row.update(text=dec.text, text_encoding=dec.encoding, text_lossy=dec.lossy)
    if row["text"] is not None:
        row["text"] = clean_text(row["text"], **text_cfg.get("clean", {}))
        if not row["text"].strip():
            name = s.text_path if s.text_path is not None else "text"
            raise BadSampleError(problem=f"guid {s.guid}: {name} is empty", **where)
        h.update(row["text"].encode())
    for key in MEDIA:
        path: Path | None = getattr(s, key)
        row[key] = None
        if path is None:
            continue
        if not path.is_file():
            raise BadSampleError(problem=f"guid {s.guid}: {path} is missing", **where)
        if path.stat().st_size == 0:
            raise BadSampleError(problem=f"guid {s.guid}: {path} is empty", **where)
        if key == "image_path":
            try:
                row["frames"] = _check_image(path)
            except Exception as exc:  # PIL raises many types for corrupt files
                raise BadSampleError(problem=f"guid {s.guid}: cannot read image {path}: {exc}", **where) from exc
        elif key in ("audio_path", "video_path"):
            kind = key.split("_")[0]
            try:
                (check_audio if kind == "audio" else check_video)(path)
            except Exception as exc:
                raise BadSampleError(problem=f"guid {s.guid}: cannot read {kind} {path}: {exc}", **where) from exc
        with open(path, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
        row[key] = Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    hash_vectors(h, s.vectors)  # imported vectors (vectors layout) are content too
    row["content_hash"] = h.hexdigest()[:32]
    return row


def build(root: str | Path, config: dict[str, Any], threads: int = 1) -> ManifestResult:
    """Read the layout at ``root``, check every sample, carve validation, and return the manifest."""
    root = Path(root)
    read = layouts.get(config.get("layout", "lab")).read(root, config)
    fail = config.get("on_bad_sample", "fail") == "fail"
    if read.problems and fail:
        raise _combined(read.problems)
    skipped = list(read.problems)

    def check(s: RawSample):
        try:
            return _check_sample(s, config, root)
        except BadSampleError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(check, read.samples))
    bad = [r for r in results if isinstance(r, BadSampleError)]
    if bad and fail:
        raise _combined(bad)
    skipped += bad
    test_lists = {s.source for s in read.samples if s.split == "test"}
    lost = [p for p in skipped if p.file in test_lists]
    if lost:
        why = "a test sample cannot be left out: the predictions need a row for every guid of the test list"
        if len(lost) == 1:
            raise BadSampleError(lost[0].file, f"{lost[0].problem} ({why})", line=lost[0].line, guid=lost[0].guid)
        raise _combined(lost, hint=f"{why}; fix these")
    rows = [r for r in results if not isinstance(r, BadSampleError)]
    turns = context_turns(config)
    add_text_context(rows, turns)

    val_fraction = config.get("split", {}).get("val_fraction", 0.15)
    seed = config.get("seed", 0)
    carve = not any(r["split"] == "val" for r in rows)  # a validation split given by the layout is kept as is
    for r in rows:
        if carve and r["split"] == "train" and is_validation(r["guid"], r["label"], val_fraction, seed, r["group"]):
            r["split"] = "val"
    check_splits(rows, config, root)
    multi = sorted(r["image_path"] for r in rows if r.pop("frames", 1) > 1)
    if multi:
        log.warning("%d image(s) have several frames (animated); each is encoded from its first frame: %s",
                    len(multi), ", ".join(multi[:10]) + (" ..." if len(multi) > 10 else ""))
    extra = {**({SPEAKER: pl.String} if any(SPEAKER in r for r in rows) else {}),
             **({CONTEXT: pl.String} if any(turns) else {})}
    manifest = pl.DataFrame(rows, schema={**SCHEMA, **extra}, orient="row")
    manifest = with_vectors(manifest, read.samples)  # vector:<field> columns, for the shard slices only
    return ManifestResult(manifest=manifest, skipped=skipped, unlisted=read.unlisted, multi_frame=multi)


def check_splits(rows: list[dict[str, Any]], config: dict[str, Any], root: Path) -> None:
    """Splits a run can learn from: labelled training samples, a validation split where one is used, every class
    with training samples (a class seen only in validation or test cannot be learnt). A class with fewer than 3
    training samples is a warning."""
    import collections

    labels = config.get("labels", {})
    if labels.get("scheme") == "regression":
        if not any(r["split"] == "train" for r in rows):
            raise BadSampleError(root, "no training samples: the train list is empty (or every sample was skipped)")
        return
    counts = {sp: collections.Counter(r["label"] for r in rows if r["split"] == sp and r["label"] is not None)
              for sp in ("train", "val", "test")}
    n_train = sum(counts["train"].values())
    if n_train == 0:
        raise BadSampleError(root, "no labelled training samples: the train list is empty (or every sample was "
                                   f"skipped); {sum(r['split'] == 'test' for r in rows)} test samples")
    if config.get("selection", {}).get("method") == "split" and not counts["val"]:
        raise BadSampleError(root, f"selection.method: split needs a validation split, but none was carved from the "
                                   f"{n_train} training samples (raise split.val_fraction, or use selection.method: cv)")
    for sp in ("val", "test"):
        unseen = sorted(set(counts[sp]) - set(counts["train"]))
        if unseen:
            raise BadSampleError(root, f"class(es) {', '.join(unseen)} have {', '.join(str(counts[sp][c]) for c in unseen)} "
                                       f"{sp} sample(s) but none in train: a head cannot learn them")
    rare = {c: n for c, n in counts["train"].items() if n < 3}
    if rare:
        log.warning("%s: class(es) with fewer than 3 training samples: %s", root,
                    ", ".join(f"{c} ({n})" for c, n in sorted(rare.items())))


def _combined(problems: list[BadSampleError], limit: int = 20,
              hint: str = "set on_bad_sample: skip to leave them out") -> BadSampleError:
    if len(problems) == 1:
        return problems[0]
    lines = [str(p) for p in problems[:limit]]
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    first = problems[0]
    err = BadSampleError(first.file, f"{len(problems)} bad samples ({hint}):\n  "
                         + "\n  ".join(lines) + more)
    return err


def _parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    pq.write_table(df.to_arrow(), buf, compression="zstd")
    return buf.getvalue()


def write(result: ManifestResult, manifest_path: str | Path, shard_paths: list[str | Path],
          log_path: str | Path) -> list[int]:
    """Write the manifest, its shard slices (only those whose content changed) and the problem log.

    Returns the indices of the shards that were rewritten.
    """
    df = result.manifest
    with atomic_path(manifest_path) as tmp:
        df.drop(vector_columns(df)).write_parquet(tmp, compression="zstd")
    n = len(shard_paths)
    shard_idx = pl.Series([shard_of(g, n) for g in df["guid"]], dtype=pl.Int64)
    sliced = df.select(SLICE_COLUMNS + [c for c in [CONTEXT] if c in df.columns] + vector_columns(df)).with_columns(shard=shard_idx)
    changed = []
    for i, path in enumerate(shard_paths):
        part = sliced.filter(pl.col("shard") == i).drop("shard").sort("guid")
        if write_bytes_if_changed(path, _parquet_bytes(part)):
            changed.append(i)
    problems = [{"file": p.file, "line": p.line, "guid": p.guid, "problem": p.problem} for p in result.skipped]
    write_text(log_path, json.dumps({"skipped": problems, "unlisted": result.unlisted,
                                     "multi_frame_images": result.multi_frame, "rewritten_shards": changed}, indent=1))
    return changed

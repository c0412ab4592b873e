"""The "annotations" layout: JSON annotation files with media paths (the TriModalFusion form).

```
dataset/
  train/annotations.json     {"samples": [{"id": ..., "speech_path": "speech/x.wav", "video_path": "video/x.mp4",
  train/speech/ video/ images/               "image_path": "images/x.jpg", "label": ..., "transcription": ...}]}
  val/...                    (also: valid/, dev/, validation/)
  test/...
```

Also accepted: ``<split>_annotations.json`` beside the split folders, or one ``annotations.json`` in the data
folder whose samples carry a ``split`` (default train). The file name can be changed with
``layout_options.file``. A file is a list of samples or an object with a ``samples`` list. Media paths are
relative to the annotation file's folder (absolute paths are kept); every path field is optional, so a sample
may have any subset of speech, video, image and transcription. ``label`` is a class name, or an integer index
into ``labels.classes`` (with ``labels.scheme: regression``, a score). A ``val`` split given here is kept as is;
validation is carved from train only where none is given. Media files in the split folders that no sample names
are reported as unlisted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmpipe.core.errors import BadSampleError
from mmpipe.ingest.layouts.base import Layout, LayoutRead, RawSample, register
from mmpipe.ingest.layouts.common import (SPLIT_ALIASES, Labels, id_string, json_records, layout_options, norm_split,
                                   walk_files)

OPTIONS = {"file", "encoding"}
DEFAULT_FILE = "annotations.json"
FIELDS = {
    "audio_path": ("speech_path", "audio_path", "audio"),
    "video_path": ("video_path", "video"),
    "image_path": ("image_path", "image"),
}
TEXT_FIELDS = ("transcription", "transcript", "text")
MEDIA_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4", ".avi", ".mov", ".mkv", ".webm", ".jpg",
                  ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def _split_dirs(root: Path) -> list[tuple[Path, str]]:
    if not root.is_dir():
        return []
    return sorted((p, SPLIT_ALIASES[p.name.lower()]) for p in root.iterdir()
                  if p.is_dir() and p.name.lower() in SPLIT_ALIASES)


def annotation_files(root: Path, name: str = DEFAULT_FILE) -> list[tuple[Path, str | None]]:
    """``(file, split or None)``: per split folder, ``<split>_<name>`` beside them, or one ``<name>``."""
    found = [(d / name, s) for d, s in _split_dirs(root) if (d / name).is_file()]
    stem, suffix = os.path.splitext(name)
    for alias, split in SPLIT_ALIASES.items():
        p = root / f"{alias}_{stem}{suffix}"
        if p.is_file():
            found.append((p, split))
    if (root / name).is_file():
        found.append((root / name, None))
    return found


def source_files(root: Path) -> list[str]:
    """Every file in the data folder: the annotation files and the media they name."""
    root = Path(root)
    return walk_files(root) if root.is_dir() else []


def read(root: Path, config: dict[str, Any]) -> LayoutRead:
    root = Path(root)
    opts = layout_options(config, "annotations", OPTIONS)
    labels = Labels(config)
    files = annotation_files(root, opts.get("file", DEFAULT_FILE))
    if not files:
        raise BadSampleError(root, f"no {opts.get('file', DEFAULT_FILE)} in the data folder or in its "
                                   "train/val/test folders")
    problems: list[BadSampleError] = []
    samples: list[RawSample] = []
    seen: dict[str, tuple[str, int]] = {}
    named: set[Path] = set()
    for path, file_split in files:
        base = path.parent
        for line, rec in json_records(path, ("id",), opts.get("encoding")):
            def bad(msg: str, guid: str | None = None) -> None:
                problems.append(BadSampleError(path, msg, line=line, guid=guid))

            if "__error__" in rec:
                bad(rec["__error__"])
                continue
            if rec.get("id") in (None, ""):
                bad("sample without an id")
                continue
            guid = id_string(rec["id"])
            if guid in seen:
                first = seen[guid]
                bad(f"duplicate id {guid} (first at {Path(first[0]).relative_to(root)}:{first[1]})", guid)
                continue
            seen[guid] = (str(path), line)
            split = file_split
            if split is None:
                split = norm_split(rec.get("split", "train"))
                if split is None:
                    bad(f"id {guid}: unknown split {rec.get('split')!r}", guid)
                    continue
            raw_label = rec.get("label")
            try:
                label, score = labels.parse(None if raw_label == "" else raw_label, rec.get("score"))
            except ValueError as exc:
                bad(f"id {guid}: {exc}", guid)
                continue
            if label is None and split != "test":
                bad(f"id {guid}: no label (only test samples may be unlabelled)", guid)
                continue
            text = next((rec[k] for k in TEXT_FIELDS if rec.get(k) not in (None, "")), None)
            s = RawSample(guid=guid, source=str(path), line=line, split=split, label=label, score=score,
                          text=None if text is None else str(text))
            for key, names in FIELDS.items():
                value = next((rec[k] for k in names if rec.get(k) not in (None, "")), None)
                if value is None:
                    continue
                if not isinstance(value, str):
                    bad(f"id {guid}: {key} must be a path string, found {type(value).__name__}", guid)
                    break
                p = (base / value).resolve()
                named.add(p)
                setattr(s, key, p)
            else:
                if s.text is None and s.audio_path is None and s.video_path is None and s.image_path is None:
                    bad(f"id {guid}: no transcription and no speech, video or image path", guid)
                    continue
                samples.append(s)
    unlisted = []
    for d, _ in _split_dirs(root):
        for f in walk_files(d):
            p = Path(f)
            if p.suffix.lower() in MEDIA_SUFFIXES and p.resolve() not in named:
                unlisted.append(p.relative_to(root).as_posix())
    return LayoutRead(samples=samples, problems=problems, unlisted=sorted(unlisted))


@register("annotations")
class Annotations(Layout):
    options = frozenset(OPTIONS)
    read = staticmethod(read)
    source_files = staticmethod(source_files)

"""The "lab" layout: ``data/<guid>.txt`` + ``data/<guid>.jpg``, ``train.txt`` and ``test_without_label.txt``.

Both lists are CSV headed ``guid,tag``; test tags are ``null``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmpipe.core.errors import BadSampleError
from mmpipe.ingest.layouts.base import Layout, LayoutRead, RawSample, register
from mmpipe.ingest.layouts.common import count_lines

TRAIN, TEST = "train.txt", "test_without_label.txt"
MEDIA = {".txt": "text_path", ".jpg": "image_path", ".jpeg": "image_path", ".png": "image_path",
         ".wav": "audio_path", ".flac": "audio_path", ".mp3": "audio_path", ".ogg": "audio_path",
         ".mp4": "video_path", ".avi": "video_path"}


def source_files(root: Path) -> list[str]:
    """Every file the manifest depends on (lists and data/), for the workflow's inputs."""
    files = [str(p) for p in (root / TRAIN, root / TEST) if p.exists()]
    data = root / "data"
    if data.is_dir():
        files += sorted(e.path for e in os.scandir(data) if e.is_file() and not e.name.startswith("."))
    return files


def plain_name_problem(guid: str) -> str | None:
    """Why ``guid`` cannot name files in ``data/`` (a path, a hidden or special name), or None."""
    if guid in (".", "..") or guid.startswith(".") or any(c in guid for c in "/\\\0:") or guid != guid.strip():
        return f"guid {guid!r} is not a plain file name (it would read files outside data/ or hidden ones)"
    return None


def read_list_text(path: Path) -> str:
    """A list file's text, through the same decoding chain as the tweets (Excel saves "Unicode text" as
    UTF-16); an undecodable list is an error naming it."""
    from mmpipe.ingest.decode import decode_file

    dec = decode_file(path)
    if dec.lossy:
        raise BadSampleError(path, "the list is not readable text in any known encoding")
    return dec.text


def _read_list(path: Path, split: str, classes: list[str] | None, problems: list[BadSampleError]):
    if not path.exists():
        what = "the data folder" if not path.parent.is_dir() else "the list file"
        raise BadSampleError(path, f"{what} is missing" + (f" ({path.parent} does not exist)"
                                                           if not path.parent.is_dir() else ""))
    lines = read_list_text(path).splitlines()
    if not lines or [c.strip().lower() for c in lines[0].split(",")] != ["guid", "tag"]:
        raise BadSampleError(path, f"expected the header 'guid,tag', found {lines[0][:60]!r}" if lines
                             else "file is empty; expected the header 'guid,tag'", line=1)
    for n, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        parts = [p.strip() for p in raw.split(",")]
        if len(parts) != 2 or not parts[0]:
            problems.append(BadSampleError(path, f"expected 'guid,tag', found {raw!r}", line=n))
            continue
        guid, tag = parts
        unsafe = plain_name_problem(guid)
        if unsafe:
            problems.append(BadSampleError(path, unsafe, line=n, guid=guid))
            continue
        label = None
        if split == "train":
            if classes is not None and tag not in classes:
                problems.append(BadSampleError(path, f"unknown tag {tag!r} for guid {guid} "
                                                     f"(known: {', '.join(classes)})", line=n, guid=guid))
                continue
            label = tag
        yield RawSample(guid=guid, source=str(path), line=n, split=split, label=label)


def read(root: Path, config: dict[str, Any]) -> LayoutRead:
    """Read both lists and attach the media files found in ``data/`` for each guid."""
    root = Path(root)
    classes = config.get("labels", {}).get("classes")
    problems: list[BadSampleError] = []
    samples: list[RawSample] = []
    seen: dict[str, RawSample] = {}
    for name, split in ((TRAIN, "train"), (TEST, "test")):
        for s in _read_list(root / name, split, classes, problems):
            if s.guid in seen:
                first = seen[s.guid]
                problems.append(BadSampleError(s.source, f"duplicate guid {s.guid} (first listed at "
                                                         f"{Path(first.source).name}:{first.line})",
                                               line=s.line, guid=s.guid))
                continue
            seen[s.guid] = s
            samples.append(s)

    data = root / "data"
    unlisted: set[str] = set()
    ambiguous: set[str] = set()
    if data.is_dir():
        for entry in os.scandir(data):
            stem, ext = os.path.splitext(entry.name)
            field_name = MEDIA.get(ext.lower())
            if not entry.is_file() or field_name is None:
                continue
            if stem in seen:
                s = seen[stem]
                other = getattr(s, field_name)
                if other is not None:
                    ambiguous.add(stem)
                    problems.append(BadSampleError(entry.path, f"guid {stem} has two {field_name.split('_')[0]} "
                                                               f"files, {other.name} and {entry.name}: keep one",
                                                   line=None, guid=stem))
                setattr(s, field_name, Path(entry.path).resolve())
            else:
                unlisted.add(entry.name)
    samples = [s for s in samples if s.guid not in ambiguous]
    for s in samples:  # the lab layout needs text and image for every sample
        if s.text_path is None:
            s.text_path = (data / f"{s.guid}.txt").resolve()
        if s.image_path is None:
            s.image_path = (data / f"{s.guid}.jpg").resolve()
    return LayoutRead(samples=samples, problems=problems, unlisted=sorted(unlisted))


@register("lab")
class Lab(Layout):
    options = frozenset(())
    read = staticmethod(read)
    source_files = staticmethod(source_files)

    @staticmethod
    def count(root: Path) -> int:
        lists = [p for p in (root / TRAIN, root / TEST) if p.is_file()]
        return max(0, count_lines(lists) - len(lists))  # less the header lines

"""What a data set layout adapter yields: one RawSample per listed sample, before decoding and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmpipe.core.errors import BadSampleError

SPLITS = ("train", "val", "test")


@dataclass
class RawSample:
    """A listed sample as the layout names it. ``split`` None means: train pool, validation carved later."""

    guid: str
    source: str                      # list file that names the sample
    line: int                        # 1-based line in ``source``
    split: str = "train"
    label: str | None = None
    score: float | None = None
    group: str | None = None         # e.g. the video an utterance comes from; splits never cut a group
    text: str | None = None          # inline text (tables, transcripts)
    text_path: Path | None = None    # or a text file to decode
    image_path: Path | None = None
    audio_path: Path | None = None
    video_path: Path | None = None
    vectors: dict[str, Any] | None = None  # imported vectors by field name (1-D float arrays), see encoders/imported.py


@dataclass
class LayoutRead:
    samples: list[RawSample]
    problems: list[BadSampleError] = field(default_factory=list)  # list-level problems (duplicates, tags)
    unlisted: list[str] = field(default_factory=list)              # files present that no list names

"""What a data set layout adapter yields: one RawSample per listed sample, before decoding and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mmpipe.core.errors import BadSampleError
from mmpipe.core.registry import Registry

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
    speaker: str | None = None       # who says it (dialogues): names the turns of the dialogue context
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


class Layout:
    """A data set layout adapter, chosen by ``layout: <name>``; register one with ``@register("<name>")``.

    ``read`` lists the samples (unchecked: the manifest decodes and checks them); ``source_files`` names every
    file ``read`` depends on, so that a changed file reruns the manifest; ``options`` are the keys it accepts
    under ``layout_options``.
    """

    name: ClassVar[str] = ""
    options: ClassVar[frozenset[str]] = frozenset()

    @staticmethod
    def read(root: Path, config: dict[str, Any]) -> LayoutRead:
        raise NotImplementedError

    @staticmethod
    def source_files(root: Path) -> list[str]:
        raise NotImplementedError

    @classmethod
    def count(cls, root: Path) -> int:
        """About how many samples the folder holds, cheaply, before any is read (it sizes ``shards: auto``);
        by default the number of source files, which media layouts over-count by a small factor."""
        return len(cls.source_files(root))


LAYOUTS: Registry[type[Layout]] = Registry("layout", "mmpipe.ingest.layouts", "mmpipe.layouts")
register = LAYOUTS.register

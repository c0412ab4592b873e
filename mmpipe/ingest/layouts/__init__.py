"""Data set layout adapters, chosen by ``layout:`` in the config."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import mmpipe.ingest.layouts.annotations as annotations_layout  # not `from . import annotations`: the __future__ name
from mmpipe.ingest.layouts import lab, table, vectors_index

LAYOUTS: dict[str, ModuleType] = {"lab": lab, "features": vectors_index, "annotations": annotations_layout, "table": table}


def get(name: str) -> ModuleType:
    """The adapter module for ``name``: it has ``read(root, config)`` and ``source_files(root)``."""
    if name not in LAYOUTS:
        raise KeyError(f"unknown layout {name!r}; known: {sorted(LAYOUTS)}")
    return LAYOUTS[name]


def source_files(name: str, root: str | Path) -> list[str]:
    return get(name).source_files(Path(root))

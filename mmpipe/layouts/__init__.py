"""Data set layout adapters, chosen by ``layout:`` in the config."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from mmpipe.layouts import lab

LAYOUTS: dict[str, ModuleType] = {"lab": lab}


def get(name: str) -> ModuleType:
    """The adapter module for ``name``: it has ``read(root, config)`` and ``source_files(root)``."""
    if name not in LAYOUTS:
        raise KeyError(f"unknown layout {name!r}; known: {sorted(LAYOUTS)}")
    return LAYOUTS[name]


def source_files(name: str, root: str | Path) -> list[str]:
    return get(name).source_files(Path(root))

"""Data set layout adapters, chosen by ``layout:`` in the config: one module each, found by discovery."""

from __future__ import annotations

from pathlib import Path

from mmpipe.ingest.layouts.base import LAYOUTS, Layout, LayoutRead, RawSample, register

__all__ = ["LAYOUTS", "Layout", "LayoutRead", "RawSample", "get", "register", "source_files"]


def get(name: str) -> type[Layout]:
    """The adapter registered as ``name`` (a ``ConfigError`` naming the known ones otherwise)."""
    return LAYOUTS.get(name)


def source_files(name: str, root: str | Path) -> list[str]:
    return get(name).source_files(Path(root))

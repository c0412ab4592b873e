"""Data set layout adapters, chosen by ``layout:`` in the config: one module each, found by discovery."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mmpipe.ingest.layouts.base import LAYOUTS, Layout, LayoutRead, RawSample, register

__all__ = ["LAYOUTS", "Layout", "LayoutRead", "RawSample", "get", "register", "source_files", "sources_digest"]


def get(name: str) -> type[Layout]:
    """The adapter registered as ``name`` (a ``ConfigError`` naming the known ones otherwise)."""
    return LAYOUTS.get(name)


def source_files(name: str, root: str | Path) -> list[str]:
    return get(name).source_files(Path(root))


def sources_digest(name: str, root: str | Path) -> str:
    """A short digest of the path, size and modification time of every file the manifest reads.

    The manifest rule takes it as a parameter instead of listing thousands of raw files as inputs: planning stays
    fast and the console short, and a new, removed or changed raw file still changes the digest (Snakemake's
    ``params`` rerun trigger), so the manifest is rebuilt.
    """
    h = hashlib.sha256()
    prefix = len(str(root).rstrip(os.sep)) + 1
    for f in source_files(name, root):
        st = os.stat(f)
        h.update(f"{f[prefix:]}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]

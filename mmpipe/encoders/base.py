"""The encoder interface: a model id or directory in, a fixed-width float32 vector per sample out.

Backends are found by discovery (``mmpipe.core.registry``): every module of this package, the
``mmpipe.encoders`` entry points and the ``plugins:`` files register theirs with ``@register("name")``,
so a new backend is one file plus its config entry. Importing a module of this package must stay cheap:
torch, transformers, cv2, librosa and polars are imported where they are used, never at module top.

* ``Encoder``: the interface, and ``check_spec``, the planning-time check of a config entry.
* ``BatchedEncoder``: the batch loop (decode threads ahead of the model, progress bar, output in input
  order); a backend declares ``load`` (one item), ``forward`` (one batch) and, where it helps, ``order``.
* ``TorchEncoder``: a ``BatchedEncoder`` whose ``forward`` is a torch model: ``collate`` then ``embed``,
  in inference mode (with mixed precision on CUDA), with the weights loaded once (``load_model``) on the
  configured device.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from contextlib import ExitStack, nullcontext
from typing import Any, ClassVar, ContextManager, Sequence

import numpy as np

from mmpipe.core.errors import ConfigError, MmpipeError
from mmpipe.core.registry import Registry
from mmpipe.encoders.images import default_workers, prefetch_batches
from mmpipe.core.precision import autocast
from mmpipe.core.memory import retain_freed_memory
from mmpipe.encoders.resolve import PKG_PREFIX, apply_threads, module_available, names_local_path, torch_device

__all__ = ["ENCODERS", "BatchedEncoder", "Encoder", "TorchEncoder", "build_encoder", "fingerprint_id", "register"]

ENCODERS: Registry[type["Encoder"]] = Registry("encoder backend", "mmpipe.encoders", "mmpipe.encoders")
register = ENCODERS.register

# Keys the pipeline may keep in an ``encoders.<name>`` entry that are not the backend's business.
# ``adapt`` (fine-tuning, ``mmpipe.encoders.adapt``) and ``runtime`` (``mmpipe.encoders.text_onnx``) are checked
# there.
PASSTHROUGH_KEYS = frozenset({"backend", "modality", "name", "column", "field", "input", "enabled", "description",
                              "adapt", "runtime"})


class _Name:
    """``backend``: the registered ``name``, on the class and on its instances."""

    def __get__(self, obj: object, owner: type) -> str:
        return owner.name  # type: ignore[attr-defined]


class Encoder(ABC):
    """A frozen feature extractor.

    ``encode`` takes one item per sample (a text string, or a file path for image/audio/video)
    and returns a ``(n, dim)`` float32 array. ``fingerprint`` describes everything that
    changes the vectors (backend, model, weights hash or revision, preprocessing, pooling);
    it is stored in the Parquet metadata of every feature shard.

    Config entries: ``KEYS`` are the backend's own keys (its ``__init__`` parameters), ``REQUIRED`` the ones
    that must be set (with a hint), ``PATH_KEYS`` those whose value may be a local path (with what it names),
    ``REQUIRES`` the Python modules the backend needs (module -> what to ``pip install``).
    """

    name: ClassVar[str] = ""  # set by ``register``
    backend = _Name()
    modality: ClassVar[str] = ""
    KEYS: ClassVar[frozenset[str]] = frozenset()
    REQUIRED: ClassVar[dict[str, str]] = {}
    PATH_KEYS: ClassVar[dict[str, str]] = {}
    REQUIRES: ClassVar[dict[str, str]] = {}

    @classmethod
    def check_spec(cls, spec: dict[str, Any]) -> None:
        """Check one ``encoders.<name>`` entry without loading anything: unknown or missing keys, local paths
        that do not exist, ``pkg:`` modules and required modules that are not installed (a ``ConfigError``)."""
        unknown = sorted(set(spec) - cls.KEYS - PASSTHROUGH_KEYS)
        if unknown:
            raise ConfigError(f"{cls.name}: unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"allowed: {', '.join(sorted(cls.KEYS)) or 'none'}")
        for key, hint in cls.REQUIRED.items():
            if spec.get(key) is None:
                raise ConfigError(f"{cls.name}: {key!r} is required ({hint})")
        for key, what in cls.PATH_KEYS.items():
            value = spec.get(key)
            if not isinstance(value, str):
                continue
            if value.startswith(PKG_PREFIX):
                module = value[len(PKG_PREFIX):].strip()
                if not module_available(module):
                    raise ConfigError(f"{cls.name}: {key} {value!r}: module {module!r} is not installed; "
                                      f"`pip install {module.replace('_', '-')}`")
            elif names_local_path(value) and not os.path.exists(os.path.expanduser(value)):
                raise ConfigError(f"{cls.name}: {what} {value!r} not found")
        for module, dist in cls.REQUIRES.items():
            if not module_available(module):
                raise ConfigError(f"{cls.name}: needs the Python module {module!r}: `pip install {dist}`")

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> "Encoder":
        """Build from one ``encoders.<name>`` entry (checked by ``check_spec`` first)."""
        cls.check_spec(spec)
        return cls(**{k: v for k, v in spec.items() if k in cls.KEYS})

    @property
    @abstractmethod
    def dim(self) -> int:
        """Width of each output vector."""

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """JSON-serialisable description of what determines the output vectors."""

    @abstractmethod
    def encode(self, items: Sequence[Any], progress: bool = True) -> np.ndarray:
        """Encode ``items`` in batches; returns float32 ``(len(items), dim)``."""

    def warm_up(self) -> None:
        """Load what ``encode`` would load on first use (a model), so that timings tell loading from encoding."""

    def fingerprint_id(self) -> str:
        """Short stable hash of the fingerprint."""
        return fingerprint_id(self.fingerprint())


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    """Short stable hash of an encoder fingerprint (what keys its cached vectors)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


class BatchedEncoder(Encoder):
    """The batch loop: ``load`` runs per item in ``decode_workers`` threads, a couple of batches ahead of
    ``forward``, which turns one batch into a ``(len(batch), dim)`` array; rows come back in input order.

    A subclass sets ``batch_size`` (and ``decode_workers``, ``_dim`` where known) and defines ``load``,
    ``forward`` and ``blank`` (a loaded item for the one-pass width probe); ``order`` may batch the items
    in another order (e.g. by length).
    """

    unit: ClassVar[str] = "item"  # progress-bar unit
    batch_size: int = 32
    decode_workers: int = 1
    _dim: int | None = None

    def inputs(self, items: Sequence[Any]) -> list[Any]:
        """The items as ``load`` takes them (default: ``str``, e.g. file paths)."""
        return [str(x) for x in items]

    def order(self, items: list[Any]) -> np.ndarray | None:
        """A permutation to batch the items in (None: as given)."""
        return None

    def load(self, item: Any) -> Any:
        """Decode / prepare one item (runs in a decode thread)."""
        return item

    @abstractmethod
    def forward(self, batch: list[Any]) -> np.ndarray:
        """Float32 ``(len(batch), dim)`` for a batch of loaded items."""

    def blank(self) -> Any:
        """A loaded item to probe the width with, where the config does not tell it."""
        raise MmpipeError(f"{self.backend}: the output width is unknown before encode()")

    def context(self) -> ContextManager[Any]:
        """Context the batches run in."""
        return nullcontext()

    @property
    def dim(self) -> int:
        """Output width (known from the config, or from one pass over ``blank()``)."""
        if self._dim is None:
            with self.context():
                self._dim = int(self.forward([self.blank()]).shape[1])
        return int(self._dim)

    @property
    def desc(self) -> str:
        """Progress-bar label."""
        model = getattr(self, "model_name", None)
        return f"{self.backend}:{model}" if model else self.backend

    def encode(self, items: Sequence[Any], progress: bool = True) -> np.ndarray:
        """Encode ``items`` into float32 ``(n, dim)``, in input order; unreadable files raise ``BadSampleError``."""
        from tqdm.auto import tqdm

        items = self.inputs(items)
        n = len(items)
        if n == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        order = self.order(items)
        if order is not None:
            items = [items[i] for i in order]
        out: np.ndarray | None = None
        pos = 0
        with self.context(), tqdm(total=n, disable=not progress, unit=self.unit, desc=self.desc) as bar:
            for batch in prefetch_batches(items, self.load, self.batch_size, self.decode_workers):
                vec = self.forward(batch)
                if out is None:
                    self._dim = int(self._dim or vec.shape[1])
                    out = np.empty((n, self._dim), dtype=np.float32)
                if vec.shape[1] != out.shape[1]:
                    raise MmpipeError(f"{self.backend}: expected width {out.shape[1]}, model gave {vec.shape[1]}")
                out[slice(pos, pos + len(batch)) if order is None else order[pos: pos + len(batch)]] = vec
                pos += len(batch)
                bar.update(len(batch))
        assert out is not None
        return out


class TorchEncoder(BatchedEncoder):
    """A ``BatchedEncoder`` around a frozen torch model: ``forward`` is ``embed(collate(batch))`` on
    ``device``, in inference mode; ``load_model`` runs once, on first use of ``model``."""

    def __init__(self, batch_size: int = 32, threads: int | None = None, device: str | None = "cpu",
                 decode_workers: int | None = None) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"{self.backend}: batch_size must be >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        apply_threads(threads)
        self.device = torch_device(device)
        if self.device == "cpu":
            retain_freed_memory()  # activations re-used from batch to batch, not faulted in again (core.memory)
        self.decode_workers = int(decode_workers) if decode_workers else default_workers(self.device)
        self._model: Any = None

    @abstractmethod
    def load_model(self) -> Any:
        """The model in eval mode (float32) on ``device``."""

    @abstractmethod
    def embed(self, x: Any) -> Any:
        """A ``(n, dim)`` tensor for the collated batch ``x``."""

    def warm_up(self) -> None:
        """Load the model and, where the encoder has a ``blank`` item, run it as a batch, so that first-call costs
        (kernel set-up) are paid here."""
        self.model
        try:
            item = self.blank()
        except MmpipeError:
            return
        with self.context():
            self.forward([item])

    @property
    def model(self) -> Any:
        """The model (loaded on first use)."""
        if self._model is None:
            self._model = self.load_model()
        return self._model

    def collate(self, batch: list[Any]) -> Any:
        """Stack the loaded items (arrays or tensors) into one tensor on ``device``."""
        import torch

        x = torch.stack(batch) if isinstance(batch[0], torch.Tensor) else torch.from_numpy(np.stack(batch))
        return x.to(self.device)

    def forward(self, batch: list[Any]) -> np.ndarray:
        return self.embed(self.collate(batch)).float().cpu().numpy()

    def context(self) -> ContextManager[Any]:
        """Inference mode, with mixed precision on CUDA (``core.precision.autocast``); the vectors come back float32."""
        import torch

        stack = ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(autocast(self.device))
        return stack


def build_encoder(spec: dict[str, Any]) -> Encoder:
    """Instantiate the encoder that ``spec['backend']`` names."""
    return ENCODERS.get(spec["backend"]).from_config(spec)

"""The encoder interface: a model id or directory in, a fixed-width float32 vector per sample out."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

REGISTRY: dict[str, type["Encoder"]] = {}


def register(name: str) -> Callable[[type["Encoder"]], type["Encoder"]]:
    """Class decorator: make an encoder available as ``backend: <name>`` in the config."""

    def deco(cls: type[Encoder]) -> type[Encoder]:
        cls.backend = name
        REGISTRY[name] = cls
        return cls

    return deco


class Encoder(ABC):
    """A frozen feature extractor.

    ``encode`` takes one item per sample (a text string, or a file path for image/audio/video)
    and returns a ``(n, dim)`` float32 array. ``fingerprint`` describes everything that
    changes the vectors (backend, model, weights hash or revision, preprocessing, pooling);
    it is stored in the Parquet metadata of every feature shard.
    """

    backend: ClassVar[str] = ""
    modality: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    def from_config(cls, spec: dict[str, Any]) -> "Encoder":
        """Build from one ``encoders.<name>`` config entry."""

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

    def fingerprint_id(self) -> str:
        """Short stable hash of the fingerprint."""
        blob = json.dumps(self.fingerprint(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def build_encoder(spec: dict[str, Any]) -> Encoder:
    """Instantiate the encoder that ``spec['backend']`` names."""
    from mmpipe import encoders  # noqa: F401  (registers the built-in backends)

    backend = spec["backend"]
    if backend not in REGISTRY:
        raise KeyError(f"unknown encoder backend {backend!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[backend].from_config(spec)

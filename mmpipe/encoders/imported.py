"""``imported``: vectors that were extracted elsewhere (CMU-MOSEI/MOSI feature files, your own pipeline).

Config keys: ``field`` (required: the vector field the layout imported, e.g. ``audio_features`` in an index
file, or ``text`` / ``audio`` / ``video`` in the CMU-MOSI Poria folder), ``modality`` (``text``, ``audio``,
``video``, ``image``, or any name; by default the field's name up to its first ``_`` when that is a known
modality), ``dim`` (optional: the expected width, checked), ``normalize`` (False; True scales each vector to
unit L2 norm).

How the vectors travel: at manifest time the data set layout reads the vectors of each listed sample (and
checks their width and finiteness, naming the file and line of a bad one) into the manifest's shard slices,
as a fixed-size float32 column ``vector:<field>`` whose bytes are part of the sample's content hash. This
encoder then only copies that column of its slice into a feature shard, so imported vectors become feature
shards like any other, and a new or changed sample reruns only its own shard.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmpipe.core.errors import ConfigError, MmpipeError
from mmpipe.encoders.base import Encoder, register

MODALITIES = ("text", "audio", "video", "image")


@register("imported")
class ImportedEncoder(Encoder):
    """Copies pre-extracted vectors from the shard slice; items are the ``vector:<field>`` rows."""

    KEYS = frozenset({"field", "modality", "dim", "normalize", "threads", "device"})
    REQUIRED = {"field": "the vector field the layout imports"}

    def __init__(self, field: str, modality: str | None = None, dim: int | None = None, normalize: bool = False,
                 threads: int | None = None, device: str | None = None) -> None:
        from mmpipe.ingest.vector_columns import vector_column  # imports polars

        if not isinstance(field, str) or not field.strip():
            raise ConfigError(f"imported: 'field' must name an imported vector field, got {field!r}")
        self.field = field
        if modality is None:
            head = field.split("_", 1)[0].lower()
            if head not in MODALITIES:
                raise ConfigError(f"imported: cannot tell the modality of field {field!r}; set modality: "
                                  f"({', '.join(MODALITIES)} or any name)")
            modality = head
        self.modality = str(modality)
        self.expected_dim = int(dim) if dim is not None else None
        if not isinstance(normalize, bool):
            raise ConfigError(f"imported: normalize must be true or false, got {normalize!r}")
        self.normalize = normalize
        self.input_column = vector_column(field)
        self._dim: int | None = self.expected_dim

    @property
    def dim(self) -> int:
        """The vectors' width (known once a slice was read, or from ``dim``)."""
        if self._dim is None:
            raise MmpipeError(f"imported: the width of field {self.field!r} is known only after encode()")
        return self._dim

    def fingerprint(self) -> dict[str, Any]:
        """What the vectors are: the imported field, modality and width."""
        return {"backend": self.backend, "field": self.field, "modality": self.modality,
                "source": "layout import (shard slice column " + self.input_column + ")",
                "normalize": self.normalize, "dim": self._dim, "dtype": "float32"}

    def encode(self, items: Sequence[Any] | np.ndarray, progress: bool = True) -> np.ndarray:
        """``items``: the slice's ``vector:<field>`` column as an ``(n, dim)`` array (or a list of vectors)."""
        if isinstance(items, np.ndarray) and items.ndim == 2:
            X = items.astype(np.float32, copy=True)
        else:
            rows = list(items)
            if any(isinstance(r, str) for r in rows):
                raise MmpipeError(f"imported: the shard slice has no column {self.input_column!r}: the data set "
                                  f"layout imported no vector field {self.field!r} (check the field name and the "
                                  "layout's vector fields, listed in the manifest log)")
            if not rows:
                if self._dim is None:
                    raise MmpipeError(f"imported: no vectors of field {self.field!r} and no 'dim' to size an empty "
                                      "shard")
                return np.empty((0, self._dim), np.float32)
            X = np.asarray([np.asarray(r, np.float32) for r in rows], dtype=np.float32)
            if X.ndim != 2:
                raise MmpipeError(f"imported: field {self.field!r} holds vectors of different widths")
        if self.expected_dim is not None and X.shape[1] != self.expected_dim:
            raise ConfigError(f"imported: field {self.field!r} has width {X.shape[1]}, the config says dim: "
                              f"{self.expected_dim}")
        if not np.isfinite(X).all():
            raise MmpipeError(f"imported: field {self.field!r} holds NaN or infinite values")
        if self.normalize:
            X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        self._dim = int(X.shape[1])
        return X

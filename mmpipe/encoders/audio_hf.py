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

import json
from typing import Any, Sequence

import numpy as np

from mmpipe.encoders.audio_io import audio_fingerprint, load_audio
from mmpipe.encoders.base import Encoder, register
from mmpipe.encoders.images import default_workers, prefetch_batches
from mmpipe.encoders.resolve import apply_threads, check_spec, resolve_model, torch_device, weights_digest
from mmpipe.core.errors import ConfigError, MmpipeError


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


def conv_output_lengths(lengths: np.ndarray, kernels: Sequence[int], strides: Sequence[int]) -> np.ndarray:
    """Frames out of a stack of unpadded 1-D convolutions for inputs of ``lengths`` samples."""
    out = np.asarray(lengths, dtype=np.int64)
    for k, s in zip(kernels, strides):
        out = np.maximum((out - int(k)) // int(s) + 1, 0)
    return out


@register("hf_audio")
class HFAudioEncoder(Encoder):
    """Frozen Hugging Face speech encoder, pooled over the frames of the real audio; items are audio paths."""

    modality = "audio"
    POOLINGS = ("mean", "max")
    KEYS = frozenset({"model", "revision", "pooling", "layer", "max_seconds", "pad", "batch_size", "threads",
                      "device", "decode_workers"})

    def __init__(self, model: str, revision: str | None = None, pooling: str = "mean", layer: int = -1,
                 max_seconds: float | None = None, pad: bool = False, batch_size: int = 8,
                 threads: int | None = None, device: str | None = "cpu", decode_workers: int | None = None) -> None:
        from transformers import AutoConfig, AutoFeatureExtractor

        if pooling not in self.POOLINGS:
            raise ConfigError(f"hf_audio: pooling must be one of {self.POOLINGS}, got {pooling!r}")
        if int(batch_size) < 1:
            raise ConfigError(f"hf_audio: batch_size must be >= 1, got {batch_size!r}")
        self.model_name = model
        self.model_path = resolve_model(model)
        self.revision = revision
        self.pooling = pooling
        self.layer = int(layer)
        self.pad = bool(pad)
        self.batch_size = int(batch_size)
        apply_threads(threads)
        self.device = torch_device(device)
        self.decode_workers = int(decode_workers) if decode_workers else default_workers(self.device)
        self.config = AutoConfig.from_pretrained(self.model_path, revision=revision)
        self.model_type = getattr(self.config, "model_type", None)
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
        self._model: Any = None
        self._digest: str | None = None

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> "HFAudioEncoder":
        """Build from an ``encoders.<name>`` entry with ``backend: hf_audio``."""
        kw = check_spec(spec, cls.KEYS, "hf_audio")
        if "model" not in kw:
            raise ConfigError("hf_audio: 'model' is required (hub id, local directory or pkg:<module>)")
        return cls(**kw)

    def _load(self) -> Any:
        if self._model is None:
            import torch
            from transformers import AutoModel

            model = AutoModel.from_pretrained(self.model_path, revision=self.revision, dtype=torch.float32)
            if self.whisper or hasattr(model, "get_encoder") and getattr(self.config, "is_encoder_decoder", False):
                model = model.get_encoder()
            model.eval()
            self._model = model.to(self.device)
        return self._model

    @property
    def dim(self) -> int:
        """Hidden size of the encoder."""
        if self._dim is None:
            self._dim = int(self.encode_arrays([np.zeros(self.sr, np.float32)]).shape[1])
        return int(self._dim)

    def fingerprint(self) -> dict[str, Any]:
        """Backend, model and weights, feature extractor settings, audio preparation, layer and pooling."""
        if self._digest is None:
            self._digest = weights_digest(self.model_path, self.revision)
        fe = {k: v for k, v in self.extractor.to_dict().items() if not k.startswith("_") and k != "mel_filters"}
        return {
            "backend": self.backend,
            "model": self.model_name,
            "revision": self.revision,
            "weights": self._digest,
            "model_type": self.model_type,
            "preprocessing": {
                **audio_fingerprint(self.sr, self.max_seconds, self.pad),
                "feature_extractor": type(self.extractor).__name__,
                "feature_extractor_config": _jsonable(fe),
                "padding": "whisper 30 s window" if self.whisper else ("max_seconds" if self.pad else "longest"),
                "attention_mask_to_model": self.whisper or self.pass_mask,
            },
            "layer": self.layer,
            "pooling": f"{self.pooling} over valid frames",
            "dim": self.dim,
            "dtype": "float32",
        }

    # ------------------------------------------------------------------ forward
    def _valid_frames(self, n_samples: np.ndarray, total_frames: int) -> np.ndarray:
        if self.whisper:
            hop = int(getattr(self.extractor, "hop_length", 160))
            mel = np.ceil(n_samples / hop).astype(np.int64)
            valid = (mel + 1) // 2  # conv2 has stride 2
        else:
            valid = conv_output_lengths(n_samples, self.config.conv_kernel, self.config.conv_stride)
        return np.clip(valid, 1, total_frames)

    def _batch(self, model: Any, waves: list[np.ndarray]) -> np.ndarray:
        lengths = {w.size for w in waves}
        if self.whisper or self.pass_mask or len(lengths) == 1:
            return self._forward(model, waves)
        # No attention mask (group-norm checkpoints): zero padding would change the vectors, and a vector must not
        # depend on its batch mates, so clips of different lengths go through separately.
        out = np.empty((len(waves), self._dim or 0), np.float32)
        for n in lengths:
            idx = [i for i, w in enumerate(waves) if w.size == n]
            vec = self._forward(model, [waves[i] for i in idx])
            if out.shape[1] != vec.shape[1]:
                out = np.empty((len(waves), vec.shape[1]), np.float32)
            out[idx] = vec
        return out

    def _forward(self, model: Any, waves: list[np.ndarray]) -> np.ndarray:
        import torch

        n_samples = np.array([w.size for w in waves], dtype=np.int64)
        if self.whisper:
            feats = self.extractor(waves, sampling_rate=self.sr, return_tensors="pt", return_attention_mask=True)
            kwargs = {"input_features": feats["input_features"].to(self.device)}
        else:
            feats = self.extractor(waves, sampling_rate=self.sr, return_tensors="pt", padding="longest",
                                   return_attention_mask=True)
            kwargs = {"input_values": feats["input_values"].to(self.device)}
            if self.pass_mask:
                kwargs["attention_mask"] = feats["attention_mask"].to(self.device)
        want_hidden = self.layer != -1
        out = model(**kwargs, output_hidden_states=want_hidden)
        hidden = out.hidden_states[self.layer] if want_hidden else out.last_hidden_state
        valid = torch.from_numpy(self._valid_frames(n_samples, hidden.shape[1])).to(hidden.device)
        mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < valid[:, None]
        if self.pooling == "max":
            vec = hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return vec.float().cpu().numpy()

    def _prep(self, path: str) -> np.ndarray:
        return load_audio(path, self.sr, self.max_seconds, self.pad)

    def encode_arrays(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Encode already decoded mono signals at ``sampling_rate``."""
        import torch

        model = self._load()
        blocks = []
        with torch.inference_mode():
            for start in range(0, len(waves), self.batch_size):
                blocks.append(self._batch(model, list(waves[start: start + self.batch_size])))
        return np.concatenate(blocks) if blocks else np.empty((0, self._dim or 0), np.float32)

    def encode(self, items: Sequence[Any], progress: bool = True) -> np.ndarray:
        """Encode audio files into float32 ``(n, dim)``; undecodable files raise ``BadSampleError``."""
        import torch
        from tqdm.auto import tqdm

        paths = [str(p) for p in items]
        out = np.empty((len(paths), self.dim), dtype=np.float32)
        if not paths:
            return out
        model = self._load()
        pos = 0
        with torch.inference_mode(), tqdm(total=len(paths), disable=not progress, unit="clip",
                                          desc=f"{self.backend}:{self.model_name}") as bar:
            for waves in prefetch_batches(paths, self._prep, self.batch_size, self.decode_workers):
                vec = self._batch(model, waves)
                if vec.shape[1] != out.shape[1]:
                    raise MmpipeError(f"hf_audio: expected width {out.shape[1]}, model gave {vec.shape[1]}")
                out[pos: pos + len(waves)] = vec
                pos += len(waves)
                bar.update(len(waves))
        return out


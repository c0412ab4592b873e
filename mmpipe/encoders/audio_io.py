"""Audio decoding shared by the audio encoders: any file in, mono float32 at the model's rate out.

``load_audio`` decodes with soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3 with libsndfile >= 1.1)
and falls back to ``librosa.load`` (audioread: whatever ffmpeg or GStreamer can read, e.g. M4A) when
soundfile cannot open the file. Channels are averaged to mono, the signal is resampled with librosa
(soxr) to the target rate, then cut to ``max_seconds`` (from the start) and, with ``pad``, padded with
silence to exactly that length. Only the part that is kept is decoded where the decoder can seek.

Anything unreadable (missing, empty, truncated, not audio, no samples) raises ``BadSampleError`` naming
the file.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from mmpipe.core.errors import BadSampleError

RESAMPLE_TYPE = "soxr_hq"
DECODER = "soundfile, librosa/audioread fallback; channels averaged; librosa.resample(soxr_hq)"


def _decode_soundfile(path: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(path) as f:
        native = int(f.samplerate)
        frames = -1 if max_seconds is None else int(math.ceil(max_seconds * native)) + 1
        data = f.read(frames=frames, dtype="float32", always_2d=True)
    return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0], native


def _decode_librosa(path: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "PySoundFile failed. Trying audioread instead."
        y, native = librosa.load(path, sr=None, mono=True, duration=max_seconds, dtype=np.float32)
    return y, int(native)


def load_audio(path: str | os.PathLike[str], sr: int, max_seconds: float | None = None,
               pad: bool = False) -> np.ndarray:
    """Decode ``path`` to a mono float32 signal at ``sr`` Hz, at most ``max_seconds`` long.

    With ``pad`` the result is exactly ``round(max_seconds * sr)`` samples (silence appended).
    """
    path = os.fspath(path)
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    try:
        if os.path.getsize(path) == 0:
            raise BadSampleError(path, "cannot read audio: empty file")
    except OSError as exc:
        raise BadSampleError(path, f"cannot read audio: {exc.strerror or exc}") from exc
    try:
        y, native = _decode_soundfile(path, max_seconds)
    except Exception as sf_exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        try:
            y, native = _decode_librosa(path, max_seconds)
        except Exception as lr_exc:
            raise BadSampleError(path, f"cannot decode audio: soundfile: {sf_exc}; librosa: "
                                       f"{str(lr_exc) or type(lr_exc).__name__}") from lr_exc
    if y.size == 0:
        raise BadSampleError(path, "cannot read audio: no samples")
    y = np.nan_to_num(np.asarray(y, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if native != sr:
        import librosa

        y = librosa.resample(y, orig_sr=native, target_sr=sr, res_type=RESAMPLE_TYPE).astype(np.float32, copy=False)
    if max_seconds is not None:
        n = int(round(max_seconds * sr))
        y = y[:n]
        if pad and y.size < n:
            y = np.pad(y, (0, n - y.size))
    return np.ascontiguousarray(y, dtype=np.float32)


def audio_fingerprint(sr: int, max_seconds: float | None, pad: bool) -> dict[str, Any]:
    """How ``load_audio`` prepared the signal, for an encoder's fingerprint."""
    return {"decoder": DECODER, "mono": "mean", "sample_rate": sr, "max_seconds": max_seconds,
            "cut": "from start", "pad": bool(pad)}

"""``librosa``: a hand-crafted acoustic descriptor set that needs no weights (the offline audio default).

Per frame (``n_fft`` window, ``hop_length`` hop, centred):

* MFCC (``n_mfcc`` coefficients of a ``n_mels`` mel spectrogram in dB) with first and second deltas;
* chroma (12 pitch classes, from the power spectrogram);
* spectral centroid and roll-off (kHz), spectral contrast (``n_bands + 1`` rows), zero-crossing rate, RMS;
* pitch: log2 of the YIN fundamental frequency between ``fmin`` and ``fmax``, kept only on voiced frames
  (frames whose RMS is at least ``voiced_rms`` times the clip's loudest frame).

Each row is summarised over time by ``stats`` (default mean, std, min, max); pitch statistics are over voiced
frames only (0 when none is voiced). Two clip-level values follow: the voiced fraction and the duration in
seconds (after the cut to ``max_seconds``). The width is fixed by the config:
``(3 * n_mfcc + 12 + (n_bands + 1) + 5) * len(stats) + 2`` (338 with the defaults).

Config keys: ``sample_rate`` (16000), ``max_seconds`` (30), ``n_mfcc`` (20), ``n_mels`` (64), ``n_fft`` (1024),
``hop_length`` (512), ``n_bands`` (6), ``fmin`` (65), ``fmax`` (600), ``voiced_rms`` (0.1), ``stats``,
``batch_size`` (16, clips per progress step), ``threads`` / ``decode_workers`` (clips computed in parallel).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmpipe.core.errors import ConfigError
from mmpipe.encoders.audio_io import audio_fingerprint, load_audio
from mmpipe.encoders.base import BatchedEncoder, register

STATS = {"mean": np.mean, "std": np.std, "min": np.min, "max": np.max}
CONTRAST_FMIN = 100.0
DELTA_WIDTH = 9


@register("librosa")
class LibrosaAudioEncoder(BatchedEncoder):
    """MFCC/chroma/spectral/pitch statistics of each audio file; items are audio file paths."""

    modality = "audio"
    unit = "clip"
    REQUIRES = {"librosa": "librosa"}
    KEYS = frozenset({"sample_rate", "max_seconds", "pad", "n_mfcc", "n_mels", "n_fft", "hop_length", "n_bands",
                      "fmin", "fmax", "voiced_rms", "stats", "batch_size", "threads", "decode_workers"})

    def __init__(self, sample_rate: int = 16000, max_seconds: float | None = 30.0, pad: bool = False,
                 n_mfcc: int = 20, n_mels: int = 64, n_fft: int = 1024, hop_length: int = 512, n_bands: int = 6,
                 fmin: float = 65.0, fmax: float = 600.0, voiced_rms: float = 0.1,
                 stats: Sequence[str] = ("mean", "std", "min", "max"), batch_size: int = 16,
                 threads: int | None = None, decode_workers: int | None = None) -> None:
        self.sr = int(sample_rate)
        self.max_seconds = float(max_seconds) if max_seconds else None
        self.pad = bool(pad)
        self.n_mfcc, self.n_mels, self.n_fft, self.hop = int(n_mfcc), int(n_mels), int(n_fft), int(hop_length)
        self.n_bands, self.fmin, self.fmax, self.voiced_rms = int(n_bands), float(fmin), float(fmax), float(voiced_rms)
        self.stats = tuple(stats)
        self.batch_size = int(batch_size)
        self.decode_workers = int(decode_workers or threads or 1)
        if self.sr < 4000:
            raise ConfigError(f"librosa: sample_rate must be >= 4000, got {sample_rate!r}")
        if not self.stats or any(s not in STATS for s in self.stats) or len(set(self.stats)) != len(self.stats):
            raise ConfigError(f"librosa: stats must be distinct names from {sorted(STATS)}, got {list(stats)!r}")
        if min(self.n_mfcc, self.n_mels, self.n_fft, self.hop, self.n_bands, self.batch_size, self.decode_workers) < 1:
            raise ConfigError("librosa: n_mfcc, n_mels, n_fft, hop_length, n_bands, batch_size must be >= 1")
        if CONTRAST_FMIN * 2 ** self.n_bands >= self.sr / 2:
            raise ConfigError(f"librosa: n_bands={self.n_bands} spectral-contrast bands from {CONTRAST_FMIN:g} Hz "
                              f"exceed the Nyquist frequency of {self.sr} Hz; lower n_bands")
        if not 0 < self.fmin < self.fmax <= self.sr / 2:
            raise ConfigError(f"librosa: need 0 < fmin < fmax <= sample_rate / 2, got {fmin!r}, {fmax!r}")
        if self.sr / self.fmin >= self.n_fft - self.n_fft // 2 - 1:
            raise ConfigError(f"librosa: fmin={self.fmin:g} Hz needs a longer n_fft than {self.n_fft} at {self.sr} Hz")
        # STFT frames needed for the delta filter (and at least one full window).
        self._min_samples = self.n_fft + (DELTA_WIDTH - 1) * self.hop
        self._dim = self.n_rows * len(self.stats) + 2  # rows x statistics, plus voiced fraction and duration

    @property
    def n_rows(self) -> int:
        return 3 * self.n_mfcc + 12 + 1 + (self.n_bands + 1) + 1 + 1 + 1 + 1

    def fingerprint(self) -> dict[str, Any]:
        """Every setting that changes the descriptors (and the librosa version)."""
        import librosa

        return {
            "backend": self.backend,
            "librosa": librosa.__version__,
            "preprocessing": audio_fingerprint(self.sr, self.max_seconds, self.pad),
            "frames": {"n_fft": self.n_fft, "hop_length": self.hop, "window": "hann", "center": True,
                       "min_samples": self._min_samples},
            "descriptors": {"mfcc": self.n_mfcc, "n_mels": self.n_mels, "deltas": [1, 2], "delta_width": DELTA_WIDTH,
                            "chroma": {"bins": 12, "tuning": 0.0}, "centroid_khz": 1, "rolloff_khz": 1,
                            "contrast": {"n_bands": self.n_bands, "fmin": CONTRAST_FMIN}, "zcr": 1, "rms": 1,
                            "pitch": {"method": "yin", "fmin": self.fmin, "fmax": self.fmax, "value": "log2(f0)",
                                      "voiced_rms": self.voiced_rms}},
            "stats": list(self.stats),
            "extra": ["voiced_fraction", "duration_s"],
            "dim": self.dim,
            "dtype": "float32",
        }

    def describe(self, y: np.ndarray) -> np.ndarray:
        """The descriptor vector of one mono signal at ``sample_rate``."""
        import librosa

        duration = y.size / self.sr
        if y.size < self._min_samples:
            y = np.pad(y, (0, self._min_samples - y.size))
        S = np.abs(librosa.stft(y, n_fft=self.n_fft, hop_length=self.hop, center=True))
        power = S**2
        mel = librosa.feature.melspectrogram(S=power, sr=self.sr, n_mels=self.n_mels, fmax=self.sr / 2)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=self.n_mfcc)
        d1 = librosa.feature.delta(mfcc, width=DELTA_WIDTH, order=1)
        d2 = librosa.feature.delta(mfcc, width=DELTA_WIDTH, order=2)
        chroma = librosa.feature.chroma_stft(S=power, sr=self.sr, n_fft=self.n_fft, tuning=0.0)
        centroid = librosa.feature.spectral_centroid(S=S, sr=self.sr, n_fft=self.n_fft) / 1000.0
        rolloff = librosa.feature.spectral_rolloff(S=S, sr=self.sr, n_fft=self.n_fft) / 1000.0
        contrast = librosa.feature.spectral_contrast(S=S, sr=self.sr, n_fft=self.n_fft, fmin=CONTRAST_FMIN,
                                                     n_bands=self.n_bands)
        zcr = librosa.feature.zero_crossing_rate(y, frame_length=self.n_fft, hop_length=self.hop, center=True)
        rms = librosa.feature.rms(S=S, frame_length=self.n_fft, hop_length=self.hop)
        f0 = librosa.yin(y, fmin=self.fmin, fmax=self.fmax, sr=self.sr, frame_length=self.n_fft,
                         hop_length=self.hop, center=True)
        frames = np.vstack([mfcc, d1, d2, chroma, centroid, rolloff, contrast, zcr, rms])
        t = min(frames.shape[1], f0.shape[0])
        frames, f0, loud = frames[:, :t], f0[:t], rms[0, :t]
        top = float(loud.max()) if t else 0.0
        voiced = (loud >= self.voiced_rms * top) & (loud > 1e-5) & np.isfinite(f0) if top > 0 else np.zeros(t, bool)
        pitch = np.log2(np.clip(f0[voiced], 1.0, None)) if voiced.any() else None
        out = []
        for name in self.stats:
            fn = STATS[name]
            out.append(fn(frames, axis=1))
            out.append(np.array([fn(pitch) if pitch is not None else 0.0]))
        out.append(np.array([voiced.mean() if t else 0.0, duration]))
        vec = np.concatenate(out).astype(np.float32)
        return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)

    def load(self, path: str) -> np.ndarray:
        """The descriptors of one file (computed in the decode threads)."""
        return self.describe(load_audio(path, self.sr, self.max_seconds, self.pad))

    def forward(self, vecs: list[np.ndarray]) -> np.ndarray:
        return np.stack(vecs)

"""``video``: clip vectors from sampled frames passed through any image encoder, then pooled over time.

Config keys:

* ``image_encoder``: an encoder entry of any image backend (``{backend: efficientnet_lite}``,
  ``{backend: hf_image, model: ...}``, ...); it encodes the frames.
* ``fps`` (1.0): frames per second to sample; ``null`` or 0 takes every frame.
* ``max_frames`` (32): at most this many frames per clip, from its start.
* ``pooling``: ``mean`` (default), ``max``, or ``meanmax`` (both, concatenated: twice the width).
* ``batch_size`` (32): frames per forward pass of the image encoder (frames of several clips share a batch).
* ``threads``, ``device``: passed on to the image encoder unless it sets its own.

Frames are read in a streaming way with OpenCV (``cv2.VideoCapture``: sequential ``grab``, and ``retrieve``
only for the sampled frames) in a background thread, converted to RGB ``PIL`` images and handed to the image
encoder in batches; per clip only running sums and maxima are kept, so neither a long video nor a large
shard ever sits whole in memory. A frame is sampled at the first frame whose timestamp reaches each
``k / fps`` (timestamps from the container's frame rate, or from the decoder's position where that is
unknown). A clip with no readable frame raises ``BadSampleError`` naming the file.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from typing import Any, Iterator, Sequence

import numpy as np

from mmpipe.core.errors import BadSampleError, ConfigError
from mmpipe.encoders.base import ENCODERS, Encoder, build_encoder, register

POOLINGS = ("mean", "max", "meanmax")
DEFAULT_IMAGE_ENCODER = {"backend": "efficientnet_lite"}
READER = "cv2.VideoCapture sequential grab/retrieve, BGR->RGB, first frame at or after each k/fps"


def iter_frames(path: str | os.PathLike[str], fps: float | None = 1.0, max_frames: int | None = 32
                ) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(seconds, RGB uint8 array)`` for the sampled frames of one video, streaming.

    Raises ``BadSampleError`` when the file cannot be opened or gives no frame at all.
    """
    import cv2

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadSampleError(path, "cannot read video: no such file")
    if os.path.getsize(path) == 0:
        raise BadSampleError(path, "cannot read video: empty file")
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise BadSampleError(path, "cannot read video: OpenCV cannot open it")
        src_fps = cap.get(cv2.CAP_PROP_FPS)
        src_fps = src_fps if src_fps and math.isfinite(src_fps) and 0 < src_fps < 1000 else None
        step = 1.0 / fps if fps else 0.0
        index, taken, next_t = 0, 0, 0.0
        while max_frames is None or taken < max_frames:
            if not cap.grab():
                break
            t = index / src_fps if src_fps else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            index += 1
            if t + 1e-6 < next_t:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                break
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
            elif frame.shape[2] == 4:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
            else:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            yield t, frame
            taken += 1
            if step:  # the next sampling time after this frame (every frame when fps is not set)
                next_t = (math.floor(t / step + 1e-6) + 1) * step
        if taken == 0:
            raise BadSampleError(path, "cannot read video: no frame could be decoded")
    finally:
        cap.release()


_DONE = object()


def _background(gen: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run ``gen`` in a thread, ``depth`` items ahead; its exceptions re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def run() -> None:
        try:
            for item in gen:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=run, name="mmpipe-video", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


@register("video")
class VideoEncoder(Encoder):
    """Sampled frames through an image encoder, pooled per clip; items are video file paths."""

    modality = "video"
    KEYS = frozenset({"image_encoder", "fps", "max_frames", "pooling", "batch_size", "threads", "device"})
    REQUIRES = {"cv2": "opencv-python-headless"}

    def __init__(self, image_encoder: dict[str, Any] | None = None, fps: float | None = 1.0,
                 max_frames: int | None = 32, pooling: str = "mean", batch_size: int = 32,
                 threads: int | None = None, device: str | None = None) -> None:
        if pooling not in POOLINGS:
            raise ConfigError(f"video: pooling must be one of {POOLINGS}, got {pooling!r}")
        if fps is not None and float(fps) < 0:
            raise ConfigError(f"video: fps must be >= 0 (0 or null: every frame), got {fps!r}")
        if max_frames is not None and int(max_frames) < 1:
            raise ConfigError(f"video: max_frames must be >= 1, got {max_frames!r}")
        if int(batch_size) < 1:
            raise ConfigError(f"video: batch_size must be >= 1, got {batch_size!r}")
        spec = dict(image_encoder or DEFAULT_IMAGE_ENCODER)
        if threads is not None:
            spec.setdefault("threads", threads)
        if device is not None:
            spec.setdefault("device", device)
        self.image = build_encoder(spec)
        self.fps = float(fps) if fps else None
        self.max_frames = int(max_frames) if max_frames else None
        self.pooling = pooling
        self.batch_size = int(batch_size)
        self.frames_seen = 0  # frames encoded by the last encode() call (for throughput reports)

    @classmethod
    def check_spec(cls, spec: dict[str, Any]) -> None:
        """The common checks, and those of the ``image_encoder`` entry (which must name an image backend)."""
        super().check_spec(spec)
        inner = spec.get("image_encoder") or DEFAULT_IMAGE_ENCODER
        if not isinstance(inner, dict) or "backend" not in inner:
            raise ConfigError("video: image_encoder needs a 'backend' (an image encoder backend)")
        try:
            backend = ENCODERS.get(inner["backend"])
            if backend.modality != "image":
                raise ConfigError(f"backend {inner['backend']!r} encodes {backend.modality or 'vectors'!r}, "
                                  "not images")
            backend.check_spec(inner)
        except ConfigError as exc:
            raise ConfigError(f"video: image_encoder: {exc}") from exc

    @property
    def dim(self) -> int:
        """The image encoder's width (twice that for ``meanmax``)."""
        return self.image.dim * (2 if self.pooling == "meanmax" else 1)

    def fingerprint(self) -> dict[str, Any]:
        """Frame sampling, pooling, and the image encoder's own fingerprint."""
        return {
            "backend": self.backend,
            "frames": {"reader": READER, "fps": self.fps, "max_frames": self.max_frames},
            "pooling": self.pooling,
            "image_encoder": self.image.fingerprint(),
            "dim": self.dim,
            "dtype": "float32",
        }

    def _frames(self, paths: Sequence[str]) -> Iterator[tuple[int, Any]]:
        from PIL import Image

        for i, path in enumerate(paths):
            for _, frame in iter_frames(path, self.fps, self.max_frames):
                yield i, Image.fromarray(frame, "RGB")

    def encode(self, items: Sequence[Any], progress: bool = True) -> np.ndarray:
        """Encode video files into float32 ``(n, dim)``; unreadable files raise ``BadSampleError``."""
        from tqdm.auto import tqdm

        paths = [str(p) for p in items]
        n, d = len(paths), self.image.dim
        sums = np.zeros((n, d), np.float64)
        maxs = np.full((n, d), -np.inf, np.float32)
        counts = np.zeros(n, np.int64)
        owners: list[int] = []
        frames: list[Any] = []
        self.frames_seen = 0

        def flush() -> None:
            if not frames:
                return
            vecs = self.image.encode(frames, progress=False)
            idx = np.asarray(owners)
            np.add.at(sums, idx, vecs)
            np.maximum.at(maxs, idx, vecs)
            np.add.at(counts, idx, 1)
            self.frames_seen += len(frames)
            frames.clear()
            owners.clear()

        done = 0
        with tqdm(total=n, disable=not progress, unit="clip", desc=f"{self.backend}:{self.image.backend}") as bar:
            for owner, frame in _background(self._frames(paths), depth=2 * self.batch_size):
                frames.append(frame)
                owners.append(owner)
                if owner > done:
                    bar.update(owner - done)
                    done = owner
                if len(frames) >= self.batch_size:
                    flush()
            flush()
            bar.update(n - done)
        missing = np.flatnonzero(counts == 0)
        if missing.size:  # iter_frames raises first; kept as a guard
            raise BadSampleError(paths[missing[0]], "cannot read video: no frame could be decoded")
        mean = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        if self.pooling == "mean":
            return mean
        if self.pooling == "max":
            return maxs
        return np.concatenate([mean, maxs], axis=1)

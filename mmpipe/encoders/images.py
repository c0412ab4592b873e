"""Image loading shared by the image encoders, and a thread pool that decodes ahead of the model.

``load_rgb`` accepts whatever users put in a data folder (RGB, greyscale, palette, RGBA, CMYK,
16-bit, PNG bytes in a ``.jpg``, EXIF-rotated phone photos) and returns an RGB ``PIL.Image``;
anything unreadable becomes a ``BadSampleError`` that names the file.

``prefetch_batches`` runs a per-item function (decode + resize) in a small thread pool, a couple
of batches ahead of the consumer, so that JPEG decoding (which releases the GIL) overlaps the
forward pass.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
from PIL import Image, ImageOps

from mmpipe.core.errors import BadSampleError

T = TypeVar("T")
R = TypeVar("R")

RESIZE_MODES = ("crop", "squash")
WHITE = (255, 255, 255)


def _to_8bit_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale -> 8-bit 'L'."""
    arr = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16"):
        arr = arr / 257.0
    else:
        top = float(np.nanmax(arr)) if arr.size else 0.0
        if top > 255.0:
            arr = arr * (255.0 / top)
    return Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8), mode="L")


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent pixels are composited on white."""
    if im.mode == "RGB":
        return im
    if (im.mode == "P" and "transparency" in im.info) or im.mode in ("PA", "LA", "La", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, WHITE)
        background.paste(im, mask=im.getchannel("A"))
        return background
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _to_8bit_l(im)
    return im.convert("RGB")


def load_rgb(path: str | os.PathLike[str] | Image.Image, draft_size: int | None = None) -> Image.Image:
    """Open an image file of any mode as an RGB image with EXIF orientation applied (a ``PIL.Image``
    given instead of a path is only converted to RGB).

    ``draft_size`` lets libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale while keeping both sides
    at least ``draft_size`` pixels (much faster for large photos that are resized anyway).
    Raises ``BadSampleError(path, "cannot read image: <reason>")`` for missing, empty, truncated
    or otherwise undecodable files.
    """
    if isinstance(path, Image.Image):  # already decoded (e.g. a video frame)
        return to_rgb(path)
    path = os.fspath(path)
    try:
        if os.path.getsize(path) == 0:
            raise BadSampleError(path, "cannot read image: empty file")
    except OSError as exc:
        raise BadSampleError(path, f"cannot read image: {exc.strerror or exc}") from exc
    try:
        with Image.open(path) as im:
            if draft_size and im.format == "JPEG":
                im.draft(None, (draft_size, draft_size))
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # malformed EXIF: keep the pixels as stored
                pass
            return to_rgb(im)
    except BadSampleError:
        raise
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError, ...
        reason = str(exc) or type(exc).__name__
        raise BadSampleError(path, f"cannot read image: {reason}") from exc


def white_image(size: int) -> Image.Image:
    """A blank ``size`` x ``size`` RGB image (to probe an encoder's width)."""
    return Image.new("RGB", (size, size), WHITE)


def image_items(items: Sequence[object]) -> list:
    """Image encoder inputs: file paths as ``str``; in-memory ``PIL.Image`` objects pass through."""
    return [x if isinstance(x, Image.Image) else os.fspath(x) if isinstance(x, os.PathLike) else str(x) for x in items]


def resize_square(im: Image.Image, size: int, mode: str = "crop") -> Image.Image:
    """``size`` x ``size`` RGB: "crop" scales the short side to ``size`` and centre-crops;
    "squash" resizes both sides to ``size`` (keeps all content, changes the aspect ratio)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    w, h = im.size
    if mode == "squash":
        return im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def default_workers(device: str = "cpu") -> int:
    """Decode threads when the config gives none.

    On CPU the forward pass is the bottleneck (a JPEG decodes and resizes in a few ms, a CNN
    forward takes tens of ms per image) and extra decode threads only fight torch's threads for
    the cores, so one thread decodes ahead. On a GPU decoding is the bottleneck: up to 8 threads.
    """
    if not device.startswith("cuda"):
        return 1
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def prefetch_batches(
    items: Sequence[T],
    fn: Callable[[T], R],
    batch_size: int,
    workers: int | None = None,
    prefetch: int = 2,
) -> Iterator[list[R]]:
    """Yield ``[fn(x) for x in batch]`` for consecutive batches of ``items``, in order.

    ``fn`` runs in a thread pool of ``workers`` threads, up to ``prefetch`` batches ahead of
    the consumer. An exception raised by ``fn`` is re-raised when its batch is reached.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(items)
    starts = iter(range(0, n, batch_size))
    pool = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="mmpipe-decode")
    pending: deque[list[Future[R]]] = deque()

    def submit_next() -> None:
        start = next(starts, None)
        if start is not None:
            pending.append([pool.submit(fn, x) for x in items[start : start + batch_size]])

    try:
        for _ in range(prefetch + 1):
            submit_next()
        while pending:
            futures = pending.popleft()
            batch = [f.result() for f in futures]
            submit_next()
            yield batch
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

"""The C allocator's settings for forward passes on the CPU.

glibc's malloc gives freed memory back to the kernel as soon as the free top of a heap passes its trim threshold,
and a CNN's forward pass frees and re-allocates hundreds of MB of activations every batch, so every batch faults
its buffers in again. On this project's 2-core VM that fault storm halved EfficientNet-Lite0 (lab 5: 38 against
86 images/s, 9.8M against 0.26M minor page faults for 640 images; MiniLM's fine-tuning steps did not change).
``retain_freed_memory`` keeps freed memory in the process, as ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_TOP_PAD_``
would from its start: the peak resident memory of an image job grows by about a third, the faults go. Elsewhere
than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_TOP_PAD = -1, -2  # mallopt parameters (malloc.h)
TRIM_THRESHOLD = 4 << 30              # free memory kept at a heap's top before it is given back
TOP_PAD = 1 << 30                     # extra memory asked for each time a heap grows (untouched until used)
_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Keep freed memory in this process rather than give it back to the kernel (glibc only; once per process).

    Returns whether the settings are in force."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _applied = bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                                and libc.mallopt(M_TOP_PAD, TOP_PAD))
            except (OSError, AttributeError):  # a libc without mallopt (musl): nothing to tune
                pass
    return _applied

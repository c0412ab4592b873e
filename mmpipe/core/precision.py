"""Mixed precision, one rule for encoders, adapters and heads: on CUDA, bf16 where the GPU supports it, else fp16
with gradient scaling; nothing on the CPU. torch is imported where it is used."""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager


def _fp16(device: Any) -> bool:
    import torch

    return str(device).startswith("cuda") and not torch.cuda.is_bf16_supported()


def autocast(device: Any) -> ContextManager[Any]:
    """``torch.autocast`` on CUDA (bf16, or fp16 where the GPU lacks bf16); a no-op elsewhere."""
    import torch

    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16 if _fp16(device) else torch.bfloat16)
    return contextlib.nullcontext()


def grad_scaler(device: Any, amp: bool = True) -> Any:
    """A ``GradScaler`` that scales only where ``autocast(device)`` runs fp16 (and ``amp`` is on)."""
    import torch

    return torch.amp.GradScaler("cuda", enabled=amp and _fp16(device))

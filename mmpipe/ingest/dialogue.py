"""Dialogue context for text encoders: the texts of the turns before each sample in its group.

With ``text.context_turns: k`` (> 0) every row with a ``group`` gets ``text_context``: the texts of the up to ``k``
samples listed before it in the same group (listing order: file order, as MELD's utterances are), oldest first,
joined by a space. Only texts cross samples, never labels, so test utterances take their context from their own
dialogue. An ``hf_text`` encoder with ``context: true`` encodes the pair (text, context) and pools over the
sample's own tokens (``mmpipe.encoders.text_hf``). The context is part of the sample's content: its
``content_hash`` covers it, so a changed earlier turn re-encodes the turns after it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict, deque
from typing import Any

COLUMN = "text_context"


def context_turns(config: dict[str, Any]) -> int:
    """``text.context_turns`` (0: no context column)."""
    return int((config.get("text") or {}).get("context_turns") or 0)


def add_text_context(rows: list[dict[str, Any]], turns: int) -> None:
    """Set ``text_context`` (None where there is no earlier turn, or no group) on ``rows``, in listing order, and
    fold it into each row's ``content_hash``."""
    if turns <= 0:
        return
    before: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=turns))
    for row in rows:
        group, text = row.get("group"), row.get("text")
        earlier = before[group] if group is not None else None
        context = " ".join(earlier) if earlier else None
        row[COLUMN] = context
        if context is not None:
            h = hashlib.sha256(f"{row['content_hash']}\x1f{context}".encode())
            row["content_hash"] = h.hexdigest()[:32]
        if earlier is not None and text:
            earlier.append(text)


def encoder_items(texts: list[Any], contexts: list[Any] | None, spec: dict[str, Any]) -> list[Any]:
    """What a text encoder entry takes: the texts, or (``context: true``) (text, context) pairs."""
    if not spec.get("context"):
        return texts
    return list(zip(texts, contexts if contexts is not None else [None] * len(texts)))

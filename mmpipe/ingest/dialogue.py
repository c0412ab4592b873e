"""Dialogue context for text encoders: the texts of the turns around each sample in its group.

With ``text.context_turns: k`` (> 0) every row with a ``group`` gets ``text_context``: the texts of the up to ``k``
samples listed before it in the same group (listing order: file order, as MELD's utterances are), oldest first,
joined by a space. ``text.context_turns_after: j`` adds the texts of the up to ``j`` samples listed after it,
behind a ``" | "``: ``"<before> | <after>"`` (``"| <after>"`` for a dialogue's first turn). Only texts cross
samples, never labels, so test utterances take their context from their own dialogue, and an offline dialogue
(a MELD scene, a transcript) has its later turns as much as its earlier ones. An ``hf_text`` encoder with
``context: true`` encodes the pair (text, context) and pools over the sample's own tokens
(``mmpipe.encoders.text_hf``). The context is part of the sample's content: its ``content_hash`` covers it, so a
changed turn re-encodes the turns around it.

Where the layout names each row's ``speaker`` (a table's ``layout_options.speaker``), the context reads as the
transcript around the sample with its own words left out (they are the first text of the pair): every turn is
``"<speaker>: <text>"`` and the before part ends with ``"<own speaker>:"``, so the model sees who says what and
which turns are the sample's speaker's, as EmoBERTa's input does: ``"Ross: Hi. Monica: | Ross: What?"``.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections import defaultdict
from typing import Any

COLUMN = "text_context"
SPEAKER = "speaker"
AFTER = " | "


def _turn(row: dict[str, Any]) -> str:
    return f"{row[SPEAKER]}: {row['text']}" if row.get(SPEAKER) else row["text"]


def context_turns(config: dict[str, Any]) -> tuple[int, int]:
    """``(text.context_turns, text.context_turns_after)``: how many turns before and after (0, 0: no context)."""
    text = config.get("text") or {}
    return int(text.get("context_turns") or 0), int(text.get("context_turns_after") or 0)


def add_text_context(rows: list[dict[str, Any]], turns: tuple[int, int]) -> None:
    """Set ``text_context`` (None where there is no other turn, or no group) on ``rows``, from the ``turns``
    (before, after) around each row in listing order, and fold it into each row's ``content_hash``."""
    before, after = turns
    if before <= 0 and after <= 0:
        return
    said: dict[Any, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))  # group -> its non-empty turns
    for i, row in enumerate(rows):
        if row.get("group") is not None and row.get("text"):
            said[row["group"]][0].append(i)
            said[row["group"]][1].append(_turn(row))
    for i, row in enumerate(rows):
        at, texts = said.get(row.get("group"), ([], [])) if row.get("group") is not None else ([], [])
        earlier = texts[max(0, bisect_left(at, i) - before):bisect_left(at, i)]
        later = texts[bisect_right(at, i):bisect_right(at, i) + after]
        if row.get(SPEAKER):
            earlier = [*earlier, f"{row[SPEAKER]}:"]
        context = " ".join(earlier) or None
        if later:
            context = f"{context or ''}{AFTER}{' '.join(later)}".lstrip()
        row[COLUMN] = context
        if context is not None:
            h = hashlib.sha256(f"{row['content_hash']}\x1f{context}".encode())
            row["content_hash"] = h.hexdigest()[:32]


def encoder_items(texts: list[Any], contexts: list[Any] | None, spec: dict[str, Any]) -> list[Any]:
    """What a text encoder entry takes: the texts, or (``context: true``) (text, context) pairs."""
    if not spec.get("context"):
        return texts
    return list(zip(texts, contexts if contexts is not None else [None] * len(texts)))

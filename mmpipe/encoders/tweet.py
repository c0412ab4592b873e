"""Tweet text helpers shared by ``hf_text`` (``tweet_normalize``) and ``vader``: the mention and link
patterns, and ``normalize_tweet``, the TweetEval / cardiffnlp preprocessing.

A mention or a link is a whitespace-delimited token: ``@`` and at least one more character, or a token that
starts with ``http`` (so ``https``) or ``www.`` (case-sensitive, like cardiffnlp's ``startswith``).
``normalize_tweet`` maps mentions to ``@user`` and links to ``http``; everything else (the whitespace
included) is kept as it is.
"""

from __future__ import annotations

import re

__all__ = ["MENTION_RE", "URL_RE", "normalize_tweet"]

MENTION_RE = re.compile(r"(?<!\S)@\S+")
URL_RE = re.compile(r"(?<!\S)(?:http|www\.)\S*")


def normalize_tweet(text: str) -> str:
    """``@anything`` -> ``@user`` and links (http, https, www) -> ``http``, token by token."""
    return MENTION_RE.sub("@user", URL_RE.sub("http", text))

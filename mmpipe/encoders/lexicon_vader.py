"""``vader``: lexicon sentiment and tweet surface counts, no weights (VADER, from the ``vaderSentiment`` package).

Per text, 13 float32 values, in ``FEATURES`` order:

* VADER ``polarity_scores`` of the raw text: ``compound`` (-1..1), ``pos``, ``neu``, ``neg``;
* counts, each ``log1p``-scaled: emoji (a ZWJ sequence, skin tone or flag pair counts once), emoticons
  (``:)``, ``:-(``, ``;)``, ``:D``, ``:P``, ``XD``, ``<3``, ``^_^``, ...), hashtags, @mentions, links, ``!``,
  ``?``, ALL-CAPS words (2 or more letters);
* the fraction of letters that are capitals.

Mentions and links are the tokens of ``mmpipe.encoders.tweet``; hashtags are counted outside links, caps words
and the capital fraction on the text without its links, mentions and emoticons. ``None`` or empty text gives
zero counts (and VADER's scores of ``""``, all zero).

Config keys: ``batch_size`` (256, texts per progress step).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from mmpipe.core.errors import ConfigError
from mmpipe.encoders.base import BatchedEncoder, register
from mmpipe.encoders.tweet import MENTION_RE, URL_RE

# Bump when a feature definition below changes (it is in the fingerprint, so caches follow).
FEATURES_VERSION = 1
VADER_SCORES = ("compound", "pos", "neu", "neg")
COUNTS = ("emoji", "emoticons", "hashtags", "mentions", "urls", "exclamations", "questions", "caps_words")
FEATURES = (*VADER_SCORES, *COUNTS, "caps_fraction")

_PICTO = ("\U0001F300-\U0001F3FA\U0001F400-\U0001F64F\U0001F680-\U0001F6FF\U0001F900-\U0001F9FF"
          "\U0001FA70-\U0001FAFF\u2600-\u26FF\u2700-\u27BF\u2B1B\u2B1C\u2B50\u2B55\U0001F004\U0001F0CF")
_BASE = f"[{_PICTO}][\U0001F3FB-\U0001F3FF\uFE0F]*"  # a pictograph, its skin tone / presentation selector
EMOJI_RE = re.compile(f"[\U0001F1E6-\U0001F1FF]{{2}}|{_BASE}(?:\u200D{_BASE})*")
EMOTICON_RE = re.compile(
    r"(?<!\S)(?:[:;=][-o^'’]?[)(\]\[DPpOo/\\|*3]|[xX][-]?[DP]|</?3+|\^_*\^|-_+-|[oO]_[oO]|T_T)(?![^\s.,!?])"
)
HASHTAG_RE = re.compile(r"(?<!\w)#\w+")
WORD_RE = re.compile(r"[^\W\d_]+")


@register("vader")
class VaderEncoder(BatchedEncoder):
    """VADER polarity scores plus log1p counts of tweet markers; items are texts."""

    modality = "text"
    unit = "text"
    KEYS = frozenset({"batch_size"})
    REQUIRES = {"vaderSentiment": "vaderSentiment"}

    def __init__(self, batch_size: int = 256) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        if int(batch_size) < 1:
            raise ConfigError(f"vader: batch_size must be >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.analyzer = SentimentIntensityAnalyzer()
        self._dim = len(FEATURES)

    def fingerprint(self) -> dict[str, Any]:
        """Backend, vaderSentiment version, the feature list and the version of their definitions."""
        from importlib.metadata import version

        return {
            "backend": self.backend,
            "vaderSentiment": version("vaderSentiment"),
            "features": list(FEATURES),
            "features_version": FEATURES_VERSION,
            "counts": "log1p",
            "dim": self.dim,
            "dtype": "float32",
        }

    def inputs(self, items: Sequence[Any]) -> list[str]:
        """Texts; ``None`` counts as empty."""
        return ["" if t is None else str(t) for t in items]

    def describe(self, text: str) -> np.ndarray:
        """The feature vector of one text."""
        scores = self.analyzer.polarity_scores(text)
        no_links = URL_RE.sub(" ", text)
        plain = EMOTICON_RE.sub(" ", MENTION_RE.sub(" ", no_links))
        words = WORD_RE.findall(plain)
        letters = sum(c.isalpha() for c in plain)
        counts = [
            len(EMOJI_RE.findall(text)),
            len(EMOTICON_RE.findall(text)),
            len(HASHTAG_RE.findall(no_links)),
            len(MENTION_RE.findall(text)),
            len(URL_RE.findall(text)),
            text.count("!"),
            text.count("?"),
            sum(len(w) >= 2 and w.isupper() for w in words),
        ]
        caps = sum(c.isupper() for c in plain) / letters if letters else 0.0
        vec = [*(scores[k] for k in VADER_SCORES), *np.log1p(counts), caps]
        return np.asarray(vec, dtype=np.float32)

    def load(self, text: str) -> np.ndarray:
        return self.describe(text)

    def forward(self, vecs: list[np.ndarray]) -> np.ndarray:
        return np.stack(vecs)

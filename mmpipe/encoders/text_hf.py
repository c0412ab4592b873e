"""``hf_text``: sentence vectors from any Hugging Face ``AutoModel`` text encoder (BERT family).

Config keys: ``model`` (hub id, local directory or ``pkg:<module>``), ``revision``, ``pooling``
(``"mean"`` over the attention mask, ``"cls"`` (first token) or ``"max"`` over unmasked tokens),
``max_length`` (128), ``batch_size`` (64), ``threads``, ``device`` (``"cpu"``, ``"cuda"`` or
``"auto"``), ``normalize`` (False; True scales each vector to unit L2 norm, as
sentence-transformers' ``Normalize`` module does), ``tweet_normalize`` (False; True maps ``@mentions`` to
``@user`` and links to ``http`` before tokenising, as the TweetEval / cardiffnlp models expect; see
``mmpipe.encoders.tweet``).

Texts are tokenised once to get their lengths, grouped into batches of similar length (longest
first) and padded only to the longest text of each batch; the output is in input order.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmpipe.core.errors import ConfigError
from mmpipe.encoders.base import register
from mmpipe.encoders.hf import HFEncoder
from mmpipe.encoders.resolve import files_digest
from mmpipe.encoders.tweet import normalize_tweet

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@register("hf_text")
class HFTextEncoder(HFEncoder):
    """Frozen Hugging Face text encoder with mean, CLS or max pooling."""

    modality = "text"
    unit = "text"
    POOLINGS = ("mean", "cls", "max")
    KEYS = HFEncoder.KEYS | {"pooling", "max_length", "normalize", "tweet_normalize"}

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        pooling: str = "mean",
        max_length: int = 128,
        batch_size: int = 64,
        threads: int | None = None,
        device: str | None = "cpu",
        normalize: bool = False,
        tweet_normalize: bool = False,
    ) -> None:
        from transformers import AutoTokenizer

        if pooling not in self.POOLINGS:
            raise ConfigError(f"hf_text: pooling must be one of {self.POOLINGS}, got {pooling!r}")
        if int(max_length) < 2:
            raise ConfigError(f"hf_text: max_length must be >= 2, got {max_length!r}")
        if not isinstance(normalize, bool):
            raise ConfigError(f"hf_text: normalize must be true or false, got {normalize!r}")
        if not isinstance(tweet_normalize, bool):
            raise ConfigError(f"hf_text: tweet_normalize must be true or false, got {tweet_normalize!r}")
        super().__init__(model, revision, batch_size, threads, device, decode_workers=1)
        self.pooling = pooling
        self.max_length = int(max_length)
        self.normalize = normalize
        self.tweet_normalize = tweet_normalize
        max_pos = getattr(self.config, "max_position_embeddings", None)
        if isinstance(max_pos, int) and self.max_length > max_pos:
            raise ConfigError(
                f"hf_text: max_length {self.max_length} exceeds the model's max_position_embeddings {max_pos}"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, revision=revision)
        self._dim = getattr(self.config, "hidden_size", None) or getattr(self.config, "d_model", None)

    def fingerprint(self) -> dict[str, Any]:
        """Backend, model (as configured and resolved), weights digest, tokenisation and pooling.

        ``tweet_normalize`` is listed only when on, so the fingerprints (and caches) of configs without it stay.
        """
        preprocessing: dict[str, Any] = {
            "tokenizer": type(self.tokenizer).__name__,
            "tokenizer_files": files_digest(self.model_path, TOKENIZER_FILES),
            "max_length": self.max_length,
            "truncation": True,
            "padding": "longest_in_batch",
        }
        if self.tweet_normalize:
            preprocessing["tweet_normalize"] = True
        return {
            **self.model_fingerprint(),
            "preprocessing": preprocessing,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "dim": self.dim,
            "dtype": "float32",
        }

    def inputs(self, items: Sequence[Any]) -> list[str]:
        """Texts (tweet-normalised where configured); ``None`` counts as empty."""
        texts = ["" if t is None else str(t) for t in items]
        return [normalize_tweet(t) for t in texts] if self.tweet_normalize else texts

    def order(self, texts: list[str]) -> np.ndarray:
        """Longest first (by token count), so that peak memory shows up at once and padding stays short."""
        ids = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(texts))
        return np.argsort(-lengths, kind="stable")

    def blank(self) -> str:
        return "a"

    def collate(self, texts: list[str]) -> dict[str, Any]:
        """Tokenised and padded to the longest text of the batch, on ``device``."""
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def embed(self, enc: dict[str, Any]) -> Any:
        """The pooled (optionally normalised) last hidden state."""
        import torch

        hidden, mask = self.model(**enc).last_hidden_state, enc["attention_mask"]
        if self.pooling == "cls":
            vec = hidden[:, 0]
        elif self.pooling == "max":
            vec = hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(1)
            vec = vec.masked_fill(torch.isinf(vec), 0.0)  # all-masked rows (no tokens at all)
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        if self.normalize:
            vec = vec / vec.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return vec

"""``hf_text``: sentence vectors from any Hugging Face ``AutoModel`` text encoder (BERT family).

Config keys: ``model`` (hub id, local directory or ``pkg:<module>``), ``revision``, ``pooling``
(``"mean"`` over the attention mask, ``"cls"`` (first token) or ``"max"`` over unmasked tokens),
``max_length`` (128), ``batch_size`` (64), ``threads``, ``device`` (``"cpu"``, ``"cuda"`` or
``"auto"``), ``normalize`` (False; True scales each vector to unit L2 norm, as
sentence-transformers' ``Normalize`` module does), ``tweet_normalize`` (False; True maps ``@mentions`` to
``@user`` and links to ``http`` before tokenising, as the TweetEval / cardiffnlp models expect; see
``mmpipe.encoders.tweet``), ``context`` (False; True encodes each text as a pair with its dialogue context, the
manifest's ``text_context`` from ``text.context_turns``: the model attends to both, and the vector pools over the
text's own segment, so a sample without context gets the plain text's vector).

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


def text_inputs(items: Sequence[Any], tweet_normalize: bool, with_context: bool) -> list[Any]:
    """Texts (tweet-normalised where configured); ``None`` counts as empty. With ``context``, ``(text, context)``
    pairs (a plain text has no context)."""
    def clean(text: Any) -> str:
        text = "" if text is None else str(text)
        return normalize_tweet(text) if tweet_normalize else text

    if with_context:
        pairs = [(x, None) if not isinstance(x, (tuple, list)) else tuple(x) for x in items]
        return [(clean(t), clean(c) if c else None) for t, c in pairs]
    return [clean(t) for t in items]


@register("hf_text")
class HFTextEncoder(HFEncoder):
    """Frozen Hugging Face text encoder with mean, CLS or max pooling."""

    modality = "text"
    unit = "text"
    POOLINGS = ("mean", "cls", "max")
    KEYS = HFEncoder.KEYS | {"pooling", "max_length", "normalize", "tweet_normalize", "context"}

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
        context: bool = False,
    ) -> None:
        from transformers import AutoTokenizer

        if pooling not in self.POOLINGS:
            raise ConfigError(f"hf_text: pooling must be one of {self.POOLINGS}, got {pooling!r}")
        if int(max_length) < 2:
            raise ConfigError(f"hf_text: max_length must be >= 2, got {max_length!r}")
        if not isinstance(normalize, bool):
            raise ConfigError(f"hf_text: normalize must be true or false, got {normalize!r}")
        for key, value in (("tweet_normalize", tweet_normalize), ("context", context)):
            if not isinstance(value, bool):
                raise ConfigError(f"hf_text: {key} must be true or false, got {value!r}")
        super().__init__(model, revision, batch_size, threads, device, decode_workers=1)
        self.pooling = pooling
        self.max_length = int(max_length)
        self.normalize = normalize
        self.tweet_normalize = tweet_normalize
        self.with_context = context
        max_pos = getattr(self.config, "max_position_embeddings", None)
        if isinstance(max_pos, int) and self.max_length > max_pos:
            raise ConfigError(
                f"hf_text: max_length {self.max_length} exceeds the model's max_position_embeddings {max_pos}"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, revision=revision)
        self._dim = getattr(self.config, "hidden_size", None) or getattr(self.config, "d_model", None)

    def fingerprint(self) -> dict[str, Any]:
        """Backend, model (as configured and resolved), weights digest, tokenisation and pooling.

        ``tweet_normalize`` and ``context`` are listed only when on, so the fingerprints (and caches) of configs
        without them stay.
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
        if self.with_context:
            preprocessing["context"] = {"pair": "text, text_context", "truncation": "longest_first",
                                        "pooled": "text segment"}
        return {
            **self.model_fingerprint(),
            "preprocessing": preprocessing,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "dim": self.dim,
            "dtype": "float32",
        }

    def inputs(self, items: Sequence[Any]) -> list[Any]:
        return text_inputs(items, self.tweet_normalize, self.with_context)

    def _tokenize(self, items: list[Any], **kwargs: Any) -> dict[str, Any]:
        """The tokenizer on plain texts, or (with ``context``) on each (text, context) pair, with a ``pool_mask``
        that covers the text's segment (and the special tokens around it) but not the context."""
        if not self.with_context:
            return self.tokenizer(items, truncation=True, max_length=self.max_length, **kwargs)
        rows = []
        for text, ctx in items:
            enc = self.tokenizer(text, ctx, truncation=True, max_length=self.max_length)
            seq = enc.sequence_ids() if ctx else []
            own = seq.index(1) if 1 in seq else len(enc["input_ids"])
            rows.append((dict(enc), own))
        if not kwargs.get("padding"):
            return {"input_ids": [r["input_ids"] for r, _ in rows]}
        import torch

        batch = self.tokenizer.pad([r for r, _ in rows], return_tensors="pt")
        width = batch["input_ids"].shape[1]
        right = self.tokenizer.padding_side == "right"
        batch["pool_mask"] = torch.tensor([[1] * own + [0] * (width - own) if right else
                                           [0] * (width - len(r["input_ids"])) + [1] * own
                                           + [0] * (len(r["input_ids"]) - own) for r, own in rows])
        return batch

    def order(self, texts: list[Any]) -> np.ndarray:
        """Longest first (by token count), so that peak memory shows up at once and padding stays short."""
        ids = self._tokenize(texts, return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(texts))
        return np.argsort(-lengths, kind="stable")

    def blank(self) -> Any:
        return ("a", None) if self.with_context else "a"

    def collate(self, texts: list[str]) -> dict[str, Any]:
        """Tokenised and padded to the longest text of the batch, on ``device``."""
        enc = self._tokenize(texts, padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def embed(self, enc: dict[str, Any]) -> Any:
        """The pooled (optionally normalised) last hidden state."""
        import torch

        enc = dict(enc)
        pool = enc.pop("pool_mask", None)
        hidden = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"] if pool is None else pool * enc["attention_mask"]
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

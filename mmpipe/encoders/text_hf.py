"""``hf_text``: sentence vectors from any Hugging Face ``AutoModel`` text encoder (BERT family).

Config keys: ``model`` (hub id, local directory or ``pkg:<module>``), ``revision``, ``pooling``
(``"mean"`` over the attention mask, ``"cls"`` (first token) or ``"max"`` over unmasked tokens),
``max_length`` (128), ``batch_size`` (64), ``threads``, ``device`` (``"cpu"``, ``"cuda"`` or
``"auto"``), ``normalize`` (False; True scales each vector to unit L2 norm, as
sentence-transformers' ``Normalize`` module does).

Texts are tokenised once to get their lengths, grouped into batches of similar length (longest
first) and padded only to the longest text of each batch; the output is in input order.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmpipe.encoders.base import Encoder, register
from mmpipe.encoders.resolve import (
    apply_threads,
    check_spec,
    files_digest,
    resolve_model,
    torch_device,
    weights_digest,
)
from mmpipe.core.errors import ConfigError

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
class HFTextEncoder(Encoder):
    """Frozen Hugging Face text encoder with mean or CLS pooling."""

    modality = "text"
    POOLINGS = ("mean", "cls", "max")
    KEYS = frozenset(
        {"model", "revision", "pooling", "max_length", "batch_size", "threads", "device", "normalize"}
    )

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
    ) -> None:
        from transformers import AutoConfig, AutoTokenizer

        if pooling not in self.POOLINGS:
            raise ConfigError(f"hf_text: pooling must be one of {self.POOLINGS}, got {pooling!r}")
        if int(max_length) < 2:
            raise ConfigError(f"hf_text: max_length must be >= 2, got {max_length!r}")
        if int(batch_size) < 1:
            raise ConfigError(f"hf_text: batch_size must be >= 1, got {batch_size!r}")
        self.model_name = model
        self.model_path = resolve_model(model)
        self.revision = revision
        self.pooling = pooling
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        if not isinstance(normalize, bool):
            raise ConfigError(f"hf_text: normalize must be true or false, got {normalize!r}")
        self.normalize = normalize
        apply_threads(threads)
        self.device = torch_device(device)
        self.config = AutoConfig.from_pretrained(self.model_path, revision=revision)
        max_pos = getattr(self.config, "max_position_embeddings", None)
        if isinstance(max_pos, int) and self.max_length > max_pos:
            raise ConfigError(
                f"hf_text: max_length {self.max_length} exceeds the model's max_position_embeddings {max_pos}"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, revision=revision)
        self._model: Any = None
        self._digest: str | None = None
        self._dim: int | None = getattr(self.config, "hidden_size", None) or getattr(self.config, "d_model", None)

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> "HFTextEncoder":
        """Build from an ``encoders.<name>`` entry with ``backend: hf_text``."""
        kw = check_spec(spec, cls.KEYS, "hf_text")
        if "model" not in kw:
            raise ConfigError("hf_text: 'model' is required (hub id, local directory or pkg:<module>)")
        return cls(**kw)

    def _load(self) -> Any:
        """Load the weights (once), in eval mode and float32, on the configured device."""
        if self._model is None:
            import torch
            from transformers import AutoModel

            model = AutoModel.from_pretrained(self.model_path, revision=self.revision, dtype=torch.float32)
            model.eval()
            self._model = model.to(self.device)
        return self._model

    @property
    def dim(self) -> int:
        """Hidden size of the model (from its config; a dummy forward pass only as a fallback)."""
        if self._dim is None:
            self._dim = int(self.encode(["a"], progress=False).shape[1])
        return int(self._dim)

    def fingerprint(self) -> dict[str, Any]:
        """Backend, model (as configured and resolved), weights digest, tokenisation and pooling."""
        if self._digest is None:
            self._digest = weights_digest(self.model_path, self.revision)
        return {
            "backend": self.backend,
            "model": self.model_name,
            "revision": self.revision,
            "weights": self._digest,
            "model_type": getattr(self.config, "model_type", None),
            "preprocessing": {
                "tokenizer": type(self.tokenizer).__name__,
                "tokenizer_files": files_digest(self.model_path, TOKENIZER_FILES),
                "max_length": self.max_length,
                "truncation": True,
                "padding": "longest_in_batch",
            },
            "pooling": self.pooling,
            "normalize": self.normalize,
            "dim": self.dim,
            "dtype": "float32",
        }

    def _pool(self, hidden: Any, mask: Any) -> Any:
        import torch

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

    def encode(self, items: Sequence[Any], progress: bool = True) -> np.ndarray:
        """Encode texts (``None`` counts as empty) into float32 ``(n, dim)``, in input order."""
        import torch
        from tqdm.auto import tqdm

        texts = ["" if t is None else str(t) for t in items]
        n = len(texts)
        if n == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        model = self._load()
        ids = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")  # longest first: peak memory shows up at once
        out: np.ndarray | None = None
        with torch.inference_mode(), tqdm(
            total=n, disable=not progress, unit="text", desc=f"{self.backend}:{self.model_name}"
        ) as bar:
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                enc = {k: v.to(self.device) for k, v in enc.items()}
                hidden = model(**enc).last_hidden_state
                vec = self._pool(hidden, enc["attention_mask"]).float().cpu().numpy()
                if out is None:
                    out = np.empty((n, vec.shape[1]), dtype=np.float32)
                    self._dim = vec.shape[1]
                out[idx] = vec
                bar.update(len(idx))
        assert out is not None
        return out

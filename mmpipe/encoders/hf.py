"""What the Hugging Face backends (``hf_text``, ``hf_image``, ``hf_audio``) share: the ``model`` /
``revision`` keys, the model config, the weights digest and ``AutoModel`` loading."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from mmpipe.encoders.base import TorchEncoder
from mmpipe.encoders.resolve import resolve_model, weights_digest

MODEL_HINT = "hub id, local directory or pkg:<module>"


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (anything else as ``str``), keys sorted."""
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


class HFEncoder(TorchEncoder):
    """A ``TorchEncoder`` on a Hugging Face checkpoint: ``model`` (hub id, local directory or ``pkg:<module>``)
    and ``revision``; ``config`` is its ``AutoConfig``."""

    KEYS: ClassVar[frozenset[str]] = frozenset({"model", "revision", "batch_size", "threads", "device"})
    REQUIRED: ClassVar[dict[str, str]] = {"model": MODEL_HINT}
    PATH_KEYS: ClassVar[dict[str, str]] = {"model": "model directory"}
    REQUIRES: ClassVar[dict[str, str]] = {"transformers": "transformers"}

    def __init__(self, model: str, revision: str | None = None, batch_size: int = 32, threads: int | None = None,
                 device: str | None = "cpu", decode_workers: int | None = None) -> None:
        from transformers import AutoConfig

        super().__init__(batch_size, threads, device, decode_workers)
        self.model_name = model
        self.model_path = resolve_model(model)
        self.revision = revision
        self.config = AutoConfig.from_pretrained(self.model_path, revision=revision)
        self.model_type = getattr(self.config, "model_type", None)
        self._digest: str | None = None

    def pretrained(self, **kw: Any) -> Any:
        """``AutoModel.from_pretrained`` of the checkpoint, in float32."""
        import torch
        from transformers import AutoModel

        return AutoModel.from_pretrained(self.model_path, revision=self.revision, dtype=torch.float32, **kw)

    def load_model(self) -> Any:
        return self.pretrained().eval().to(self.device)

    def model_fingerprint(self) -> dict[str, Any]:
        """The head of the fingerprint: backend, model (as configured), revision, weights digest, model type."""
        if self._digest is None:
            self._digest = weights_digest(self.model_path, self.revision)
        return {"backend": self.backend, "model": self.model_name, "revision": self.revision,
                "weights": self._digest, "model_type": self.model_type}

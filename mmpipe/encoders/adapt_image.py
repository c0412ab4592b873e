"""EfficientNet-Lite adapted per fold: its last MBConv blocks fine-tuned with a linear classifier.

The image side of ``mmpipe.encoders.adapt`` (which cross-fits, keys and stores the fold models the same way for
every backend). ``method: last_blocks`` trains the last ``blocks`` MBConv blocks, the final 1x1 conv and its batch
norm (affine only: the network stays in eval mode, so batch-norm statistics and drop-connect are those of the base
model) and a linear classifier on the pooled vector; everything before them (the "prefix") is frozen. The prefix
runs once per training image under ``torch.no_grad()`` and its activations are kept in memory, so an epoch costs
only the trained blocks. A fold folder holds ``suffix.pt`` (the trained modules' state), ``head.pt`` and
``adapter.json``.

The feature is the FROZEN network's pooled vector followed by the fold model's class probabilities (regression:
its score). The adapted vectors themselves are not used: each fold's fine-tuned block moves the 1280-d space its
own way, so heads fed a mix of five spaces (and test rows with their mean) lost up to 0.13 macro-F1 on MVSA-Single
(lab 5), while the frozen space is one for every sample and the cross-fitted probabilities carry what tuning learnt.

Settings (``adapt:``): ``method`` (``last_blocks``), ``blocks`` (1), ``epochs`` (3), ``lr`` (1e-3),
``batch_size`` (32), ``weight_decay`` (0.01), ``dropout`` (0.1, before the classifier), ``label_smoothing``
(0.1), ``seed`` (0).
"""

from __future__ import annotations

import json
import logging
import time
from numbers import Real
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmpipe.core.errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("efficientnet_lite",)
METHODS = ("last_blocks",)
DEFAULTS: dict[str, Any] = {"method": "last_blocks", "blocks": 1, "epochs": 3, "lr": 1e-3, "batch_size": 32,
                            "weight_decay": 0.01, "dropout": 0.1, "label_smoothing": 0.1, "seed": 0}
HEAD_MODULES = ("_conv_head", "_bn1")  # what follows the blocks in extract_features


def settings(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The image ``adapt:`` settings with defaults filled in; a ``ConfigError`` names what is wrong."""
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    a = {**DEFAULTS, **raw}
    if a["method"] not in METHODS:
        raise ConfigError(f"{where}: method must be one of {', '.join(METHODS)} for image encoders, "
                          f"got {a['method']!r}")
    for key in ("blocks", "epochs", "batch_size"):
        if isinstance(a[key], bool) or not isinstance(a[key], int) or a[key] < 1:
            raise ConfigError(f"{where}: {key} must be a positive integer, got {a[key]!r}")
    if isinstance(a["lr"], bool) or not isinstance(a["lr"], Real) or a["lr"] <= 0:
        raise ConfigError(f"{where}: lr must be a positive number, got {a['lr']!r}")
    for key in ("weight_decay",):
        if isinstance(a[key], bool) or not isinstance(a[key], Real) or a[key] < 0:
            raise ConfigError(f"{where}: {key} must be a number >= 0, got {a[key]!r}")
    for key in ("dropout", "label_smoothing"):
        if isinstance(a[key], bool) or not isinstance(a[key], Real) or not 0 <= a[key] < 1:
            raise ConfigError(f"{where}: {key} must be a number in [0, 1), got {a[key]!r}")
    return a


class Split:
    """An EfficientNet-Lite cut before its last ``blocks`` blocks: ``prefix`` (frozen) and ``suffix`` (trained)."""

    def __init__(self, net: Any, blocks: int):
        n = len(net._blocks)
        if blocks > n:
            raise ConfigError(f"adapt.blocks: the model has {n} MBConv blocks, cannot train the last {blocks}")
        self.net, self.cut = net, n - blocks

    def trained_names(self) -> list[str]:
        """The module names whose parameters are fine-tuned."""
        return [f"_blocks.{i}" for i in range(self.cut, len(self.net._blocks))] + list(HEAD_MODULES)

    def trained_state(self) -> dict[str, Any]:
        names = tuple(f"{m}." for m in self.trained_names())
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items() if k.startswith(names)}

    def parameters(self) -> list[Any]:
        names = tuple(f"{m}." for m in self.trained_names())
        return [p for k, p in self.net.named_parameters() if k.startswith(names)]

    def _block(self, idx: int, x: Any) -> Any:
        rate = self.net._global_params.drop_connect_rate
        return self.net._blocks[idx](x, drop_connect_rate=rate * idx / len(self.net._blocks) if rate else rate)

    def prefix(self, x: Any) -> Any:
        """Pixels in [-1, 1] -> the input of the first trained block (as ``extract_features`` computes it)."""
        x = self.net._swish(self.net._bn0(self.net._conv_stem(x)))
        for idx in range(self.cut):
            x = self._block(idx, x)
        return x

    def suffix(self, x: Any) -> Any:
        """The trained blocks, the head conv and the global average: the pooled vector."""
        for idx in range(self.cut, len(self.net._blocks)):
            x = self._block(idx, x)
        return self.net._swish(self.net._bn1(self.net._conv_head(x))).mean(dim=(2, 3))


def _base_encoder(spec: dict[str, Any], threads: int | None) -> Any:
    from mmpipe.encoders.adapt import base_spec
    from mmpipe.encoders.base import build_encoder

    return build_encoder({**base_spec(spec), **({"threads": threads} if threads else {})})


_FROZEN: dict[str, Any] = {}


def frozen_encoder(spec: dict[str, Any], threads: int | None) -> Any:
    """The base encoder, built once per process and shared by the fold models."""
    key = json.dumps([spec, threads], sort_keys=True, default=str)
    if key not in _FROZEN:
        _FROZEN[key] = _base_encoder(spec, threads)
    return _FROZEN[key]


def prefix_activations(enc: Any, split: Split, items: Sequence[Any]) -> Any:
    """The frozen prefix's activations of ``items`` (decoded ahead in the encoder's thread pool), on CPU."""
    import torch

    from mmpipe.encoders.images import prefetch_batches

    out = []
    with torch.no_grad():
        for batch in prefetch_batches(enc.inputs(list(items)), enc.load, enc.batch_size, enc.decode_workers):
            out.append(split.prefix(enc.pixels(enc.collate(batch))).cpu())
    return torch.cat(out)


def train_fold(spec: dict[str, Any], items: Sequence[Any], targets: np.ndarray, n_out: int, out_dir: str | Path,
               info: dict[str, Any], threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Fine-tune the last blocks (and a linear head of ``n_out`` outputs) on the images ``items``; write
    ``suffix.pt``, ``head.pt`` and ``adapter.json`` to ``out_dir`` atomically. Returns what ``adapter.json``
    holds (the same keys as the text adapters', plus ``trained``)."""
    import torch

    from mmpipe.core.atomic import atomic_dir
    from mmpipe.encoders.adapt import FORMAT, _dir_digest, run_epochs, settings as adapt_settings

    a = adapt_settings(spec)
    regression = np.asarray(targets).dtype.kind == "f"
    torch.manual_seed(int(a["seed"]))
    enc = _base_encoder(spec, threads)
    net = enc.model.eval()
    split = Split(net, int(a["blocks"]))
    for p in net.parameters():
        p.requires_grad_(False)
    trainable = split.parameters()
    for p in trainable:
        p.requires_grad_(True)
    start = time.perf_counter()
    cached = prefix_activations(enc, split, items)
    log.info("fold %s: prefix activations of %d images %s cached in %.0f s", info.get("fold"), len(items),
             tuple(cached.shape[1:]), time.perf_counter() - start)
    head = torch.nn.Sequential(torch.nn.Dropout(float(a["dropout"])), torch.nn.Linear(enc.dim, n_out)).to(enc.device)
    opt = torch.optim.AdamW(trainable + list(head.parameters()), lr=float(a["lr"]),
                            weight_decay=float(a["weight_decay"]))
    bs, n = int(a["batch_size"]), len(items)
    steps = a["epochs"] * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / max(steps, 1)))
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float32 if regression else torch.long, device=enc.device)
    head.train()
    losses = run_epochs(lambda rows: head(split.suffix(cached[rows].to(enc.device))), y, n, a, opt, sched, info,
                        regression, enc.device, progress)
    with atomic_dir(out_dir) as tmp:
        torch.save(split.trained_state(), tmp / "suffix.pt")
        torch.save({k: v.detach().cpu() for k, v in head.state_dict().items()}, tmp / "head.pt")
        meta = {"format": FORMAT, **info, "settings": a, "n_train": n, "n_out": n_out,
                "task": "regression" if regression else "classification", "trained": split.trained_names(),
                "train_loss": losses, "train_seconds": round(time.perf_counter() - start, 1),
                "weights": _dir_digest(tmp)}
        (tmp / "adapter.json").write_text(json.dumps(meta, indent=1, default=str) + "\n", encoding="utf-8")
    return meta


class ImageFoldModel:
    """One trained image fold: the base encoder with its trained modules loaded, and the fold's head."""

    def __init__(self, spec: dict[str, Any], path: str | Path, threads: int | None = None):
        import torch

        self.path = Path(path)
        self.meta = json.loads((self.path / "adapter.json").read_text(encoding="utf-8"))
        self.encoder = enc = _base_encoder(spec, threads)
        state = torch.load(self.path / "suffix.pt", map_location="cpu", weights_only=True)
        result = enc.model.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise ConfigError(f"{self.path}: suffix.pt does not fit {spec.get('model')!r} "
                              f"(unexpected {result.unexpected_keys[:3]})")
        enc.model.eval()
        self.head = torch.nn.Sequential(torch.nn.Dropout(0.0), torch.nn.Linear(enc.dim, int(self.meta["n_out"])))
        self.head.load_state_dict(torch.load(self.path / "head.pt", map_location="cpu", weights_only=True))
        self.head.eval()
        self.regression = self.meta["task"] == "regression"
        self.frozen = frozen_encoder(spec, threads)

    def encode(self, items: Sequence[Any], progress: bool = True) -> np.ndarray:
        """The frozen network's pooled vectors followed by the fold head's class probabilities (or score) on the
        adapted network's vectors."""
        import torch

        items = list(items)
        emb = self.encoder.encode(items, progress=progress)
        with torch.inference_mode():
            out = self.head(torch.from_numpy(emb)).float()
            out = out if self.regression else torch.softmax(out, dim=1)
        return np.concatenate([self.frozen.encode(items, progress=False), out.numpy()], axis=1).astype(np.float32)

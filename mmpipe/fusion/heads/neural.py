"""Shared training for the neural fusion heads.

A subclass only declares its extra hyperparameters (``module_defaults``) and builds an ``nn.Module``
whose ``forward(xs)`` takes a list of ``(batch, d_m)`` tensors (one per modality, in fit order) and
returns ``(batch, n_classes)`` logits. Everything else lives here:

* per-modality standardisation fitted on the training split (stored with the model);
* optional SMOTE on the training features, ``class_weight: balanced``, ``loss: ce | focal`` with
  ``label_smoothing`` and ``focal_gamma``;
* ``task: regression`` (see ``common``): the module has ONE output, the score; ``loss: l1`` (default, as
  MMSA trains its MOSI/MOSEI regressors) ``| mse | huber``; early stopping on validation MAE (ties: the
  earlier epoch); ``predict`` returns scores and ``predict_proba`` is an error;
* AdamW, minibatches of ``batch_size``, at most ``max_epochs``; with validation data, early stopping
  on validation macro-F1 (ties: lower validation loss) with ``patience`` and the best epoch's
  weights restored at the end (regression: validation MAE, see above)
  (``best_epoch_``, per-epoch ``history_``); without validation data exactly ``epochs`` epochs
  (default ``max_epochs``), which is how a model is refitted on train+val for the best epoch;
* seeding (identical seed and data -> identical probabilities on the same machine and thread count);
* ``device: cpu | cuda | auto``; on CUDA, ``torch.autocast`` mixed precision (bf16 where supported,
  else fp16 with a GradScaler) unless ``amp: false``;
* ``save``/``load``: one ``torch.save`` file (state_dict, config, scaler statistics, classes).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmpipe.core.atomic import atomic_path
from mmpipe.fusion.heads.base import REGISTRY, Features, Head
from mmpipe.fusion.heads.common import (COMMON_DEFAULTS, balanced_weights, check_features, check_params, fast_scores,
                                 is_regression, prepare_train, regression_scores, standardize)

NEURAL_DEFAULTS: dict[str, Any] = {
    **COMMON_DEFAULTS,
    "hidden": 128,
    "dropout": 0.25,
    "lr": 1e-3,
    "weight_decay": 1e-2,
    "batch_size": 128,
    "max_epochs": 60,
    "patience": 8,
    "epochs": None,  # only without validation data; default max_epochs
    "loss": None,  # classification: ce (default) | focal; regression: l1 (default) | mse | huber
    "label_smoothing": 0.0,
    "focal_gamma": 2.0,
    "device": "cpu",  # cpu | cuda | auto
    "amp": True,  # mixed precision on CUDA
    "eval_batch_size": 4096,
}

FORMAT_VERSION = 1


def resolve_device(spec: str) -> torch.device:
    spec = (spec or "cpu").lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"device {spec!r} requested but CUDA is not available; using the CPU", stacklevel=3)
        spec = "cpu"
    if spec.startswith("cuda"):
        # cuBLAS needs this for deterministic GEMMs; it must be set before the first cuBLAS call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device(spec)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels for the block (warn-only, so ops without one still run); restores the setting."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def focal_loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None, gamma: float,
               label_smoothing: float) -> torch.Tensor:
    """Multi-class focal loss ``-sum_c q_c (1 - p_c)^gamma log p_c`` with label-smoothed targets ``q``;
    class weights weight each sample by its true class (normalised like weighted cross-entropy)."""
    k = logits.shape[1]
    logp = F.log_softmax(logits, dim=1)
    q = F.one_hot(y, k).to(logp.dtype)
    if label_smoothing:
        q = q * (1 - label_smoothing) + label_smoothing / k
    per = -(q * (1 - logp.exp()).pow(gamma) * logp).sum(1)
    if weight is None:
        return per.mean()
    w = weight[y]
    return (per * w).sum() / w.sum()


class MLP(nn.Module):
    """``in -> hidden -> GELU -> dropout -> out``."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NeuralHead(Head):
    """Base class of the torch heads (see the module docstring)."""

    module_defaults: dict[str, Any] = {}

    def __init__(self, **params: Any):
        self.params = check_params(self.name or type(self).__name__, params,
                                   {**NEURAL_DEFAULTS, **self.module_defaults})
        self.regression_ = is_regression(self.params)
        allowed = ("l1", "mse", "huber") if self.regression_ else ("ce", "focal")
        self.loss_ = self.params["loss"] or allowed[0]
        if self.loss_ not in allowed:
            raise ValueError(f"loss must be one of {', '.join(map(repr, allowed))} for task "
                             f"{self.params['task']}, got {self.params['loss']!r}")
        self.history_: list[dict[str, float]] = []
        self.best_epoch_: int | None = None
        self.module_: nn.Module | None = None

    # ---- what subclasses define -------------------------------------------------------------
    def build_module(self, dims: list[int], n_classes: int) -> nn.Module:
        raise NotImplementedError

    def _train_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(out, y)

    def _proba(self, out: torch.Tensor) -> torch.Tensor:
        return torch.softmax(out.float(), dim=1)

    def _score(self, out: torch.Tensor) -> torch.Tensor:
        """Regression: the module's output ``(batch, 1)`` -> scores ``(batch,)``."""
        return out.float()[:, 0]

    def _after_fit(self, Xv: list[torch.Tensor] | None, y_val: np.ndarray | None) -> None:
        """Hook after the best weights are restored (late fusion fits its modality weights here)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        pass

    def refit_params(self) -> dict[str, Any]:
        """Parameters that reproduce this fit's choices when refitting without validation data."""
        return {"epochs": int(self.best_epoch_)} if self.best_epoch_ else {}

    def get_params(self) -> dict[str, Any]:
        return dict(self.params)

    # ---- training -----------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        logits = logits.float()
        if self.regression_:
            pred = logits[:, 0]
            if self.loss_ == "mse":
                return F.mse_loss(pred, y)
            if self.loss_ == "huber":
                return F.smooth_l1_loss(pred, y)
            return F.l1_loss(pred, y)
        if self.loss_ == "focal":
            return focal_loss(logits, y, self._class_w, float(p["focal_gamma"]), float(p["label_smoothing"]))
        return F.cross_entropy(logits, y, weight=self._class_w, label_smoothing=float(p["label_smoothing"]))

    def _autocast(self):
        if self.device_.type == "cuda" and self.params["amp"]:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    def _to_tensors(self, X: dict[str, np.ndarray]) -> list[torch.Tensor]:
        return [torch.from_numpy(X[m]).to(self.device_) for m in self.modalities_]

    @torch.no_grad()
    def _predict_tensors(self, xs: list[torch.Tensor]) -> torch.Tensor:
        assert self.module_ is not None
        self.module_.eval()
        n = xs[0].shape[0]
        bs = int(self.params["eval_batch_size"])
        outs = []
        for s in range(0, n, bs):
            with self._autocast():
                out = self.module_([x[s:s + bs] for x in xs])
            outs.append((self._score(out) if self.regression_ else self._proba(out)).float())
        if not outs:
            return torch.zeros((0,) if self.regression_ else (0, self.n_classes_), device=self.device_)
        return torch.cat(outs)

    def fit(self, X: Features, y: np.ndarray, X_val: Features | None = None,
            y_val: np.ndarray | None = None) -> "NeuralHead":
        p = self.params
        if p["threads"]:
            torch.set_num_threads(int(p["threads"]))
        prep = prepare_train(X, y, X_val, y_val, p)
        self.modalities_, self.dims_ = prep["modalities"], prep["dims"]
        self.n_classes_ = k = prep["n_classes"]
        self.stats_ = prep["stats"]
        self.device_ = resolve_device(p["device"])
        seed = int(p["seed"])
        has_val = prep["X_val"] is not None
        n_epochs = int(p["max_epochs"]) if has_val else int(p["epochs"] or p["max_epochs"])

        with deterministic():
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            gen = torch.Generator().manual_seed(seed)
            self.module_ = self.build_module(self.dims_, k).to(self.device_)
            ytr = prep["y"]
            self._class_w = (torch.from_numpy(balanced_weights(ytr, k)).to(self.device_)
                             if p["class_weight"] == "balanced" and not self.regression_ else None)
            xs = self._to_tensors(prep["X"])
            yt = torch.from_numpy(ytr).to(self.device_)
            xv = self._to_tensors(prep["X_val"]) if has_val else None
            yv = prep["y_val"]
            yv_t = torch.from_numpy(yv).to(self.device_) if has_val else None

            opt = torch.optim.AdamW(self.module_.parameters(), lr=float(p["lr"]),
                                    weight_decay=float(p["weight_decay"]))
            use_fp16 = (self.device_.type == "cuda" and p["amp"] and not torch.cuda.is_bf16_supported())
            scaler = torch.amp.GradScaler("cuda", enabled=use_fp16)
            n, bs = len(ytr), int(p["batch_size"])
            best_f1, best_loss, best_state, bad = -1.0, float("inf"), None, 0
            self.history_, self.best_epoch_ = [], None
            for epoch in range(1, n_epochs + 1):
                self.module_.train()
                # one gather per epoch, then contiguous slices (views): cheaper than a gather per batch
                perm = torch.randperm(n, generator=gen).to(self.device_)
                xs_ep, y_ep = [x[perm] for x in xs], yt[perm]
                total = torch.zeros((), device=self.device_)
                for s in range(0, n, bs):
                    yb = y_ep[s:s + bs]
                    with self._autocast():
                        out = self.module_([x[s:s + bs] for x in xs_ep])
                    loss = self._train_loss(out, yb)
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    total += loss.detach() * len(yb)
                rec = {"epoch": epoch, "train_loss": float(total) / n}
                if has_val and self.regression_:
                    sc = regression_scores(yv, self._predict_tensors(xv).cpu().numpy())
                    rec["val_loss"] = rec["val_mae"] = sc["mae"]
                    rec["val_corr"], rec["val_acc2"] = sc["corr"], sc["acc2"]
                    if sc["mae"] < best_loss:  # strictly better: ties keep the earlier epoch
                        best_loss, bad, self.best_epoch_ = sc["mae"], 0, epoch
                        best_state = {kk: v.detach().clone() for kk, v in self.module_.state_dict().items()}
                    else:
                        bad += 1
                elif has_val:
                    proba = self._predict_tensors(xv)
                    p_true = proba[torch.arange(len(yv), device=self.device_), yv_t]
                    rec["val_loss"] = float(-torch.log(p_true.clamp_min(1e-12)).mean())
                    acc, f1 = fast_scores(yv, proba.argmax(1).cpu().numpy(), k)
                    rec["val_macro_f1"], rec["val_acc"] = f1, acc
                    # better macro-F1, or the same macro-F1 with a lower validation loss
                    if f1 > best_f1 or (f1 == best_f1 and rec["val_loss"] < best_loss):
                        best_f1, best_loss, bad, self.best_epoch_ = f1, rec["val_loss"], 0, epoch
                        best_state = {kk: v.detach().clone() for kk, v in self.module_.state_dict().items()}
                    else:
                        bad += 1
                self.history_.append(rec)
                if has_val and bad >= int(p["patience"]):
                    break
            if has_val and best_state is not None:
                self.module_.load_state_dict(best_state)
            if not has_val:
                self.best_epoch_ = n_epochs
            self._after_fit(xv, yv)
        self._class_w = None
        return self

    def predict_proba(self, X: Features) -> np.ndarray:
        if self.regression_:
            raise TypeError(f"{self.name}: a regression head has no class probabilities; use predict()")
        return self._predict_np(X)

    def predict(self, X: Features) -> np.ndarray:
        """Regression: ``(n,)`` scores; classification: ``(n,)`` class ids (argmax of the probabilities)."""
        out = self._predict_np(X)
        return out if self.regression_ else out.argmax(axis=1)

    def _predict_np(self, X: Features) -> np.ndarray:
        if self.module_ is None:
            raise RuntimeError("fit or load the head first")
        check_features(X, self.modalities_)
        Xs = standardize(X, self.stats_, self.modalities_)
        with deterministic():
            proba = self._predict_tensors(self._to_tensors(Xs))
        return proba.cpu().numpy().astype(np.float64)

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        if self.module_ is None:
            raise RuntimeError("nothing to save: fit the head first")
        ckpt = {
            "format": FORMAT_VERSION,
            "kind": "neural",
            "head": self.name,
            "params": copy.deepcopy(self.params),
            "modalities": list(self.modalities_),
            "dims": list(self.dims_),
            "n_classes": int(self.n_classes_),
            "scaler": {m: {"mean": torch.from_numpy(mu.copy()), "std": torch.from_numpy(sd.copy())}
                       for m, (mu, sd) in self.stats_.items()},
            "state_dict": {k: v.detach().cpu() for k, v in self.module_.state_dict().items()},
            "best_epoch": self.best_epoch_,
            "history": self.history_,
            "extra": self._extra_state(),
        }
        buf = io.BytesIO()
        torch.save(ckpt, buf)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "NeuralHead":
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        if ckpt.get("kind") != "neural":
            raise ValueError(f"{path}: not a neural head checkpoint")
        klass = REGISTRY.get(ckpt["head"])
        if klass is None:
            raise KeyError(f"{path}: unknown head {ckpt['head']!r}")
        if not issubclass(klass, cls):
            raise TypeError(f"{path}: holds a {ckpt['head']!r} head, not {cls.__name__}")
        head = klass(**ckpt["params"])
        head.modalities_, head.dims_ = list(ckpt["modalities"]), list(ckpt["dims"])
        head.n_classes_ = int(ckpt["n_classes"])
        head.stats_ = {m: (s["mean"].numpy(), s["std"].numpy()) for m, s in ckpt["scaler"].items()}
        head.device_ = resolve_device(head.params["device"])
        with torch.random.fork_rng(devices=[]):  # the init is overwritten; leave the global RNG alone
            head.module_ = head.build_module(head.dims_, head.n_classes_)
        head.module_.load_state_dict(ckpt["state_dict"])
        head.module_.to(head.device_)
        head.best_epoch_, head.history_ = ckpt["best_epoch"], list(ckpt["history"])
        head._load_extra_state(ckpt["extra"])
        return head

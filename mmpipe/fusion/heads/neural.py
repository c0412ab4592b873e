"""Shared training for the neural fusion heads.

A subclass only declares its extra hyperparameters (``defaults``) and builds an ``nn.Module``
whose ``forward(xs)`` takes a list of ``(batch, d_m)`` tensors (one per modality, in fit order) and
returns ``(batch, n_classes)`` logits. Everything else lives here:

* per-modality standardisation fitted on the training split (stored with the model);
* optional SMOTE on the training features, ``class_weight: balanced``, ``loss: ce | focal`` with
  ``label_smoothing`` and ``focal_gamma``;
* ``task: regression`` (see ``common``): the module has ONE output, the score; ``loss: l1`` (default, as
  MMSA trains its MOSI/MOSEI regressors) ``| mse | huber``; early stopping on validation MAE (ties: the
  earlier epoch); ``predict`` returns scores and ``predict_proba`` is an error;
* AdamW, minibatches of ``batch_size`` rows (``_train_batches``; a sequence head feeds whole groups
  instead, see ``context_gru``), at most ``max_epochs``; with validation data, early stopping
  on validation macro-F1 (ties: lower validation loss) with ``patience`` and the best epoch's
  weights restored at the end (regression: validation MAE, see above)
  (``best_epoch_``, per-epoch ``history_``); without validation data exactly ``epochs`` epochs
  (default ``max_epochs``), which is how a model is refitted on train+val for the best epoch;
* ``modality_dropout`` (default 0): in training only, each sample's each (standardised) modality vector is
  replaced by zeros, i.e. the training mean, with that probability, drawn from the fit's seeded generator; a
  sample that would lose every modality keeps one at random (with one modality nothing is dropped);
* seeding (identical seed and data -> identical probabilities on the same machine and thread count);
* ``device: cpu | cuda | auto``; on CUDA, ``torch.autocast`` mixed precision (bf16 where supported,
  else fp16 with a GradScaler) unless ``amp: false``;
* ``save``/``load``: one ``torch.save`` file (state_dict, config, scaler statistics, classes).

torch is imported inside the functions that use it (and ``build_module`` imports its module from
``mmpipe.fusion.nets``), so that importing the head modules, as the registry does at planning time, stays light.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from mmpipe.core.atomic import atomic_path
from mmpipe.core.precision import autocast, grad_scaler
from mmpipe.fusion.heads.base import HEADS, Features, Head
from mmpipe.fusion.heads.common import (balanced_weights, check_features, fast_scores, prepare_train, regression_scores,
                                        standardize)

if TYPE_CHECKING:  # torch itself is imported where it is used, so that registering and checking heads never loads it
    import torch
    from torch import nn

# The neural training parameters, on top of ``Head.defaults``.
NEURAL_DEFAULTS: dict[str, Any] = {
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
    "device": "auto",  # cpu | cuda | auto (CUDA with mixed precision when a GPU is present)
    "amp": True,  # mixed precision on CUDA
    "eval_batch_size": 4096,
    "modality_dropout": 0.0,  # training only: per sample and modality, the chance its vector is zeroed
}

FORMAT_VERSION = 1
LOSSES = {"classification": ("ce", "focal"), "regression": ("l1", "mse", "huber")}  # the first is the default
DEVICES = ("cpu", "cuda", "auto")


def resolve_device(spec: str) -> torch.device:
    import torch

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
    import torch

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
    import torch.nn.functional as F

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


class NeuralHead(Head):
    """Base class of the torch heads (see the module docstring)."""

    defaults = {**Head.defaults, **NEURAL_DEFAULTS}
    search_space = {"lr": {"low": 1e-4, "high": 3e-3, "log": True}, "hidden": {"low": 64, "high": 512, "log": True},
                    "dropout": {"low": 0.0, "high": 0.6}, "weight_decay": {"low": 1e-4, "high": 0.1, "log": True}}

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = super().check_params(params)
        allowed = LOSSES[p["task"]]
        if p["loss"] is not None and p["loss"] not in allowed:
            raise cls.config_error(f"loss must be one of {', '.join(allowed)} for task {p['task']}, got {p['loss']!r}")
        if str(p["device"]).lower().split(":")[0] not in DEVICES:
            raise cls.config_error(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {p['device']!r}")
        for key in ("hidden", "batch_size", "max_epochs", "patience", "eval_batch_size", "epochs"):
            v = p[key]
            if not (v is None and key == "epochs") and (isinstance(v, bool) or not isinstance(v, Integral) or v < 1):
                raise cls.config_error(f"{key} must be a positive integer, got {v!r}")
        for key in ("dropout", "modality_dropout"):
            v = p[key]
            if isinstance(v, bool) or not isinstance(v, Real) or not 0 <= v < 1:
                raise cls.config_error(f"{key} must be a number in [0, 1), got {v!r}")
        return p

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.module_: nn.Module | None = None

    # ---- what subclasses define -------------------------------------------------------------
    def build_module(self, dims: list[int], n_classes: int) -> nn.Module:
        raise NotImplementedError

    def _train_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(out, y)

    def _proba(self, out: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.softmax(out.float(), dim=1)

    def _score(self, out: torch.Tensor) -> torch.Tensor:
        """Regression: the module's output ``(batch, 1)`` -> scores ``(batch,)``."""
        return out.float()[:, 0]

    def _after_fit(self, val: Any, y_val: np.ndarray | None) -> None:
        """Hook after the best weights are restored (late fusion fits its modality weights here)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        pass

    # ---- how the data reaches the module (a sequence head overrides these three) --------------
    def _inputs(self, X: dict[str, np.ndarray], groups: np.ndarray | None) -> Any:
        """Standardised features (and groups) -> what ``_train_batches`` and ``_outputs`` take: here one
        ``(n, d_m)`` tensor per modality, in fit order."""
        import torch

        return [torch.from_numpy(X[m]).to(self.device_) for m in self.modalities_]

    def _train_batches(self, xs: Any, y: torch.Tensor,
                       gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch in a seeded random order: ``(module output, targets)`` per minibatch of ``batch_size`` rows."""
        import torch

        n, bs = len(y), int(self.params["batch_size"])
        # one gather per epoch, then contiguous slices (views): cheaper than a gather per batch
        perm = torch.randperm(n, generator=gen).to(self.device_)
        xs, y = [x[perm] for x in xs], y[perm]
        keep = self._modality_keep((n,), len(xs), gen)
        if keep is not None:
            xs = [x * keep[:, j:j + 1].to(x.dtype) for j, x in enumerate(xs)]
        for s in range(0, n, bs):
            with self._autocast():
                out = self.module_([x[s:s + bs] for x in xs])
            yield out, y[s:s + bs]

    def _modality_keep(self, shape: tuple[int, ...], n_modalities: int,
                       gen: torch.Generator) -> torch.Tensor | None:
        """Modality dropout: a ``(*shape, n_modalities)`` 0/1 mask on the device (1: keep), or None when off.
        Each entry is 0 with probability ``modality_dropout``; where a sample would lose every modality, one,
        drawn uniformly, is kept. Drawn from ``gen`` (CPU), so a fit stays deterministic; with one modality, or
        ``modality_dropout: 0``, nothing is drawn."""
        import torch

        rate = float(self.params.get("modality_dropout") or 0.0)
        if rate <= 0 or n_modalities < 2:
            return None
        keep = torch.rand((*shape, n_modalities), generator=gen) >= rate
        rescue = torch.randint(n_modalities, shape, generator=gen)
        none = ~keep.any(dim=-1)
        keep[none] = torch.nn.functional.one_hot(rescue[none], n_modalities).bool()
        return keep.to(self.device_)

    def _outputs(self, xs: Any) -> torch.Tensor:
        """Eval-mode outputs per row, in row order: ``(n, K)`` probabilities or (regression) ``(n,)`` scores."""
        import torch

        with torch.no_grad():
            assert self.module_ is not None
            self.module_.eval()
            n, bs = xs[0].shape[0], int(self.params["eval_batch_size"])
            outs = []
            for s in range(0, n, bs):
                with self._autocast():
                    out = self.module_([x[s:s + bs] for x in xs])
                outs.append(self._finish(out))
            if not outs:
                return torch.zeros((0,) if self.regression else (0, self.n_classes_), device=self.device_)
            return torch.cat(outs)

    def refit_params(self) -> dict[str, Any]:
        return {"epochs": int(self.best_epoch_)} if self.best_epoch_ else {}

    def n_parameters(self) -> int | None:
        return None if self.module_ is None else int(sum(p.numel() for p in self.module_.parameters()))

    # ---- training -----------------------------------------------------------------------------
    @property
    def loss_name(self) -> str:
        return self.params["loss"] or LOSSES[self.task][0]

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        p, kind = self.params, self.loss_name
        logits = logits.float()
        if self.regression:
            pred = logits[:, 0]
            if kind == "mse":
                return F.mse_loss(pred, y)
            if kind == "huber":
                return F.smooth_l1_loss(pred, y)
            return F.l1_loss(pred, y)
        if kind == "focal":
            return focal_loss(logits, y, self._class_w, float(p["focal_gamma"]), float(p["label_smoothing"]))
        return F.cross_entropy(logits, y, weight=self._class_w, label_smoothing=float(p["label_smoothing"]))

    def _autocast(self):
        return autocast(self.device_) if self.params["amp"] else contextlib.nullcontext()

    def _finish(self, out: torch.Tensor) -> torch.Tensor:
        return (self._score(out) if self.regression else self._proba(out)).float()

    def _val_record(self, out: torch.Tensor, y_val: np.ndarray) -> dict[str, float]:
        """Validation scores of one epoch from ``_outputs``."""
        import torch

        if self.regression:
            sc = regression_scores(y_val, out.cpu().numpy())
            return {"val_loss": sc["mae"], "val_mae": sc["mae"], "val_corr": sc["corr"], "val_acc2": sc["acc2"]}
        p_true = out[torch.arange(len(y_val), device=out.device), torch.from_numpy(y_val).to(out.device)]
        acc, f1 = fast_scores(y_val, out.argmax(1).cpu().numpy(), self.n_classes_)
        return {"val_loss": float(-torch.log(p_true.clamp_min(1e-12)).mean()), "val_macro_f1": f1, "val_acc": acc}

    def _better(self, rec: dict[str, float], best: dict[str, float] | None) -> bool:
        """Early stopping: a lower validation MAE (regression), else a higher macro-F1 or the same macro-F1
        with a lower validation loss; ties keep the earlier epoch."""
        if best is None:
            return True
        if self.regression:
            return rec["val_mae"] < best["val_mae"]
        return (rec["val_macro_f1"], -rec["val_loss"]) > (best["val_macro_f1"], -best["val_loss"])

    def fit(self, X: Features, y: np.ndarray, X_val: Features | None = None, y_val: np.ndarray | None = None, *,
            groups: np.ndarray | None = None, groups_val: np.ndarray | None = None) -> "NeuralHead":
        import torch

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
            ytr, yv = prep["y"], prep["y_val"]
            self._class_w = (torch.from_numpy(balanced_weights(ytr, k)).to(self.device_)
                             if p["class_weight"] == "balanced" and not self.regression else None)
            train, yt = self._inputs(prep["X"], groups), torch.from_numpy(ytr).to(self.device_)
            val = self._inputs(prep["X_val"], groups_val) if has_val else None
            opt = torch.optim.AdamW(self.module_.parameters(), lr=float(p["lr"]),
                                    weight_decay=float(p["weight_decay"]))
            scaler = grad_scaler(self.device_, p["amp"])
            best, best_state, bad = None, None, 0
            self.history_, self.best_epoch_ = [], None
            for epoch in range(1, n_epochs + 1):
                self.module_.train()
                total = torch.zeros((), device=self.device_)
                for out, yb in self._train_batches(train, yt, gen):
                    loss = self._train_loss(out, yb)
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    total += loss.detach() * len(yb)
                rec = {"epoch": epoch, "train_loss": float(total) / max(len(ytr), 1), "lr": opt.param_groups[0]["lr"]}
                if has_val:
                    rec.update(self._val_record(self._outputs(val), yv))
                    if self._better(rec, best):
                        best, bad, self.best_epoch_ = rec, 0, epoch
                        best_state = {kk: v.detach().clone() for kk, v in self.module_.state_dict().items()}
                    else:
                        bad += 1
                self.history_.append(rec)
                if has_val and bad >= int(p["patience"]):
                    break
            if best_state is not None:
                self.module_.load_state_dict(best_state)
            if not has_val:
                self.best_epoch_ = n_epochs
            self._after_fit(val, yv)
        self._class_w = None
        return self

    # ---- prediction ---------------------------------------------------------------------------
    def predict_proba(self, X: Features, *, groups: np.ndarray | None = None) -> np.ndarray:
        if self.regression:
            raise TypeError(f"{self.name}: a regression head has no class probabilities; use predict()")
        return self._predict_np(X, groups)

    def predict(self, X: Features, *, groups: np.ndarray | None = None) -> np.ndarray:
        """Regression: ``(n,)`` scores; classification: ``(n,)`` class ids (argmax of the probabilities)."""
        out = self._predict_np(X, groups)
        return out if self.regression else out.argmax(axis=1)

    def _predict_np(self, X: Features, groups: np.ndarray | None) -> np.ndarray:
        if self.module_ is None:
            raise RuntimeError("fit or load the head first")
        check_features(X, self.modalities_)
        Xs = standardize(X, self.stats_, self.modalities_)
        with deterministic():
            out = self._outputs(self._inputs(Xs, groups))
        return out.cpu().numpy().astype(np.float64)

    # ---- persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        import torch

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
        import torch

        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        if ckpt.get("kind") != "neural":
            raise ValueError(f"{path}: not a neural head checkpoint")
        klass = HEADS.get(ckpt["head"])
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

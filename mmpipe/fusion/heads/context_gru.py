"""Contextual head: a bidirectional GRU over each group's ordered sequence of samples (bc-LSTM style).

After Poria et al. (ACL 2017, "Context-dependent sentiment analysis in user-generated videos"): the
utterances of a video are read in order, so each utterance is classified (or scored) with the other
utterances of its video as context. Per sample: each modality is projected (dropout, Linear, GELU,
dropout) and the projections are concatenated (any number of modalities); a bidirectional GRU runs over
the group's sequence; the output MLP sees ``[projection; GRU state]`` of the sample.

Only features cross samples, never labels, so the test split is predicted with its own videos as
context (transductively, within each test video). Groups and positions come from
``mmpipe.fusion.context.sequence_index`` (``uses_groups``): ``fit(..., groups=, groups_val=)`` and
``predict(X, groups=)``. Training, early stopping, regression and persistence are those of
``NeuralHead``, except that a minibatch is ``batch_size`` GROUPS (default 8), not rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mmpipe.fusion.heads.base import Features, register
from mmpipe.fusion.heads.common import (balanced_weights, check_features, fast_scores, prepare_train, regression_scores,
                                 standardize)
from mmpipe.fusion.heads.neural import MLP, NeuralHead, deterministic, resolve_device


class ContextGRUModule(nn.Module):
    def __init__(self, dims: list[int], proj_dim: int, hidden: int, n_out: int, dropout: float, in_dropout: float):
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Dropout(in_dropout), nn.Linear(d, proj_dim), nn.GELU(), nn.Dropout(dropout)) for d in dims)
        width = proj_dim * len(dims)
        self.gru = nn.GRU(width, hidden, batch_first=True, bidirectional=True)
        self.out = MLP(width + 2 * hidden, hidden, n_out, dropout)

    def forward(self, xs: list[torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        """xs: per modality ``(groups, max_len, d_m)`` (padded at the end); lengths ``(groups,)`` ->
        ``(groups, max_len, n_out)`` (padding positions are garbage)."""
        z = torch.cat([p(x) for p, x in zip(self.proj, xs)], dim=2)
        packed = nn.utils.rnn.pack_padded_sequence(z, lengths.cpu(), batch_first=True, enforce_sorted=False)
        c, _ = self.gru(packed)
        c, _ = nn.utils.rnn.pad_packed_sequence(c, batch_first=True, total_length=z.shape[1])
        return self.out(torch.cat([z, c], dim=2))


def group_layout(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``seq`` (n, 2) [group code, position] -> (``index`` (G, L) row ids padded with -1, ``lengths`` (G,))."""
    seq = np.asarray(seq, dtype=np.int64)
    if seq.ndim != 2 or seq.shape[1] != 2:
        raise ValueError(f"groups must be an (n, 2) array [group code, position], got shape {seq.shape}")
    if not len(seq):
        return np.zeros((0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(len(seq)), seq[:, 1], seq[:, 0]))
    codes, starts, lengths = np.unique(seq[order, 0], return_index=True, return_counts=True)
    index = np.full((len(codes), int(lengths.max())), -1, dtype=np.int64)
    for g, (s, n) in enumerate(zip(starts, lengths)):
        index[g, :n] = order[s:s + n]
    return index, lengths.astype(np.int64)


@register("context_gru")
class ContextGRU(NeuralHead):
    """Extra parameters: ``proj_dim`` (per-modality width), ``in_dropout``; ``hidden`` is the GRU width
    (per direction) and the output MLP's; ``batch_size`` counts groups."""

    uses_groups = True
    module_defaults = {"proj_dim": 64, "hidden": 64, "dropout": 0.3, "in_dropout": 0.2, "batch_size": 8,
                       "patience": 10}

    def build_module(self, dims, n_classes):
        p = self.params
        return ContextGRUModule(dims, int(p["proj_dim"]), int(p["hidden"]), n_classes, float(p["dropout"]),
                                float(p["in_dropout"]))

    # ---- helpers ------------------------------------------------------------------------------
    def _gather(self, xs: list[torch.Tensor], index: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        idx = torch.from_numpy(np.maximum(index, 0)).to(self.device_)
        mask = torch.from_numpy(index >= 0).to(self.device_)
        return [x[idx] for x in xs], mask

    @torch.no_grad()
    def _rows_out(self, xs: list[torch.Tensor], seq: np.ndarray) -> torch.Tensor:
        """Outputs per row, in row order: ``(n, K)`` probabilities or ``(n,)`` scores."""
        assert self.module_ is not None
        self.module_.eval()
        n = xs[0].shape[0]
        index, lengths = group_layout(seq)
        if len(seq) != n:
            raise ValueError(f"{len(seq)} group entries for {n} rows")
        shape = (n,) if self.regression_ else (n, self.n_classes_)
        out = torch.zeros(shape, device=self.device_)
        bs = max(1, int(self.params["eval_batch_size"]) // max(1, index.shape[1] if index.size else 1))
        for s in range(0, len(index), bs):
            ib = index[s:s + bs]
            xb, mask = self._gather(xs, ib)
            with self._autocast():
                o = self.module_(xb, torch.from_numpy(lengths[s:s + bs]))
            o = o[mask]
            rows = torch.from_numpy(ib[ib >= 0]).to(self.device_)
            out[rows] = (self._score(o) if self.regression_ else self._proba(o)).float()
        return out

    # ---- training -----------------------------------------------------------------------------
    def fit(self, X: Features, y: np.ndarray, X_val: Features | None = None, y_val: np.ndarray | None = None,
            groups: np.ndarray | None = None, groups_val: np.ndarray | None = None) -> "ContextGRU":
        p = self.params
        if groups is None:
            raise ValueError("context_gru needs groups= (and groups_val= with validation data): "
                             "see mmpipe.fusion.context.sequence_index")
        if X_val is not None and groups_val is None:
            raise ValueError("context_gru: validation data needs groups_val=")
        if p["smote"]:
            raise ValueError("context_gru: smote would invent samples outside any sequence; not supported")
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
        index, lengths = group_layout(groups)
        if (index >= 0).sum() != len(prep["y"]):
            raise ValueError(f"{len(groups)} group entries for {len(prep['y'])} training rows")

        with deterministic():
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            self.module_ = self.build_module(self.dims_, k).to(self.device_)
            ytr = prep["y"]
            self._class_w = (torch.from_numpy(balanced_weights(ytr, k)).to(self.device_)
                             if p["class_weight"] == "balanced" and not self.regression_ else None)
            xs = self._to_tensors(prep["X"])
            yt = torch.from_numpy(ytr).to(self.device_)
            xv = self._to_tensors(prep["X_val"]) if has_val else None
            yv = prep["y_val"]
            opt = torch.optim.AdamW(self.module_.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
            use_fp16 = (self.device_.type == "cuda" and p["amp"] and not torch.cuda.is_bf16_supported())
            scaler = torch.amp.GradScaler("cuda", enabled=use_fp16)
            G, bs = len(index), int(p["batch_size"])
            best_f1, best_loss, best_state, bad = -1.0, float("inf"), None, 0
            self.history_, self.best_epoch_ = [], None
            for epoch in range(1, n_epochs + 1):
                self.module_.train()
                perm = torch.randperm(G, generator=gen).numpy()
                total, count = 0.0, 0
                for s in range(0, G, bs):
                    ib = index[perm[s:s + bs]]
                    keep = ib.shape[1] - int((ib < 0).all(axis=0)[::-1].cumprod().sum())  # trim common padding
                    ib = ib[:, :max(keep, 1)]
                    xb, mask = self._gather(xs, ib)
                    yb = yt[torch.from_numpy(ib[ib >= 0]).to(self.device_)]
                    with self._autocast():
                        out = self.module_(xb, torch.from_numpy(lengths[perm[s:s + bs]]))
                    loss = self._train_loss(out[mask], yb)
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    total += float(loss.detach()) * len(yb)
                    count += len(yb)
                rec: dict[str, Any] = {"epoch": epoch, "train_loss": total / max(count, 1)}
                if has_val:
                    pv = self._rows_out(xv, groups_val)
                    if self.regression_:
                        sc = regression_scores(yv, pv.cpu().numpy())
                        rec["val_loss"] = rec["val_mae"] = sc["mae"]
                        rec["val_corr"], rec["val_acc2"] = sc["corr"], sc["acc2"]
                        improved = sc["mae"] < best_loss
                        if improved:
                            best_loss = sc["mae"]
                    else:
                        yv_t = torch.from_numpy(np.asarray(yv)).to(self.device_)
                        p_true = pv[torch.arange(len(yv), device=self.device_), yv_t]
                        rec["val_loss"] = float(-torch.log(p_true.clamp_min(1e-12)).mean())
                        acc, f1 = fast_scores(yv, pv.argmax(1).cpu().numpy(), k)
                        rec["val_macro_f1"], rec["val_acc"] = f1, acc
                        improved = f1 > best_f1 or (f1 == best_f1 and rec["val_loss"] < best_loss)
                        if improved:
                            best_f1, best_loss = f1, rec["val_loss"]
                    if improved:
                        bad, self.best_epoch_ = 0, epoch
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
        self._class_w = None
        return self

    # ---- prediction ---------------------------------------------------------------------------
    def _predict_np(self, X: Features, groups: np.ndarray | None = None) -> np.ndarray:
        if self.module_ is None:
            raise RuntimeError("fit or load the head first")
        if groups is None:
            raise ValueError("context_gru predicts whole groups: pass groups= (mmpipe.fusion.context.sequence_index)")
        check_features(X, self.modalities_)
        Xs = standardize(X, self.stats_, self.modalities_)
        with deterministic():
            out = self._rows_out(self._to_tensors(Xs), groups)
        return out.cpu().numpy().astype(np.float64)

    def predict_proba(self, X: Features, groups: np.ndarray | None = None) -> np.ndarray:
        if self.regression_:
            raise TypeError(f"{self.name}: a regression head has no class probabilities; use predict()")
        return self._predict_np(X, groups)

    def predict(self, X: Features, groups: np.ndarray | None = None) -> np.ndarray:
        out = self._predict_np(X, groups)
        return out if self.regression_ else out.argmax(axis=1)

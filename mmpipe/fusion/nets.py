"""The torch modules of the built-in fusion heads (MultiBench's fusion axis); the head classes in
mmpipe.fusion.heads import them when they build a model, so that registering and checking heads never imports torch.
"""

from __future__ import annotations

import math

# first: importing the heads package sets OMP_WAIT_POLICY, which counts only before torch loads (see its docstring)
import mmpipe.fusion.heads  # noqa: F401
import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """``in -> hidden -> GELU -> dropout -> out``."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConcatMLPModule(nn.Module):
    def __init__(self, dims: list[int], hidden: int, n_classes: int, dropout: float, in_dropout: float):
        super().__init__()
        # each modality has unit L2 norm after normalisation; rescale the concatenation so its
        # entries have RMS ~1 whatever the widths, without favouring the wider modality
        self.scale = math.sqrt(sum(dims) / len(dims))
        self.drop_in = nn.Dropout(in_dropout)
        self.mlp = MLP(sum(dims), hidden, n_classes, dropout)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        z = torch.cat([F.normalize(x, dim=1) for x in xs], dim=1) * self.scale
        return self.mlp(self.drop_in(z))


class ProjConcatModule(nn.Module):
    def __init__(self, dims: list[int], proj_dim: int, hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(d, proj_dim), nn.LayerNorm(proj_dim), nn.GELU(), nn.Dropout(dropout))
            for d in dims)
        self.mlp = MLP(proj_dim * len(dims), hidden, n_classes, dropout)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.mlp(torch.cat([p(x) for p, x in zip(self.proj, xs)], dim=1))


class CrossAttentionModule(nn.Module):
    def __init__(self, dims: list[int], d_model: int, n_heads: int, ff: int, layers: int, n_classes: int,
                 dropout: float):
        super().__init__()
        self.tokens = nn.ModuleList(nn.Sequential(nn.Linear(d, d_model), nn.LayerNorm(d_model)) for d in dims)
        self.mod_emb = nn.Parameter(torch.randn(len(dims), d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=ff, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, n_classes)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        t = torch.stack([tok(x) for tok, x in zip(self.tokens, xs)], dim=1) + self.mod_emb
        h = self.encoder(t).mean(dim=1)
        return self.out(self.drop(self.norm(h)))


class GMUModule(nn.Module):
    def __init__(self, dims: list[int], gmu_dim: int, hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.m, self.d = len(dims), gmu_dim
        self.proj = nn.ModuleList(nn.Linear(d, gmu_dim) for d in dims)
        self.gate = nn.Linear(sum(dims), self.m * gmu_dim)
        self.drop = nn.Dropout(dropout)
        self.mlp = MLP(gmu_dim, hidden, n_classes, dropout)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        h = torch.stack([torch.tanh(p(x)) for p, x in zip(self.proj, xs)], dim=1)  # (n, M, d)
        z = torch.softmax(self.gate(torch.cat(xs, dim=1)).view(-1, self.m, self.d), dim=1)
        return self.mlp(self.drop((z * h).sum(dim=1)))


class TFNModule(nn.Module):
    def __init__(self, dims: list[int], width: int, hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.proj = nn.ModuleList(nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Dropout(dropout)) for d in dims)
        self.mlp = MLP((width + 1) ** len(dims), hidden, n_classes, dropout)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        fused = None
        for p, x in zip(self.proj, xs):
            z = p(x)
            z = torch.cat([z, torch.ones_like(z[:, :1])], dim=1)
            fused = z if fused is None else torch.einsum("bi,bj->bij", fused, z).flatten(1)
        return self.mlp(fused)


class LMFModule(nn.Module):
    def __init__(self, dims: list[int], proj_dim: int, rank: int, fused_dim: int, hidden: int, n_classes: int,
                 dropout: float):
        super().__init__()
        self.proj = nn.ModuleList(nn.Sequential(nn.Linear(d, proj_dim), nn.ReLU(), nn.Dropout(dropout)) for d in dims)
        self.factors = nn.ParameterList()
        for _ in dims:
            w = torch.empty(rank, proj_dim + 1, fused_dim)
            nn.init.xavier_normal_(w)
            self.factors.append(nn.Parameter(w))
        self.rank_weights = nn.Parameter(torch.full((rank,), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(fused_dim))
        self.norm = nn.LayerNorm(fused_dim)
        self.mlp = MLP(fused_dim, hidden, n_classes, dropout)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        prod = None
        for p, w, x in zip(self.proj, self.factors, xs):
            z = p(x)
            z = torch.cat([z, torch.ones_like(z[:, :1])], dim=1)
            f = torch.einsum("bi,rio->rbo", z, w)  # (rank, n, fused)
            prod = f if prod is None else prod * f
        fused = torch.einsum("r,rbo->bo", self.rank_weights, prod) + self.bias
        return self.mlp(self.norm(fused))


class LateFusionModule(nn.Module):
    def __init__(self, dims: list[int], hidden: int, n_classes: int, dropout: float, branch: str):
        super().__init__()
        if branch == "mlp":
            self.branches = nn.ModuleList(nn.Sequential(nn.Dropout(dropout / 2), MLP(d, hidden, n_classes, dropout))
                                          for d in dims)
        elif branch == "linear":
            self.branches = nn.ModuleList(nn.Sequential(nn.Dropout(dropout / 2), nn.Linear(d, n_classes))
                                          for d in dims)
        else:
            raise ValueError(f"branch must be 'mlp' or 'linear', got {branch!r}")
        self.register_buffer("weights", torch.full((len(dims),), 1.0 / len(dims)))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([b(x) for b, x in zip(self.branches, xs)], dim=1)  # (n, M, K)


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

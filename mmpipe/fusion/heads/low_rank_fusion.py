"""Low-rank Multimodal Fusion (Liu et al., 2018).

Each modality is encoded to ``proj_dim`` units (Linear + ReLU + dropout) and a 1 is appended; a rank-r
modality-specific factor ``W_m: (r, proj_dim + 1, fused_dim)`` maps it to r vectors; the factors are
multiplied elementwise ACROSS modalities and summed over the rank with learned weights. That equals a
TFN whose fusion weight tensor has rank r, without ever forming the outer product, so any number of
modalities is cheap. The fused vector then goes through an MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import MLP, NeuralHead


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


@register("low_rank_fusion")
class LowRankFusion(NeuralHead):
    """Extra parameters: ``proj_dim``, ``rank``, ``fused_dim``."""

    defaults = {**NeuralHead.defaults, "proj_dim": 32, "rank": 4, "fused_dim": 64, "hidden": 64}

    def build_module(self, dims, n_classes):
        p = self.params
        return LMFModule(dims, int(p["proj_dim"]), int(p["rank"]), int(p["fused_dim"]), int(p["hidden"]), n_classes,
                         float(p["dropout"]))

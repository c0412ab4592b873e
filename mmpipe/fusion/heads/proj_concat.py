"""Per-modality projection to a common width (Linear + GELU + dropout), concatenate, MLP."""

from __future__ import annotations

import torch
from torch import nn

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import MLP, NeuralHead


class ProjConcatModule(nn.Module):
    def __init__(self, dims: list[int], proj_dim: int, hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(d, proj_dim), nn.LayerNorm(proj_dim), nn.GELU(), nn.Dropout(dropout))
            for d in dims)
        self.mlp = MLP(proj_dim * len(dims), hidden, n_classes, dropout)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.mlp(torch.cat([p(x) for p, x in zip(self.proj, xs)], dim=1))


@register("proj_concat")
class ProjConcat(NeuralHead):
    """Projection fusion. Extra parameter: ``proj_dim`` (common width per modality)."""

    defaults = {**NeuralHead.defaults, "proj_dim": 64}

    def build_module(self, dims, n_classes):
        p = self.params
        return ProjConcatModule(dims, int(p["proj_dim"]), int(p["hidden"]), n_classes, float(p["dropout"]))

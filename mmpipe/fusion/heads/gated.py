"""Gated multimodal unit (Arevalo et al., 2017) for M modalities.

``h_m = tanh(W_m x_m)``; gates ``z = softmax_m(W_z [x_1; ...; x_M])`` per hidden unit (the two-modality
GMU's sigmoid gate is the M = 2 case of this softmax); ``h = sum_m z_m * h_m``; then an MLP.
With one modality the gate is identically 1 and the head is a tanh-projection MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import MLP, NeuralHead


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


@register("gated")
class Gated(NeuralHead):
    """Extra parameter: ``gmu_dim`` (width of the gated representation)."""

    defaults = {**NeuralHead.defaults, "gmu_dim": 64}

    def build_module(self, dims, n_classes):
        p = self.params
        return GMUModule(dims, int(p["gmu_dim"]), int(p["hidden"]), n_classes, float(p["dropout"]))

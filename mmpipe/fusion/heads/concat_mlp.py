"""Early fusion: L2-normalise each (standardised) modality, concatenate, MLP."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import MLP, NeuralHead


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


@register("concat_mlp")
class ConcatMLP(NeuralHead):
    """Early fusion MLP. Extra parameter: ``in_dropout`` (dropout on the fused input)."""

    defaults = {**NeuralHead.defaults, "in_dropout": 0.0}

    def build_module(self, dims, n_classes):
        p = self.params
        return ConcatMLPModule(dims, int(p["hidden"]), n_classes, float(p["dropout"]), float(p["in_dropout"]))

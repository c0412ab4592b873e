"""Cross-modal attention: one token per modality, a small pre-norm Transformer encoder layer over the
modality tokens (with a learned modality embedding), mean pooling, linear classifier."""

from __future__ import annotations

import torch
from torch import nn

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import NeuralHead


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


@register("cross_attention")
class CrossAttention(NeuralHead):
    """Extra parameters: ``d_model`` (token width), ``n_heads``, ``ff`` (feed-forward width), ``layers``."""

    defaults = {**NeuralHead.defaults, "d_model": 64, "n_heads": 4, "ff": 128, "layers": 1}

    def build_module(self, dims, n_classes):
        p = self.params
        return CrossAttentionModule(dims, int(p["d_model"]), int(p["n_heads"]), int(p["ff"]), int(p["layers"]),
                                    n_classes, float(p["dropout"]))

"""Early fusion: L2-normalise each (standardised) modality, concatenate, MLP."""

from __future__ import annotations

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import NeuralHead


@register("concat_mlp")
class ConcatMLP(NeuralHead):
    """Early fusion MLP. Extra parameter: ``in_dropout`` (dropout on the fused input)."""

    defaults = {**NeuralHead.defaults, "in_dropout": 0.0}
    search_space = {**NeuralHead.search_space, "in_dropout": {"low": 0.0, "high": 0.6}}

    def build_module(self, dims, n_classes):
        from mmpipe.fusion.nets import ConcatMLPModule

        p = self.params
        return ConcatMLPModule(dims, int(p["hidden"]), n_classes, float(p["dropout"]), float(p["in_dropout"]))

"""Gated multimodal unit (Arevalo et al., 2017) for M modalities.

``h_m = tanh(W_m x_m)``; gates ``z = softmax_m(W_z [x_1; ...; x_M])`` per hidden unit (the two-modality
GMU's sigmoid gate is the M = 2 case of this softmax); ``h = sum_m z_m * h_m``; then an MLP.
With one modality the gate is identically 1 and the head is a tanh-projection MLP.
"""

from __future__ import annotations

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import NeuralHead


@register("gated")
class Gated(NeuralHead):
    """Extra parameter: ``gmu_dim`` (width of the gated representation)."""

    defaults = {**NeuralHead.defaults, "gmu_dim": 64}
    search_space = {**NeuralHead.search_space, "gmu_dim": {"low": 32, "high": 256, "log": True}}

    def build_module(self, dims, n_classes):
        from mmpipe.fusion.nets import GMUModule

        p = self.params
        return GMUModule(dims, int(p["gmu_dim"]), int(p["hidden"]), n_classes, float(p["dropout"]))

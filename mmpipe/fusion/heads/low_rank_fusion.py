"""Low-rank Multimodal Fusion (Liu et al., 2018).

Each modality is encoded to ``proj_dim`` units (Linear + ReLU + dropout) and a 1 is appended; a rank-r
modality-specific factor ``W_m: (r, proj_dim + 1, fused_dim)`` maps it to r vectors; the factors are
multiplied elementwise ACROSS modalities and summed over the rank with learned weights. That equals a
TFN whose fusion weight tensor has rank r, without ever forming the outer product, so any number of
modalities is cheap. The fused vector then goes through an MLP.
"""

from __future__ import annotations

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import NeuralHead


@register("low_rank_fusion")
class LowRankFusion(NeuralHead):
    """Extra parameters: ``proj_dim``, ``rank``, ``fused_dim``."""

    defaults = {**NeuralHead.defaults, "proj_dim": 32, "rank": 4, "fused_dim": 64, "hidden": 64}

    def build_module(self, dims, n_classes):
        from mmpipe.fusion.nets import LMFModule

        p = self.params
        return LMFModule(dims, int(p["proj_dim"]), int(p["rank"]), int(p["fused_dim"]), int(p["hidden"]), n_classes,
                         float(p["dropout"]))

"""Per-modality projection to a common width (Linear + GELU + dropout), concatenate, MLP."""

from __future__ import annotations

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import NeuralHead


@register("proj_concat")
class ProjConcat(NeuralHead):
    """Projection fusion. Extra parameter: ``proj_dim`` (common width per modality)."""

    defaults = {**NeuralHead.defaults, "proj_dim": 64}

    def build_module(self, dims, n_classes):
        from mmpipe.fusion.nets import ProjConcatModule

        p = self.params
        return ProjConcatModule(dims, int(p["proj_dim"]), int(p["hidden"]), n_classes, float(p["dropout"]))

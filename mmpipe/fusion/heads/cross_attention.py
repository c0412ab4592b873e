"""Cross-modal attention: one token per modality, a small pre-norm Transformer encoder layer over the
modality tokens (with a learned modality embedding), mean pooling, linear classifier."""

from __future__ import annotations

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import NeuralHead


@register("cross_attention")
class CrossAttention(NeuralHead):
    """Extra parameters: ``d_model`` (token width), ``n_heads``, ``ff`` (feed-forward width), ``layers``."""

    defaults = {**NeuralHead.defaults, "d_model": 64, "n_heads": 4, "ff": 128, "layers": 1}

    def build_module(self, dims, n_classes):
        from mmpipe.fusion.nets import CrossAttentionModule

        p = self.params
        return CrossAttentionModule(dims, int(p["d_model"]), int(p["n_heads"]), int(p["ff"]), int(p["layers"]),
                                    n_classes, float(p["dropout"]))

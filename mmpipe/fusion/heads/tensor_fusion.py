"""Tensor Fusion Network (Zadeh et al., 2017).

Each modality is projected to ``tfn_dim`` units (Linear + ReLU + dropout), a constant 1 is appended,
and the outer product over ALL modalities is flattened (it contains every unimodal, bimodal, ...,
M-modal interaction) and fed to an MLP. The fused width is ``(tfn_dim + 1) ** M``; when that exceeds
``max_fused`` the per-modality width is reduced so it fits (e.g. many modalities).
"""

from __future__ import annotations

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import NeuralHead


def fitted_width(width: int, n_modalities: int, max_fused: int) -> int:
    while width > 1 and (width + 1) ** n_modalities > max_fused:
        width -= 1
    return width


@register("tensor_fusion")
class TensorFusion(NeuralHead):
    """Extra parameters: ``tfn_dim`` (per-modality width before the outer product), ``max_fused``."""

    defaults = {**NeuralHead.defaults, "tfn_dim": 16, "max_fused": 8192, "hidden": 64}

    def build_module(self, dims, n_classes):
        from mmpipe.fusion.nets import TFNModule

        p = self.params
        width = fitted_width(int(p["tfn_dim"]), len(dims), int(p["max_fused"]))
        return TFNModule(dims, width, int(p["hidden"]), n_classes, float(p["dropout"]))

"""Fusion heads: importing this package registers every built-in head (see ``base.REGISTRY``)."""

from mmpipe.heads import (concat_mlp, context_gru, cross_attention, gated, late_fusion, logreg,  # noqa: F401
                          low_rank_fusion, proj_concat, svm, tensor_fusion)
from mmpipe.heads.base import REGISTRY, Features, Head, build_head, register

__all__ = ["REGISTRY", "Features", "Head", "build_head", "register", "load_head"]


def load_head(name: str, path):
    """Load a head saved by ``REGISTRY[name].save``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown head {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name].load(path)

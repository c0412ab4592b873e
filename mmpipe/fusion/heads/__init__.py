"""Fusion heads: importing this package registers every built-in head (see ``base.REGISTRY``).

Idle OpenMP threads are told to sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE`` unless the environment
sets it; the workflow sets it too). The heads run many tiny parallel regions, and with spinning threads a 2-thread
fit on a busy machine ran many times slower. It takes effect only if torch was not imported before this package.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mmpipe.fusion.heads import (concat_mlp, context_gru, cross_attention, gated, late_fusion, logreg,  # noqa: E402,F401
                          low_rank_fusion, proj_concat, svm, tensor_fusion)
from mmpipe.fusion.heads.base import REGISTRY, Features, Head, build_head, register  # noqa: E402

__all__ = ["REGISTRY", "Features", "Head", "build_head", "register", "load_head"]


def load_head(name: str, path):
    """Load a head saved by ``REGISTRY[name].save``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown head {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name].load(path)

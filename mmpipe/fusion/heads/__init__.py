"""Fusion heads. ``HEADS`` finds them: asking it for a name imports this package's modules (each registers
its heads with ``@register("name")``), then the ``mmpipe.heads`` entry points and the ``plugins:`` files.
Importing the package, or any of its modules, loads neither torch nor scikit-learn: the heads import them when
they fit, predict or load (the torch modules of the neural heads are in ``mmpipe.fusion.nets``).

Idle OpenMP threads are told to sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE`` unless the environment
sets it; the workflow sets it too). The heads run many tiny parallel regions, and with spinning threads a 2-thread
fit on a busy machine ran many times slower. It takes effect only if torch was not imported before this package.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mmpipe.fusion.heads.base import HEADS, Features, Head, build_head, load_head, register  # noqa: E402

__all__ = ["HEADS", "Features", "Head", "build_head", "load_head", "register"]

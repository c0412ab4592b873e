"""Late fusion: one classifier per modality, class probabilities averaged with per-modality weights.

The branches are trained jointly but independently (the loss is the mean of the per-modality losses,
so no gradient crosses modalities). Early stopping watches the equal-weight average. After training,
the weights are fitted on the VALIDATION split: an exhaustive grid over the probability simplex
(step 1/20 for two modalities, coarser for more, at most a few thousand points) minimising the
validation log-loss of the weighted average. Without validation data the weights are uniform unless
``fusion_weights`` gives them (a refit on train+val passes the weights found on validation).
With one modality the weight is 1 and the head is a plain per-modality classifier.

With ``task: regression`` each branch predicts a score, the head predicts the weighted average of the
branch scores, and the weights minimise the validation MAE over the same grid.
"""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Any

import numpy as np

from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import NeuralHead

BRANCHES = ("mlp", "linear")


def simplex_grid(m: int, max_points: int = 5000) -> np.ndarray:
    """All weight vectors on the m-simplex with step 1/s, for the finest s in (20, 10, 5, 4, 3, 2, 1)
    that gives at most ``max_points`` points (stars and bars)."""
    if m == 1:
        return np.ones((1, 1))
    for s in (20, 10, 5, 4, 3, 2, 1):
        if comb(s + m - 1, m - 1) <= max_points:
            break
    pts = []
    for bars in combinations(range(s + m - 1), m - 1):
        cuts = (-1, *bars, s + m - 1)
        pts.append([cuts[i + 1] - cuts[i] - 1 for i in range(m)])
    return np.asarray(pts, dtype=np.float64) / s


def fit_simplex_weights(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """probs: (n, M, K) per-modality probabilities on validation -> weights (M,) minimising log-loss.
    Ties go to the grid point closest to uniform."""
    m = probs.shape[1]
    grid = simplex_grid(m)
    p_true = probs[np.arange(len(y)), :, y]  # (n, M)
    mixed = np.clip(p_true @ grid.T, 1e-12, None)  # (n, G)
    ll = -np.log(mixed).mean(axis=0)
    dist = ((grid - 1.0 / m) ** 2).sum(1)
    order = np.lexsort((dist, np.round(ll, 12)))
    return grid[order[0]]


def fit_simplex_weights_regression(preds: np.ndarray, y: np.ndarray) -> np.ndarray:
    """preds: (n, M) per-modality scores on validation -> weights (M,) minimising the MAE of the weighted
    average. Ties go to the grid point closest to uniform."""
    m = preds.shape[1]
    grid = simplex_grid(m)
    mae = np.abs(preds @ grid.T - np.asarray(y, dtype=np.float64)[:, None]).mean(axis=0)
    dist = ((grid - 1.0 / m) ** 2).sum(1)
    order = np.lexsort((dist, np.round(mae, 12)))
    return grid[order[0]]


@register("late_fusion")
class LateFusion(NeuralHead):
    """Extra parameters: ``branch: mlp | linear`` (per-modality classifier), ``fusion_weights``
    (fixed weights, one per modality in fit order; default: fitted on validation)."""

    defaults = {**NeuralHead.defaults, "branch": "mlp", "fusion_weights": None, "hidden": 64}

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = super().check_params(params)
        if p["branch"] not in BRANCHES:
            raise cls.config_error(f"branch must be one of {', '.join(BRANCHES)}, got {p['branch']!r}")
        w = p["fusion_weights"]
        if w is not None and (not isinstance(w, (list, tuple)) or not all(isinstance(v, (int, float)) for v in w)
                              or min(w, default=-1) < 0 or sum(w) <= 0):
            raise cls.config_error(f"fusion_weights must be null or a list of non-negative numbers, got {w!r}")
        return p

    def build_module(self, dims, n_classes):
        import torch

        from mmpipe.fusion.nets import LateFusionModule

        p = self.params
        mod = LateFusionModule(dims, int(p["hidden"]), n_classes, float(p["dropout"]), str(p["branch"]))
        if p["fusion_weights"] is not None:
            w = torch.tensor([float(v) for v in p["fusion_weights"]])
            if len(w) != len(dims) or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"fusion_weights must be {len(dims)} non-negative numbers, got {p['fusion_weights']}")
            mod.weights.copy_(w / w.sum())
        return mod

    def _train_loss(self, out, y):
        import torch

        return torch.stack([self._loss(out[:, i], y) for i in range(out.shape[1])]).mean()

    def _proba(self, out):
        import torch

        w = self.module_.weights.to(out.device)
        return torch.einsum("m,nmk->nk", w, torch.softmax(out.float(), dim=2))

    def _score(self, out):
        import torch

        w = self.module_.weights.to(out.device)
        return torch.einsum("m,nm->n", w, out.float()[:, :, 0])

    def _after_fit(self, xv, y_val):
        import torch

        if xv is None or self.params["fusion_weights"] is not None:
            return
        with torch.no_grad():
            self.module_.eval()
            with self._autocast():
                out = self.module_(xv)
            if self.regression:
                preds = out.float()[:, :, 0].cpu().numpy().astype(np.float64)
                w = fit_simplex_weights_regression(preds, np.asarray(y_val))
            else:
                probs = torch.softmax(out.float(), dim=2).cpu().numpy().astype(np.float64)
                w = fit_simplex_weights(probs, np.asarray(y_val))
            self.module_.weights.copy_(torch.from_numpy(w).float())

    @property
    def weights_(self) -> list[float]:
        return [float(v) for v in self.module_.weights.cpu()]

    def refit_params(self) -> dict[str, Any]:
        return {**super().refit_params(), "fusion_weights": self.weights_}

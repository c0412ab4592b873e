"""Contextual head: a bidirectional GRU over each group's ordered sequence of samples (bc-LSTM style).

After Poria et al. (ACL 2017, "Context-dependent sentiment analysis in user-generated videos"): the
utterances of a video are read in order, so each utterance is classified (or scored) with the other
utterances of its video as context. Per sample: each modality is projected (dropout, Linear, GELU,
dropout) and the projections are concatenated (any number of modalities); a bidirectional GRU runs over
the group's sequence; the output MLP sees ``[projection; GRU state]`` of the sample.

Only features cross samples, never labels, so the test split is predicted with its own videos as
context (transductively, within each test video). Groups and positions come from
``mmpipe.fusion.context.sequence_index`` (``uses_groups``): ``fit(..., groups=, groups_val=)`` and
``predict(X, groups=)``. Training, early stopping, regression and persistence are those of
``NeuralHead``; only the batching differs: a minibatch is ``batch_size`` GROUPS (default 8), not rows.
``modality_dropout`` drops modalities per sample (each utterance of a group on its own), as ``NeuralHead`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from mmpipe.fusion.context import group_layout
from mmpipe.fusion.heads.base import register
from mmpipe.fusion.heads.neural import NeuralHead

if TYPE_CHECKING:
    import torch


@register("context_gru")
class ContextGRU(NeuralHead):
    """Extra parameters: ``proj_dim`` (per-modality width), ``in_dropout``; ``hidden`` is the GRU width
    (per direction) and the output MLP's; ``batch_size`` counts groups."""

    uses_groups = True
    defaults = {**NeuralHead.defaults, "proj_dim": 64, "hidden": 64, "dropout": 0.3, "in_dropout": 0.2,
                "batch_size": 8, "patience": 10}

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = super().check_params(params)
        if p["smote"]:
            raise cls.config_error("smote would invent samples outside any sequence; not supported")
        return p

    def build_module(self, dims, n_classes):
        from mmpipe.fusion.nets import ContextGRUModule

        p = self.params
        return ContextGRUModule(dims, int(p["proj_dim"]), int(p["hidden"]), n_classes, float(p["dropout"]),
                                float(p["in_dropout"]))

    # ---- batching by groups -------------------------------------------------------------------
    def _inputs(self, X: dict[str, np.ndarray], groups: np.ndarray | None) -> tuple:
        """(per-modality row tensors, ``index`` (G, L) row ids padded with -1, ``lengths`` (G,))."""
        if groups is None:
            raise ValueError(f"{self.name} reads each group's sequence: pass groups= (and groups_val= with "
                             "validation data), see mmpipe.fusion.context.sequence_index")
        xs = super()._inputs(X, None)
        if len(groups) != xs[0].shape[0]:
            raise ValueError(f"{len(groups)} group entries for {xs[0].shape[0]} rows")
        return (xs, *group_layout(groups))

    def _gather(self, xs: list[torch.Tensor], index: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        import torch

        idx = torch.from_numpy(np.maximum(index, 0)).to(self.device_)
        mask = torch.from_numpy(index >= 0).to(self.device_)
        return [x[idx] for x in xs], mask

    def _train_batches(self, inputs: tuple, y: torch.Tensor,
                       gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Minibatches of ``batch_size`` whole groups in a seeded random order: (outputs of their rows, targets)."""
        import torch

        xs, index, lengths = inputs
        G, bs = len(index), int(self.params["batch_size"])
        perm = torch.randperm(G, generator=gen).numpy()
        for s in range(0, G, bs):
            ib = index[perm[s:s + bs]]
            keep = ib.shape[1] - int((ib < 0).all(axis=0)[::-1].cumprod().sum())  # trim common padding
            ib = ib[:, :max(keep, 1)]
            xb, mask = self._gather(xs, ib)
            keep = self._modality_keep(tuple(ib.shape), len(xb), gen)  # modality dropout, per sample
            if keep is not None:
                xb = [x * keep[..., j:j + 1].to(x.dtype) for j, x in enumerate(xb)]
            with self._autocast():
                out = self.module_(xb, torch.from_numpy(lengths[perm[s:s + bs]]))
            yield out[mask], y[torch.from_numpy(ib[ib >= 0]).to(self.device_)]

    def _outputs(self, inputs: tuple) -> torch.Tensor:
        import torch

        with torch.no_grad():
            assert self.module_ is not None
            self.module_.eval()
            xs, index, lengths = inputs
            n = xs[0].shape[0]
            out = torch.zeros((n,) if self.regression else (n, self.n_classes_), device=self.device_)
            bs = max(1, int(self.params["eval_batch_size"]) // max(1, index.shape[1] if index.size else 1))
            for s in range(0, len(index), bs):
                ib = index[s:s + bs]
                xb, mask = self._gather(xs, ib)
                with self._autocast():
                    o = self.module_(xb, torch.from_numpy(lengths[s:s + bs]))
                out[torch.from_numpy(ib[ib >= 0]).to(self.device_)] = self._finish(o[mask])
            return out

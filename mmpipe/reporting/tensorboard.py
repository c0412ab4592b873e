"""TensorBoard event files of one fit: its per-epoch history as scalars, and one hparams entry.

``tensorboard --logdir results/<ds>/tensorboard`` then shows every neural fit of every ablation: one run per
final model (``<ablation>/seed<k>``) and per cross-validation fit (``<ablation>/repeat<r>_fold<k>``). The events
are written from the fit's ``history_`` once it is done, so the training loop stays free of logging.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

# history keys -> TensorBoard tags; anything else numeric goes under "other/"
TAGS = {"train_loss": "loss/train", "val_loss": "loss/early_stopping", "lr": "learning_rate"}


def _tag(key: str) -> str:
    if key in TAGS:
        return TAGS[key]
    if key.startswith("val_"):
        return f"early_stopping/{key[4:]}"
    return f"other/{key}"


def _hparam(v: Any) -> int | float | str | bool:
    return v if isinstance(v, (int, float, str, bool)) else json.dumps(v, sort_keys=True)


def write_fit_events(log_dir: str | Path, history: list[dict[str, Any]], hparams: dict[str, Any],
                     metrics: dict[str, float]) -> bool:
    """Write ``history`` (records with an ``epoch``) to ``log_dir``; False (nothing written) for a fit without
    epochs (the C search of the linear baselines). ``metrics``: the fit's final scores for the hparams entry."""
    epochs = [r for r in history or [] if isinstance(r.get("epoch"), int)]
    if not epochs:
        return False
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    shutil.rmtree(log_dir, ignore_errors=True)  # a rerun replaces the run instead of appending to it
    with SummaryWriter(str(log_dir)) as w:
        for rec in epochs:
            for key, v in rec.items():
                if key != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    w.add_scalar(_tag(key), float(v), rec["epoch"])
        w.add_hparams({k: _hparam(v) for k, v in hparams.items()},
                      {f"hparam/{k}": float(v) for k, v in metrics.items()}, run_name=".")
    return True

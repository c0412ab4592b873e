"""The ablation grid: modality subsets x heads, each with its own name and settings."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from mmpipe.core.errors import ConfigError


def ablation_name(modalities: list[str], head: str) -> str:
    return f"{'+'.join(modalities)}__{head}"


def ablation_grid(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every ablation the config asks for: name -> {head, variant, modalities, params, seeds}.

    ``params`` merges the shared ``training`` settings that the head takes (its ``defaults``; ``context`` is
    taken by every head) with the head's own entry, which wins; ``seeds`` stays apart so one job trains every
    seed.
    """
    from mmpipe.fusion.heads import HEADS

    encoders = list(config["encoders"])
    heads = config.get("heads") or {}
    training = dict(config.get("training") or {})
    seeds = training.pop("seeds", [0, 1, 2])
    wanted = config.get("ablations") or {}
    subsets = wanted.get("modalities") or [list(c) for r in range(1, len(encoders) + 1)
                                           for c in combinations(encoders, r)]
    variants = wanted.get("heads") or list(heads)
    for subset in subsets:
        unknown = [m for m in subset if m not in encoders]
        if unknown:
            raise ConfigError(f"ablations.modalities: {unknown} not among the encoders ({', '.join(encoders)})")
    grid: dict[str, dict[str, Any]] = {}
    for variant in variants:
        if variant not in heads:
            raise ConfigError(f"ablations.heads: {variant!r} is not configured under heads: ({', '.join(heads)})")
        params = dict(heads[variant] or {})
        head = params.pop("head", variant)
        takes = set(HEADS.get(head).defaults) | {"context"} if head in HEADS else set(training)
        shared = {k: v for k, v in training.items() if k in takes}
        for subset in subsets:
            grid[ablation_name(list(subset), variant)] = {
                "head": head, "variant": variant, "modalities": list(subset),
                "params": {**shared, **params}, "seeds": list(seeds)}
    return grid

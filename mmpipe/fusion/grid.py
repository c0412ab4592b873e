"""The ablation grid: modality subsets x heads, each with its own name and settings."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from mmpipe.core.errors import ConfigError


def ablation_name(modalities: list[str], head: str) -> str:
    return f"{'+'.join(modalities)}__{head}"


def ablation_grid(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every ablation the config asks for: name -> {head, variant, modalities, params, seeds, tuned}.

    ``params`` merges the shared ``training`` settings that the head takes (its ``defaults``; ``context`` is
    taken by every head) with the head's own entry, which wins; ``seeds`` stays apart so one job trains every
    seed. ``tuned``: the ablation merges its head's tuned parameters (``results/<ds>/tuning/<variant>/best.json``)
    over ``params``.
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
    stacks = []
    for variant in variants:
        if variant not in heads:
            raise ConfigError(f"ablations.heads: {variant!r} is not configured under heads: ({', '.join(heads)})")
        params = dict(heads[variant] or {})
        head = params.pop("head", variant)
        tuned = bool(params.pop("tuned", False))
        if head == "stack":  # after the other heads: its members are their ablations
            stacks.append((variant, params))
            continue
        takes = set(HEADS.get(head).defaults) | {"context"} if head in HEADS else set(training)
        shared = {k: v for k, v in training.items() if k in takes}
        for subset in subsets:
            grid[ablation_name(list(subset), variant)] = {
                "head": head, "variant": variant, "modalities": list(subset),
                "params": {**shared, **params}, "seeds": list(seeds), "tuned": tuned}
    for variant, params in stacks:
        grid.update(_stack_ablation(variant, params, grid, training, seeds))
    return grid


def _stack_ablation(variant: str, params: dict[str, Any], grid: dict[str, dict[str, Any]],
                    training: dict[str, Any], seeds: list[int]) -> dict[str, dict[str, Any]]:
    """A ``stack`` entry (``members``: ablation names) as one ablation on the union of its members' modalities."""
    from mmpipe.fusion.heads import HEADS

    names = params.get("members")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"heads.{variant}: a stack lists its members as ablation names, e.g. "
                          "members: [text+image__svm, text__concat_mlp]")
    unknown = [n for n in names if n not in grid]
    if unknown:
        raise ConfigError(f"heads.{variant}: members {unknown} are not ablations of this config "
                          f"(ablations: {', '.join(sorted(grid))})")
    members = [{"name": n, "head": grid[n]["head"], "modalities": grid[n]["modalities"],
                "params": {k: v for k, v in grid[n]["params"].items() if k != "context"}} for n in names]
    modalities = list(dict.fromkeys(m for n in names for m in grid[n]["modalities"]))
    takes = set(HEADS.get("stack").defaults)
    shared = {k: v for k, v in training.items() if k in takes}
    return {ablation_name(modalities, variant): {"head": "stack", "variant": variant, "modalities": modalities,
                                                 "params": {**shared, **params, "members": members},
                                                 "seeds": list(seeds)}}

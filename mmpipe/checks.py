"""Everything about a config that can be checked before a job starts (``snakemake -n``, ``mmpipe check``).

The schema takes its allowed layout, backend and head names from the registries; then each encoder entry is
checked by its backend (keys, model directories), each head entry by its head (parameter names and values), and
the ablation grid and ``predict.select`` against the encoders and heads. Nothing is loaded or trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mmpipe.core.config import load_schema, validate
from mmpipe.core.errors import ConfigError
from mmpipe.core.registry import load_plugins
from mmpipe.ingest.dialogue import context_turns


def schema_with_registries() -> dict[str, Any]:
    """The config schema with the registered layout, encoder backend and head names as its enums."""
    from mmpipe.encoders import ENCODERS
    from mmpipe.fusion.heads import HEADS
    from mmpipe.ingest.layouts import LAYOUTS

    schema = load_schema()
    props = schema["properties"]
    props["layout"]["enum"] = LAYOUTS.names()
    props["encoders"]["additionalProperties"]["properties"]["backend"]["enum"] = ENCODERS.names()
    props["heads"]["additionalProperties"]["properties"]["head"]["enum"] = HEADS.names()
    return schema


def check_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate ``config`` in place (defaults filled in) and return it; a ``ConfigError`` lists every problem,
    one line each, naming its key."""
    from mmpipe.encoders import ENCODERS
    from mmpipe.fusion.grid import ablation_grid
    from mmpipe.fusion.heads import HEADS
    from mmpipe.ingest.layouts import LAYOUTS

    plugins = config.get("plugins") or []
    load_plugins([plugins] if isinstance(plugins, str) else plugins)
    validate(config, schema_with_registries(), source)
    problems: list[str] = []

    def collect(where: str, check, *args) -> None:
        try:
            check(*args)
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")

    from mmpipe.encoders.text_onnx import check_runtime

    for name, spec in config["encoders"].items():
        collect(f"encoders.{name}", ENCODERS.get(spec["backend"]).check_spec, spec)
        collect(f"encoders.{name}", check_runtime, spec)
        if spec.get("adapt") is not None:
            from mmpipe.encoders.adapt import settings as adapt_settings

            try:
                adapt_settings(spec, name)
            except ConfigError as exc:
                problems.append(str(exc))
        if spec.get("context") is True and not any(context_turns(config)):
            problems.append(f"encoders.{name}: context: true needs text.context_turns (how many earlier turns of a "
                            "sample's group to give it) or text.context_turns_after, e.g. text: {context_turns: 2}")
    regression = (config.get("labels") or {}).get("scheme") == "regression"
    metric = (config.get("selection") or {}).get("metric")
    if metric is not None and (metric == "mae") != regression:
        problems.append(f"selection.metric: {metric!r} does not apply to "
                        f"{'regression' if regression else 'classification'} (use "
                        f"{'mae' if regression else 'accuracy, macro_f1 or weighted_f1'})")
    layout = LAYOUTS.get(config["layout"])
    unknown = sorted(set(config.get("layout_options") or {}) - set(layout.options))
    if unknown:
        problems.append(f"layout_options: unknown key(s) {', '.join(map(repr, unknown))} for layout "
                        f"{config['layout']!r} (allowed: {', '.join(sorted(layout.options)) or 'none'})")
    try:
        grid = ablation_grid(config)
    except ConfigError as exc:
        problems.append(str(exc))
        grid = {}
    for variant, entry in (config.get("heads") or {}).items():
        head = (entry or {}).get("head", variant)
        if head not in HEADS:
            problems.append(f"heads.{variant}: unknown head {head!r} (known: {', '.join(HEADS.names())}); "
                            f"a variant names its head with `head:`")
            continue
        if head == "stack":  # its members are ablation names: checked below, resolved by the grid
            for spec in grid.values():
                if spec["variant"] == variant:
                    collect(f"heads.{variant}", HEADS.get(head).check_params, spec["params"])
            continue
        takes = set(HEADS.get(head).defaults) | {"context"}
        training = {k: v for k, v in (config.get("training") or {}).items() if k in takes}
        params = {**training, **{k: v for k, v in (entry or {}).items() if k not in ("head", "tuned")}}
        collect(f"heads.{variant}", HEADS.get(head).check_params, {k: v for k, v in params.items() if k != "context"})
    taken = {"seeds", "context"}.union(*(cls.defaults for _, cls in HEADS.items()))
    for key in sorted(set(config.get("training") or {}) - taken):  # each key goes to the heads that take it
        problems.append(f"training.{key}: no head takes it (known: {', '.join(sorted(taken))})")
    if grid and not problems:  # the heads themselves are fine: check what `tune` would search
        from mmpipe.fusion.tune import tuning_specs

        try:
            tuning_specs(config, grid)
        except ConfigError as exc:
            problems.append(str(exc))
    select = (config.get("predict") or {}).get("select")
    if select is not None and grid and select not in grid:
        problems.append(f"predict.select: {select!r} is not an ablation of this config "
                        f"(ablations: {', '.join(sorted(grid))})")
    among = (config.get("predict") or {}).get("select_among")
    if among and grid:
        sets = {frozenset(spec["modalities"]) for spec in grid.values()}
        for mods in among:
            if frozenset(mods) not in sets:
                problems.append(f"predict.select_among: {'+'.join(mods)} is not the modality set of any ablation "
                                f"(ablations use {', '.join(sorted('+'.join(sorted(m)) for m in sets))})")
    if problems:
        raise ConfigError(f"invalid {source}: " + "\n".join(dict.fromkeys(problems)))
    return config


def check_file(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config (plus ``overrides``, merged key by key) and run every planning-time check."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(config).__name__}")
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return check_config(config, source=str(path))

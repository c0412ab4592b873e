"""Load and validate the workflow config against its JSON schema, with messages that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mmpipe.core.errors import ConfigError

SCHEMA = Path(__file__).resolve().parent / "config.schema.yaml"


def _with_defaults(validator_cls):
    """A validator that also fills in schema defaults (as snakemake.utils.validate does)."""
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = _copy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


def _copy(value: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(value))


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


_YAML_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None), "array": list,
               "object": dict}


def coerce_strings(instance: Any, schema: dict[str, Any]) -> Any:
    """Turn the strings that ``snakemake --config`` gives for every scalar (``split={"val_fraction": 0.2}``
    arrives as ``'0.2'``) into the YAML value the schema asks for. Where the schema names no type (head
    parameters), a string that reads as a number, boolean, null or list becomes that value."""
    if isinstance(instance, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, value in instance.items():
            sub = props.get(key, extra if isinstance(extra, dict) else {})
            instance[key] = coerce_strings(value, sub)
        return instance
    if isinstance(instance, list):
        items = schema.get("items", {})
        return [coerce_strings(v, items if isinstance(items, dict) else {}) for v in instance]
    if not isinstance(instance, str):
        return instance
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if "string" in types or (not types and ("enum" in schema or "pattern" in schema)):
        return instance
    try:
        value = yaml.safe_load(instance)
    except yaml.YAMLError:
        return instance
    if types:
        wanted = tuple(t for name in types for t in
                       (_YAML_TYPES[name] if isinstance(_YAML_TYPES.get(name), tuple) else (_YAML_TYPES.get(name),))
                       if t is not None)
        ok = isinstance(value, wanted) and not (isinstance(value, bool) and bool not in wanted)
        return coerce_strings(value, schema) if ok else instance
    if isinstance(value, (int, float, bool, list)) or value is None:
        return coerce_strings(value, {})
    return instance


def load_schema(path: str | Path = SCHEMA) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def validate(config: dict[str, Any], schema: str | Path | dict[str, Any] = SCHEMA,
             source: str = "config") -> dict[str, Any]:
    """Validate ``config`` in place (coercing command-line strings, filling defaults); raise ConfigError
    with one line per problem, each naming its key."""
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    coerce_strings(config, schema)
    cls = _with_defaults(jsonschema.validators.validator_for(schema))
    errors = sorted(cls(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            if e.validator == "additionalProperties":
                unknown = sorted(set(e.instance) - set(e.schema.get("properties", {})))
                lines.append(f"{_where(e)}: unknown key(s) {', '.join(map(repr, unknown))}"
                             f" (allowed: {', '.join(sorted(e.schema.get('properties', {})))})")
            elif e.validator == "enum":
                lines.append(f"{_where(e)}: {e.instance!r} is not one of {', '.join(map(str, e.validator_value))}")
            else:
                lines.append(f"{_where(e)}: {e.message}")
        raise ConfigError(f"invalid {source}: " + "\n".join(dict.fromkeys(lines)))
    return config


def load(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it against the schema (see ``mmpipe.checks`` for every check)."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    return validate(config, source=str(path))

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


def validate(config: dict[str, Any], schema_path: str | Path = SCHEMA, source: str = "config") -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults); raise ConfigError listing every problem."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    cls = _with_defaults(jsonschema.validators.validator_for(schema))
    # Defaults first (a pass that may fill nested defaults), then collect every error.
    errors = sorted(cls(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            if e.validator == "additionalProperties":
                unknown = sorted(set(e.instance) - set(e.schema.get("properties", {})))
                lines.append(f"  {_where(e)}: unknown key(s) {', '.join(map(repr, unknown))}"
                             f" (allowed: {', '.join(sorted(e.schema.get('properties', {})))})")
            else:
                lines.append(f"  {_where(e)}: {e.message}")
        raise ConfigError(f"invalid {source}:\n" + "\n".join(lines))
    return config


def load(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    return validate(config, source=str(path))

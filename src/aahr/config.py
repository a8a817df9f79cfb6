"""Load and validate params.yaml (the one place for every number) against its JSON schema."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from aahr.errors import AahrError

SCHEMA_FILE = "params.schema.yaml"


class ConfigError(AahrError):
    """params.yaml has an unknown key, a missing key or a value of the wrong type or range."""


def load_schema() -> dict:
    text = resources.files("aahr").joinpath("schemas", SCHEMA_FILE).read_text()
    return yaml.safe_load(text)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        where = "" if key == "(top level)" else f"{key}: "
        return f"{where}unknown key {', '.join(map(repr, extra))} (known keys: {', '.join(known)})"
    if error.validator == "required":
        return f"{key}: {error.message}"
    return f"{key}: {error.message}"


def validate_params(params: Any, source: str = "params.yaml") -> dict:
    """Check ``params`` against the schema; raise ConfigError naming every bad key in ``source``."""
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(params).__name__}")
    flag = params.get("download")
    if isinstance(flag, str) and flag.lower() in ("true", "false"):
        params["download"] = flag.lower() == "true"   # `--config download=true` reaches Snakemake as a string
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise ConfigError(f"{source}: invalid configuration:\n{lines}")
    synth = params["synth"]
    if synth["objects_min"] > synth["objects_max"]:
        raise ConfigError(
            f"{source}: synth.objects_min ({synth['objects_min']}) is larger than "
            f"synth.objects_max ({synth['objects_max']})"
        )
    if sum(synth["detail"].values()) <= 0:
        raise ConfigError(f"{source}: synth.detail: the caption weights must not all be zero")
    h = params["health"]
    if h["gate_min"] > h["gate_max"]:
        raise ConfigError(f"{source}: health.gate_min ({h['gate_min']}) is larger than health.gate_max "
                          f"({h['gate_max']})")
    for name, variant in params["variants"].items():
        for dotted in variant.get("set", {}):
            if dotted.split(".")[0] in ("variants", "sensitivity", "seeds", "data_root", "results_root"):
                raise ConfigError(f"{source}: variants.{name}.set: {dotted!r}: a variant may set the "
                                  "model's, losses' and training settings, not this")
            lookup(params, dotted, f"{source}: variants.{name}.set")
    for name, row in params["sensitivity"].items():
        if name in params["variants"]:
            raise ConfigError(f"{source}: sensitivity.{name}: the name is already a variant")
        if row["base"] not in params["variants"]:
            raise ConfigError(f"{source}: sensitivity.{name}.base: unknown variant {row['base']!r} "
                              f"(variants: {', '.join(params['variants'])})")
        for dotted in row["set"]:
            lookup(params, dotted, f"{source}: sensitivity.{name}.set")
    return params


def lookup(params: dict, dotted: str, where: str) -> tuple[dict, str]:
    """(the mapping holding the last key of ``dotted``, that key); ConfigError if a key is unknown."""
    node, keys = params, dotted.split(".")
    for i, k in enumerate(keys):
        if not isinstance(node, dict) or k not in node:
            raise ConfigError(f"{where}: {dotted!r}: no such setting ({'.'.join(keys[:i + 1])} is unknown)")
        if i < len(keys) - 1:
            node = node[k]
    return node, keys[-1]


def resolve_variant(params: dict, name: str) -> dict:
    """The params a run of ``name`` trains with (a copy): a variant with its own ``set`` applied (the
    baseline's loss, say), or a sensitivity row (Table 5): its base variant's switches and ``set``
    under its own name, then its own ``set``. The run's entry in ``variants`` keeps the switches only."""
    rows = params.get("sensitivity", {})
    if name in params["variants"]:
        entry, sets = params["variants"][name], [params["variants"][name].get("set", {})]
    elif name in rows:
        entry = params["variants"][rows[name]["base"]]
        sets = [entry.get("set", {}), rows[name]["set"]]
    else:
        known = list(params["variants"]) + list(rows)
        raise ConfigError(f"unknown variant {name!r} (params.yaml variants and sensitivity rows: {', '.join(known)})")
    out = copy.deepcopy(params)
    out["variants"][name] = {k: v for k, v in entry.items() if k != "set"}
    for overrides in sets:
        for dotted, value in overrides.items():
            node, last = lookup(out, dotted, f"{name}.set")
            node[last] = value
    return out


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read and validate a params file; errors name the file and the offending key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return validate_params(params, source=str(path))

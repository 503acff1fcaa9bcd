"""The workflow's configuration checked against its JSON Schema (workflow/schemas/config.schema.yaml), typed the
way Snakemake users type it, and its errors said in one line.

``snakemake --config seeds=[16]`` hands over ``["16"]``, ``--config crf='{bilateral_sxy: 40}'`` hands over
``{"bilateral_sxy": "40"}`` and ``protect_models=true`` the string ``"true"``. :func:`coerce` walks the config
beside the schema and reads a string as a YAML scalar or flow collection wherever the schema does not allow a
string there (an integer, number, boolean, array or object): a string the schema allows (an enum such as
``channels_last: "on"``, a path) is never touched. :func:`first_error` then gives the first violation as one line
naming the key's path and what is allowed (the keys of that section, or the type), instead of the schema dump.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _resolve(schema: dict, root: dict) -> dict:
    """Follow a local ``$ref`` (``#/$defs/...``), keeping the referring schema's own keys (default, description)."""
    while isinstance(schema, dict) and "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _alternatives(schema: dict, root: dict) -> list[dict]:
    schema = _resolve(schema, root)
    subs = schema.get("oneOf") or schema.get("anyOf")
    return [_resolve(s, root) for s in subs] if subs else [schema]


def _allows_string(schema: dict, root: dict) -> bool:
    for alt in _alternatives(schema, root):
        types = alt.get("type")
        types = [types] if isinstance(types, str) else types
        if types is None or "string" in types:
            return True
    return False


def coerce(value, schema: dict, root: dict | None = None):
    """``value`` with every string the schema does not allow where it stands read as YAML (module docstring)."""
    root = schema if root is None else root
    if isinstance(value, str) and schema and not _allows_string(schema, root):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value  # left for the validation to name
        if not isinstance(parsed, str):
            return coerce(parsed, schema, root)
        return value
    for alt in _alternatives(schema, root):
        if isinstance(value, dict) and ("properties" in alt or "additionalProperties" in alt):
            props, extra = alt.get("properties", {}), alt.get("additionalProperties")
            extra = extra if isinstance(extra, dict) else {}
            return {k: coerce(v, props.get(k, extra), root) for k, v in value.items()}
        if isinstance(value, list) and isinstance(alt.get("items"), dict):
            return [coerce(v, alt["items"], root) for v in value]
    return value


def _path(error) -> str:
    """``train.long_side[0]``."""
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top level)"


def first_error(config: dict, schema: dict) -> str | None:
    """The first schema violation of ``config`` as one line, or None."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), _path(e)))
    if not errors:
        return None
    error = errors[0]
    where = _path(error)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        section = _resolve(error.schema, schema)
        allowed = sorted(section.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return (f"config: unknown key {', '.join(repr(k) for k in unknown)} in {where}; "
                f"allowed: {', '.join(allowed) if allowed else '(none)'}")  # fmt: skip
    return f"config: {where}: {error.message}"


# config keys that name files shipped with the workflow (config/ablations.yaml, config/mmseg/...)
PATH_KEYS = (("ablations",), ("segmentation", "config"))


def resolve_paths(config: dict, workflow_dir: str | Path, keys=PATH_KEYS) -> None:
    """Each relative path under ``keys``: kept if it exists from the working directory (a user's own file, or a
    run from the workflow's folder), else taken from ``workflow_dir`` if it exists there."""
    for key in keys:
        section = config
        for part in key[:-1]:
            section = section.get(part) or {}
        value = section.get(key[-1])
        if isinstance(value, str) and not Path(value).is_absolute() and not Path(value).exists():
            candidate = Path(workflow_dir) / value
            if candidate.exists():
                section[key[-1]] = str(candidate)


SCHEMA_DIR = Path(__file__).resolve().parents[1] / "resources" / "schemas"  # workflow/schemas/ links here


@cache
def config_schema() -> dict:
    """The workflow's config schema, shipped with the package (rpc/resources/schemas/config.schema.yaml)."""
    return load_schema(SCHEMA_DIR / "config.schema.yaml")


def check_section(values: dict, section: str, where: str) -> dict:
    """``values`` of one config section (``model``, ``train``, ``pretrain``) typed and checked by the same schema
    the workflow validates its config with; returns them typed, or raises a DataError naming the key."""
    from rpc.utils.io import DataError

    root = config_schema()
    schema = {**_resolve(root["properties"][section], root), "$defs": root["$defs"]}
    schema.pop("default", None)
    typed = coerce(values, schema, root)
    problem = first_error(typed, schema)
    if problem:
        raise DataError(problem.replace("config: ", f"{where}: ", 1).replace("(top level)", section))
    return typed

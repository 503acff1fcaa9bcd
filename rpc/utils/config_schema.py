"""The workflow's configuration checked against its JSON Schema (workflow/schemas/config.schema.yaml), typed the
way Snakemake users type it, and its errors said in one line.

``snakemake --config seeds=[16]`` hands over ``["16"]``, ``--config crf='{bilateral_sxy: 40}'`` hands over
``{"bilateral_sxy": "40"}`` and ``protect_models=true`` the string ``"true"``. :func:`coerce` walks the config
beside the schema and reads a string as a YAML scalar or flow collection wherever the schema does not allow that
string there but allows another type (an integer, number, boolean, array or object; ``cpu_threads.train: "2"``
where ``all`` or an integer is allowed): a string the schema allows (an enum such as ``channels_last: "on"``, a
path) is never touched. :func:`first_error` then gives the first violation as one line naming the key's path and
what is allowed (the keys of that section, the type, the range, the alternatives), instead of the schema dump.

Before the run starts the workflow also refuses, in one line each, braces in its folders or in a config string
(:func:`brace_error`: Snakemake would read them as wildcards) and configured files that are not there
(:func:`missing_file`).
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


def _types(schema: dict) -> list[str] | None:
    types = schema.get("type")
    return [types] if isinstance(types, str) else types


def _allows_string(schema: dict, root: dict, value: str) -> bool:
    """Whether the string ``value`` may stand here: an alternative of any type or of type string, whose enum,
    where it has one, holds ``value``."""
    for alt in _alternatives(schema, root):
        types = _types(alt)
        if (types is None or "string" in types) and ("enum" not in alt or value in alt["enum"]):
            return True
    return False


def _other_types(schema: dict, root: dict) -> bool:
    """Whether a value other than a string may stand here."""
    return any(_types(alt) is None or set(_types(alt)) - {"string"} for alt in _alternatives(schema, root))


def coerce(value, schema: dict, root: dict | None = None):
    """``value`` with every string the schema does not allow where it stands read as YAML (module docstring)."""
    root = schema if root is None else root
    if isinstance(value, str) and schema and not _allows_string(schema, root, value) and _other_types(schema, root):
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


def _show(value) -> str:
    """A value as it is written in the config (YAML): ``true``, ``null``, strings quoted."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def _bounds(schema: dict) -> str:
    """``from 1 to 10000``, ``> 0``, ``> 0 and < 1``: the numeric range of ``schema``, or ``""``."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"from {low} to {high}"
    parts = [f"{sign} {schema[key]}" for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                        ("maximum", "<="), ("exclusiveMaximum", "<"))
             if schema.get(key) is not None]  # fmt: skip
    return " and ".join(parts)


def describe(schema: dict, root: dict) -> str:
    """What ``schema`` allows, in words: ``an integer from 1 to 10000``, ``'all' or an integer >= 1``."""
    words = []
    for alt in _alternatives(schema, root):
        if "const" in alt:
            words.append(_show(alt["const"]))
            continue
        if "enum" in alt:
            words.extend(_show(v) for v in alt["enum"]) if len(alt["enum"]) <= 2 else words.append(
                f"one of {', '.join(_show(v) for v in alt['enum'])}")  # fmt: skip
            continue
        types = _types(alt)
        if types is None:
            words.append("anything")
            continue
        for t in types:
            if t in ("integer", "number"):
                word = "an integer" if t == "integer" else "a number"
                words.append(f"{word} {_bounds(alt)}".strip())
            elif t == "array" and isinstance(alt.get("items"), dict):
                words.append(f"a list of {describe(alt['items'], root)}")
            else:
                words.append({"string": "a string", "boolean": "true or false", "null": "null", "array": "a list",
                              "object": "a mapping"}.get(t, t))  # fmt: skip
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


_RANGE = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _numeric_text(value) -> bool:
    """A string that reads as a number (``'1e23'``, ``'5e-2'``: PyYAML reads an exponent without a point as text,
    and a ``--config`` value the schema wants as a number is read as YAML)."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def first_error(config: dict, schema: dict) -> str | None:
    """The first schema violation of ``config`` as one line, or None: an unknown key with the keys allowed there;
    a value out of range, or matching none of the alternatives (``oneOf``/``anyOf``), with what is allowed; a
    string that reads as a number where the schema wants a number, with its range; else jsonschema's message."""
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
    if error.validator in ("oneOf", "anyOf"):
        return f"config: {where}: {_show(error.instance)} is not allowed; allowed: {describe(error.schema, schema)}"
    if error.validator in _RANGE or (error.validator == "type" and _numeric_text(error.instance)):
        line = f"config: {where}: {error.message}; allowed: {describe(error.schema, schema)}"
        spelled = repr(float(error.instance)) if error.validator == "type" else ""
        if "number" in (_types(error.schema) or []) and isinstance(yaml.safe_load(spelled or "x"), float):
            line += f" (YAML reads {error.instance} as text: write {spelled})"
        return line
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


def _strings(value, where: str = ""):
    """``(key path, string)`` of every string in ``value`` (``segmentation.options[0]``)."""
    if isinstance(value, str):
        yield where or "(top level)", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


BRACES = "Snakemake reads {...} as a wildcard"


def brace_error(config: dict, folders: dict[str, str | Path] | None = None) -> str | None:
    """A brace (``{`` or ``}``) in one of ``folders`` (``{"working directory": ...}``) or in any string of the
    config (a path, a split name, an mmseg option: every one ends up in a rule's files or command, where Snakemake
    formats braces) as one line naming the folder or key and the value, or None."""
    for name, folder in (folders or {}).items():
        if "{" in str(folder) or "}" in str(folder):
            return (f"the {name} {str(folder)!r} has braces in its path, which are not supported ({BRACES}): use a "
                    "folder without braces")  # fmt: skip
    for where, value in _strings(config):
        if "{" in value or "}" in value:
            return f"config: {where}: {value!r}: paths and values with braces are not supported ({BRACES})"
    return None


#: model.weights values that name no file (rpc.models.backbone.load_resnet, and the workflow's stand-in)
WEIGHT_NAMES = ("imagenet", "none", "pretrained")


def _not_a_file(path: str) -> str | None:
    if Path(path).is_file():
        return None
    return "is a folder, not a file" if Path(path).is_dir() else "does not exist"


def missing_file(config: dict, workflow_dir: str | Path) -> str | None:
    """The first configured file that must exist before the run starts and does not, as one line naming its key
    and path, or None: the files of :data:`PATH_KEYS` (looked up by :func:`resolve_paths` first) and the backbone
    weights each experiment starts from (``model.weights``, or the experiment's own), unless a name of
    :data:`WEIGHT_NAMES` or a file the workflow makes (``results/...``). Relative paths are from the working
    directory, where the jobs run."""
    for key in PATH_KEYS:
        value = config
        for part in key:
            value = value.get(part) if isinstance(value, dict) else None
        problem = isinstance(value, str) and _not_a_file(value)
        if problem:
            looked = "" if Path(value).is_absolute() else f" (looked in the working directory and in {workflow_dir})"
            return f"config: {'.'.join(key)}: {value!r} {problem}{looked}"
    shared = (config.get("model") or {}).get("weights")
    for name, experiment in (config.get("experiments") or {}).items():
        own = ((experiment or {}).get("model") or {}).get("weights")
        key, weights = (f"experiments.{name}.model.weights", own) if own is not None else ("model.weights", shared)
        if not isinstance(weights, str) or weights in WEIGHT_NAMES or weights.startswith("results/"):
            continue
        problem = _not_a_file(weights)
        if problem:
            return f"config: {key}: {weights!r} {problem}; allowed: {', '.join(WEIGHT_NAMES)} or a checkpoint file"
    return None


SCHEMA_DIR = Path(__file__).resolve().parents[1] / "resources" / "schemas"  # workflow/schemas/ links here


@cache
def config_schema() -> dict:
    """The workflow's config schema, shipped with the package (rpc/resources/schemas/config.schema.yaml)."""
    return load_schema(SCHEMA_DIR / "config.schema.yaml")


def allowed(section: str, key: str) -> tuple:
    """The values ``section.key`` may take, as the schema's ``enum`` declares them: the one place they are written
    (``allowed("model", "attention")``: the four attention variants, as a tuple)."""
    root = config_schema()
    return tuple(_resolve(root["properties"][section], root)["properties"][key]["enum"])


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

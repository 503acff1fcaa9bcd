"""A DeepLab model file's stored mmengine config is data, checked before anything is built from it.

mmengine builds a ``type`` it does not find in a registry by importing its dotted path (its fallback lookup), so a
stored ``{"type": "os.system", "command": ...}`` would run a shell command when the model is built. Model files
come from other people (``rpc segment``, ``rpc export-mmseg``), so the stored config is refused, naming the file
and the field, before a single module is built, unless it holds only:

- plain data: dicts, lists, tuples, strings, integers, finite floats, booleans and None (nothing else survives
  JSON, and nothing else is written back as a Python literal by ``export-mmseg``);
- keys that cannot change the meaning of the exported ``config.py`` (mmengine writes a key that is not a Python
  name between quotes, unescaped): every key, at any depth, is a string matching :data:`KEY` (letters, digits,
  ``_``, ``.`` and ``-``, not starting with a digit, ``.`` or ``-``: the dotted parameter names of
  ``paramwise_cfg.custom_keys`` are the only non-names mmseg configs use) and is no Python keyword; a top-level key
  is a Python name (the exported ``config.py`` writes it as an assignment);
- no ``_base_`` anywhere; ``default_scope`` and every ``_scope_`` (mmengine imports ``<scope>.registry``) one of
  :data:`SCOPES`;
- ``custom_imports`` of this package's registering modules only;
- ``type`` names that are plain names (no dot) registered in mmsegmentation's registries, their mmengine parents
  (``BN``, ``Pretrained``, ...) or by this package (``DeepLabV2Head``, ``FiniteLossHook``, ...);
- decode heads (``model.decode_head``, ``model.auxiliary_head``) whose keys are settings their class takes (an
  unknown one would be a ``TypeError`` from deep inside the build).
"""

from __future__ import annotations

import importlib
import inspect
import keyword
import math
import re
from functools import cache

from rpc.segmentation.compat import ensure_mmseg
from rpc.utils.io import DataError

ensure_mmseg()

# this package's modules that register types in mmseg's registries (head, dataset, hooks, optimiser wrapper)
OWN_REGISTERING_MODULES = (
    "rpc.segmentation.deeplabv2",
    "rpc.segmentation.dataset",
    "rpc.segmentation.hooks",
    "rpc.segmentation.precision",
)
FORBIDDEN_KEYS = ("_base_",)
#: every dict key of a stored config, at any depth (module docstring)
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
#: the registry scopes a stored config may name (``default_scope``, ``_scope_``)
SCOPES = ("mmseg", "mmengine")
SCALARS = (str, int, float, bool, type(None))
HEADS = ("decode_head", "auxiliary_head")


@cache
def registered_type_names() -> frozenset[str]:
    """Every name registered in mmseg's registries and their parents, with this package's types registered."""
    import mmseg.registry
    from mmengine.registry import Registry
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    for module in OWN_REGISTERING_MODULES:
        importlib.import_module(module)
    names = set()
    for registry in vars(mmseg.registry).values():
        while isinstance(registry, Registry):
            registry.import_from_location()  # mmseg's / mmengine's own modules of this registry (visualizers, ...)
            names |= set(registry.module_dict)
            registry = registry.parent
    return frozenset(names)


def check_stored_config(cfg: dict, source) -> None:
    """Raise ``DataError`` naming ``source`` and the field unless ``cfg`` is plain data that only names registered
    types (module docstring)."""
    if not isinstance(cfg, dict):
        raise DataError(f"{source}: the stored config is not a dict")
    for key in cfg:
        if key in FORBIDDEN_KEYS or not (isinstance(key, str) and key.isidentifier() and key.isascii()):
            raise DataError(f"{source}: the stored config may not hold the key {key!r}; a model file is data")
    _check_custom_imports(cfg.get("custom_imports", {}), source)
    names = registered_type_names()
    todo = [("config", cfg)]
    while todo:
        where, node = todo.pop()
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, list | tuple):
            items = enumerate(node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise DataError(f"{source}: {where} = {node!r} is not a finite number; a model file holds plain data")
        elif isinstance(node, SCALARS):
            continue
        else:
            raise DataError(f"{source}: {where} is a {type(node).__name__}, not plain data (strings, numbers, "
                            "booleans, None, lists and dicts)")  # fmt: skip
        for key, value in items:
            if isinstance(node, dict):
                _check_key(key, where, source)
            field = f"{where}.{key}" if isinstance(node, dict) else f"{where}[{key}]"
            if isinstance(node, dict) and key == "type":
                if not isinstance(value, str) or "." in value or value not in names:
                    raise DataError(
                        f"{source}: {field} = {value!r} is not a type registered with mmsegmentation, mmengine or "
                        "this package; a model file may only name registered types (nothing is imported or run)"
                    )
            elif isinstance(node, dict) and key in ("_scope_", "default_scope") and value not in SCOPES:
                raise DataError(f"{source}: {field} = {value!r}; a model file may only name the scopes "
                                f"{', '.join(SCOPES)} (mmengine imports a scope's registry module)")  # fmt: skip
            else:
                todo.append((field, value))
    model = cfg.get("model")
    for name in HEADS:
        heads = model.get(name) if isinstance(model, dict) else None
        for i, head in enumerate(heads if isinstance(heads, list | tuple) else [heads]):
            where = f"config.model.{name}" + (f"[{i}]" if isinstance(heads, list | tuple) else "")
            if isinstance(head, dict):
                _check_head_settings(head, where, source)


def _check_key(key, where: str, source) -> None:
    if not (isinstance(key, str) and KEY.fullmatch(key)) or keyword.iskeyword(key):
        raise DataError(f"{source}: {where} holds the key {key!r}; a model file's keys are names of letters, "
                        "digits, '_', '.' and '-' (not Python keywords)")  # fmt: skip
    if key in FORBIDDEN_KEYS:
        raise DataError(f"{source}: {where} may not hold the key {key!r}; a model file is data")


def _check_custom_imports(imports, source) -> None:
    if isinstance(imports, dict):
        extra = sorted(set(imports) - {"imports", "allow_failed_imports"}, key=str)
        if extra:
            raise DataError(f"{source}: config.custom_imports holds the key {extra[0]!r}; it takes 'imports' and "
                            "'allow_failed_imports'")  # fmt: skip
        imports = imports.get("imports", [])
    modules = [imports] if isinstance(imports, str) else imports
    if not isinstance(modules, list | tuple):
        raise DataError(f"{source}: config.custom_imports is not a list of module names")
    for module in modules:
        if module not in OWN_REGISTERING_MODULES:
            raise DataError(f"{source}: config.custom_imports names {module!r}; a model file may only import this "
                            f"package's own modules ({', '.join(OWN_REGISTERING_MODULES)})")  # fmt: skip


def _check_head_settings(head: dict, where: str, source) -> None:
    from mmseg.registry import MODELS

    cls = MODELS.get(head.get("type"))
    accepted = settings_of(cls) if cls is not None else None
    if accepted is None:  # a class that passes unknown keys on to one that takes them all
        return
    for key in head:
        if key not in accepted and key not in ("type", "_scope_"):
            raise DataError(f"{source}: {where}.{key} is not a setting of {cls.__name__} (it takes: "
                            f"{', '.join(sorted(accepted))})")  # fmt: skip


def settings_of(cls) -> frozenset[str] | None:
    """The keyword arguments ``cls(...)`` takes: its ``__init__``'s, and its bases' as far as ``**kwargs`` passes
    them on; None (not known) when a ``**kwargs`` goes past every base that has an ``__init__``."""
    names: set[str] = set()
    for klass in inspect.getmro(cls)[:-1]:  # not object
        if "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(vars(klass)["__init__"]).parameters.values())[1:]  # not self
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if all(p.kind != p.VAR_KEYWORD for p in params):
            return frozenset(names)
    return None

"""A DeepLab model file's stored mmengine config is data, checked before anything is built from it.

mmengine builds a ``type`` it does not find in a registry by importing its dotted path (its fallback lookup), so a
stored ``{"type": "os.system", "command": ...}`` would run a shell command when the model is built. Model files
come from other people (``rpc segment``, ``rpc export-mmseg``), so every ``type`` in the stored config must be a
plain name (no dot) registered in mmsegmentation's registries, their mmengine parents (``BN``, ``Pretrained``, ...)
or by this package (``DeepLabV2Head``, ``FiniteLossHook``, ...). Its ``custom_imports`` may only name this
package's registering modules, it may not name bases (``_base_``), and its top-level keys must be Python names
(the exported ``config.py`` writes them as assignments). Anything else is refused, naming the file and the field,
before a single module is built.
"""

from __future__ import annotations

import importlib
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
    """Raise ``DataError`` naming ``source`` and the field unless ``cfg`` only names registered types (module
    docstring)."""
    if not isinstance(cfg, dict):
        raise DataError(f"{source}: the stored config is not a dict")
    for key in cfg:
        if key in FORBIDDEN_KEYS or not (isinstance(key, str) and key.isidentifier()):
            raise DataError(f"{source}: the stored config may not hold the key {key!r}; a model file is data")
    imports = cfg.get("custom_imports", {})
    imports = imports.get("imports", []) if isinstance(imports, dict) else imports
    for module in [imports] if isinstance(imports, str) else imports:
        if module not in OWN_REGISTERING_MODULES:
            raise DataError(f"{source}: config.custom_imports names {module!r}; a model file may only import this "
                            f"package's own modules ({', '.join(OWN_REGISTERING_MODULES)})")  # fmt: skip
    names = registered_type_names()
    todo = [("config", cfg)]
    while todo:
        where, node = todo.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list | tuple) else ()
        for key, value in items:
            field = f"{where}.{key}" if isinstance(node, dict) else f"{where}[{key}]"
            if isinstance(node, dict) and key == "type":
                if not isinstance(value, str) or "." in value or value not in names:
                    raise DataError(
                        f"{source}: {field} = {value!r} is not a type registered with mmsegmentation, mmengine or "
                        "this package; a model file may only name registered types (nothing is imported or run)"
                    )
            else:
                todo.append((field, value))

"""A digest of the code a result depends on, for the machine caches (pretrained backbone, precision decisions).

``import_closure("rpc.engine.pretrain")`` reads the module's source and follows every ``rpc`` import in it, at
module level and inside functions alike, to the package's files it reaches; nothing is imported or run. The digest
covers each of those files' path and bytes, so a change to any module the stage imports (a normalisation constant,
the corpus generator, the backbone) gives another key.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # rpc/
ROOT = PACKAGE.name


def _module_file(name: str) -> Path | None:
    """``rpc.a.b`` -> ``rpc/a/b.py`` or ``rpc/a/b/__init__.py``; None if it is not a module of the package."""
    parts = name.split(".")
    if parts[0] != ROOT:
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path) -> set[str]:
    """The ``rpc`` module names one file imports: ``import rpc.x``, ``from rpc.x import y`` (``rpc.x.y`` too, in
    case ``y`` is a module), and the packages on the way (their ``__init__`` runs on import)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    found = set()
    for name in names:
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {n for n in found if _module_file(n) is not None}


@cache
def import_closure(module: str) -> tuple[Path, ...]:
    """Every file of the package that ``module`` imports, directly or through others, itself included; sorted."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path))
    return tuple(sorted(seen))


def code_digest(*modules: str) -> str:
    """SHA-256 (16 hex digits) of the paths and contents of the import closures of ``modules``."""
    digest = hashlib.sha256()
    for path in sorted({p for m in modules for p in import_closure(m)}):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]

"""The package layers of ``rpc/__init__.py``: a package imports only packages of a lower layer, and no stage
package imports another (file formats and shared helpers live in the lower layers).

Every module under ``rpc/`` is parsed with ``ast``; every ``import rpc.X...`` / ``from rpc.X import ...`` /
``from rpc import X`` / relative import counts, wherever it stands (module level, inside a function, under
``if TYPE_CHECKING``).
"""

import ast
from pathlib import Path

import pytest

RPC = Path(__file__).resolve().parents[1] / "rpc"
REPO = RPC.parent

# the layers written in rpc/__init__.py's docstring; "cli" and "__main__" are the top-level modules
LAYERS = {
    "utils": 0,
    "data": 1,
    "models": 1,
    "engine": 2,
    "cams": 2,
    "crf": 2,
    "segmentation": 2,
    "evaluation": 2,
    "cli": 3,
    "__main__": 4,
}


def _modules() -> list[Path]:
    return sorted(p for p in RPC.rglob("*.py") if ".venv" not in p.parts)


def _own_name(path: Path, root: Path) -> list[str]:
    """``rpc/cams/generate.py`` -> ``["rpc", "cams", "generate"]``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _package_of(path: Path) -> str | None:
    """The first-level name under ``rpc`` (a subpackage or a top-level module); None for ``rpc/__init__.py``."""
    parts = path.relative_to(RPC).with_suffix("").parts
    return None if parts == ("__init__",) else parts[0]


def _imported(path: Path, root: Path = RPC) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every ``rpc`` module or name the file imports (``root``: the ``rpc`` folder),
    relative imports resolved, in line order."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = _own_name(path, root)
    package = own if path.name == "__init__.py" else own[:-1]  # what "." means in this file
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # "from rpc import cams" imports the package cams: name each imported name under the module
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return sorted((line, name) for line, name in found if name == "rpc" or name.startswith("rpc."))


def _dependencies() -> dict[str, dict[str, list[str]]]:
    """package -> {package it imports -> ["file:line", ...]}, own package and the bare ``rpc`` left out."""
    deps: dict[str, dict[str, list[str]]] = {}
    for path in _modules():
        source = _package_of(path)
        if source is None:
            continue
        for line, name in _imported(path, RPC):
            parts = name.split(".")
            if len(parts) < 2 or parts[1] == "__version__" or parts[1] == source:
                continue
            where = f"{path.relative_to(RPC.parent)}:{line}"
            deps.setdefault(source, {}).setdefault(parts[1], []).append(where)
    return deps


def test_every_package_has_a_layer():
    packages = {_package_of(p) for p in _modules()} - {None}
    assert packages == set(LAYERS), "place each package of rpc/ in a layer (rpc/__init__.py and LAYERS here)"


def test_a_package_imports_only_lower_layers():
    bad = [
        f"{where}: rpc.{source} (layer {LAYERS[source]}) imports rpc.{target} (layer {LAYERS.get(target)})"
        for source, targets in _dependencies().items()
        for target, places in targets.items()
        if target not in LAYERS or LAYERS[target] >= LAYERS[source]
        for where in sorted(set(places))
    ]
    assert not bad, "imports against the layering of rpc/__init__.py:\n" + "\n".join(bad)


def test_no_import_cycle_between_packages():
    graph = {source: set(targets) for source, targets in _dependencies().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("package import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def _module_of(name: str) -> str | None:
    """``rpc.utils.io.write_json_atomic`` -> ``rpc.utils.io`` (the longest prefix that is a module file)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts[:n])
    return None


def test_no_import_cycle_between_modules():
    """Not even through imports inside functions (rpc/utils/io, precision and provenance once imported each
    other in a circle that way)."""
    graph: dict[str, set[str]] = {}
    for path in _modules():
        own = ".".join(_own_name(path, RPC))
        targets = {_module_of(name) for _, name in _imported(path, RPC)} - {None, own, "rpc"}
        # a package's __init__ is imported on the way to its modules: not an edge back
        graph[own] = {m for m in targets if not own.startswith(m + ".")}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("module import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_check_sees_function_level_and_relative_imports(tmp_path):
    module = tmp_path / "rpc" / "crf" / "mod.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "import os\n"
        "from rpc.data.maps import load_cams\n"
        "def f():\n"
        "    from rpc.cams.generate import make_rs_cams\n"
        "    import rpc.segmentation.predict\n"
        "    from ..evaluation import masks\n"
        "    from . import pseudo\n"
        "    from rpc import engine\n"
    )
    names = [name for _, name in _imported(module, tmp_path / "rpc")]
    assert names == [
        "rpc.data.maps.load_cams",
        "rpc.cams.generate.make_rs_cams",
        "rpc.segmentation.predict",
        "rpc.evaluation.masks",
        "rpc.crf.pseudo",
        "rpc.engine",
    ]


@pytest.mark.parametrize(
    "module, function, positional",
    [
        ("rpc.cams.generate", "make_rs_cams", ["model_path", "dataset_dir", "split", "out_dir"]),
        ("rpc.crf.pseudo", "make_pseudo_masks", ["dataset_dir", "split", "cam_dirs", "out_dir"]),
        ("rpc.segmentation.predict", "predict_segmentation", ["model_file", "dataset_dir", "split", "out_dir"]),
    ],
)
def test_stage_entry_points_take_their_options_by_keyword(module, function, positional):
    """Inputs and output positionally, every option by name: swapped options (workers, batch size) fail loudly."""
    import importlib
    import inspect

    params = inspect.signature(getattr(importlib.import_module(module), function)).parameters.values()
    assert [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD] == positional
    assert all(p.kind is p.KEYWORD_ONLY for p in params if p.name not in positional)


def test_the_project_cites_no_file_outside_itself():
    """Users get the repository, nothing beside it: no method brief, architecture note or paper text outside it
    is cited (the real-data fixtures of the tests, ../shared/realdata or RPC_REALDATA, are test data)."""
    import re
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    pattern = re.compile(r"METHOD\.md|ARCHITECTURE\.md|rpc_paper\.txt|\.\./shared/(?!realdata)")
    found = []
    for name in files:
        if name.startswith("tests/") or not (REPO / name).is_file():
            continue
        try:
            text = (REPO / name).read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}:{i}" for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert not found, found

"""The conda environment `--sdm conda` builds: self-contained (Snakemake copies it into .snakemake/conda/) and the
same pinned set as requirements.txt."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line).groups()
            pins[name.lower()] = version
    return pins


def test_the_conda_env_is_self_contained_and_equals_requirements():
    env = yaml.safe_load((REPO / "envs" / "rpc.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert not [p for p in pip if p.startswith("-") or "/" in p or ".." in p]  # no -r, -e, paths
    assert _pins(pip) == _pins((REPO / "requirements.txt").read_text().splitlines())
    assert "python=3.11" in env["dependencies"]


def test_every_rule_uses_an_env_file_that_exists():
    rules = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    envs = {m for f in rules for m in re.findall(r'conda:\s*\n\s*"([^"]+)"', f.read_text())}
    assert envs == {"../../envs/rpc.yaml"}
    assert (REPO / "workflow" / "rules" / "../../envs/rpc.yaml").resolve().is_file()
    conda = sum(f.read_text().count("conda:") for f in rules)
    assert conda == sum(len(re.findall(r"^\s*rule \w+:", f.read_text(), re.M)) for f in rules)  # every rule has one


def test_the_job_environment_has_one_cv2_and_no_test_tools():
    pins = _pins((REPO / "requirements.txt").read_text().splitlines())
    assert "opencv-python" in pins and "opencv-python-headless" not in pins  # both would write cv2
    assert not {"pytest", "ruff", "pytest-cov", "hypothesis"} & set(pins)
    dev = _pins((REPO / "requirements-dev.txt").read_text().splitlines())
    assert set(dev) == {"pytest", "pytest-xdist", "ruff", "tensorboard"}  # tensorboard: the optional logging


def test_every_third_party_module_the_package_imports_is_declared():
    import ast

    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # the dependencies, and the optional ones in their extras (an import of those fails with a message naming it)
    optional = [d for name, deps in project["optional-dependencies"].items() if name != "dev" for d in deps]
    declared = {re.split(r"[<>=!~ ]", d)[0].lower() for d in project["dependencies"] + optional}
    module_to_dist = {"PIL": "pillow", "yaml": "pyyaml", "pydensecrf": "pydensecrf2", "mmcv": "mmcv-lite",
                      "mmseg": "mmsegmentation", "markdown_it": "markdown-it-py"}  # fmt: skip
    stdlib = set(__import__("sys").stdlib_module_names)
    imported = set()
    for f in (REPO / "rpc").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported - stdlib if m not in ("rpc", "__future__")}
    missing = {m for m in third_party if module_to_dist.get(m, m).lower() not in declared}
    assert not missing, f"imported by rpc/ but not in pyproject.toml's dependencies: {sorted(missing)}"

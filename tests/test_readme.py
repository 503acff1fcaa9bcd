"""The README's commands run as printed in a fresh shell: every `make` line of its bash blocks, in its dry form
(`make dry-run` with the same CONFIG and ARGS), with a PATH that does not hold the virtual environment."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNNING = ("run", "run-seeds", "report", "cluster", "dry-run")


def readme_make_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith("make "):
                commands.append(shlex.split(line))
    return commands


def test_the_readme_shows_the_two_commands_first():
    assert readme_make_commands()[:2] == [["make", "run"], ["make", "test"]]


@pytest.mark.parametrize("command", [c for c in readme_make_commands() if c[1] in RUNNING], ids=" ".join)
def test_every_readme_command_runs_dry_without_the_venv_on_path(command, tmp_path, voc_root, realdata):
    """VOC and COCO paths are replaced by the genuine fixture files (COCO: a folder with COCO's layout)."""
    coco = tmp_path / "coco"
    for d in ("train2014", "val2014", "annotations"):
        (coco / d).mkdir(parents=True)
    for split in ("train2014", "val2014"):
        (coco / "annotations" / f"instances_{split}.json").write_bytes(
            (realdata / "coco" / "annotations" / "instances_val2014_subset43_with_images.json").read_bytes())
    args = [a.replace("/data/VOCdevkit/VOC2012", str(voc_root)).replace("/data/my_folder", str(voc_root))
            .replace("/data/coco", str(coco)) for a in command[2:]]  # fmt: skip
    venv = str(REPO / ".venv" / "bin")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p).resolve() != Path(venv).resolve())
    env = {**os.environ, "PATH": path, "VIRTUAL_ENV": ""}
    proc = subprocess.run(["make", "--no-print-directory", "dry-run", *args, f"RUN_DIR={tmp_path / 'run'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "This was a dry-run" in proc.stdout + proc.stderr or "Nothing to be done" in proc.stdout + proc.stderr

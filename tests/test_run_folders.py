"""Each benchmark in a folder of its own: a config naming another dataset than the one results/ was made from
stops in one line instead of replacing the finished runs; `make run CONFIG=...` runs it under runs/<name>/."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _dry_run(work: Path, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "1", *args]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)


def _record_of_the_default(work: Path) -> None:
    """results/ as `make run` leaves it: the prepared dataset with the record of what it was made from."""
    proc = _dry_run(work, "-p", "--until", "prepare_dataset")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = next(line for line in (proc.stdout + proc.stderr).splitlines() if "workflow_dataset.json" in line)
    text = record.split("echo ", 1)[1].rsplit(" > ", 1)[0].strip("'")
    prepared = work / "results" / "data" / "prepared"
    prepared.mkdir(parents=True)
    (prepared / "workflow_dataset.json").write_text(text + "\n")
    assert json.loads(text)["synthetic"]["generator"] == "ellipses"


def test_another_benchmark_in_the_same_folder_stops_in_one_line(tmp_path):
    _record_of_the_default(tmp_path)
    assert _dry_run(tmp_path).returncode == 0  # the same dataset: fine
    proc = _dry_run(tmp_path, "--configfile", str(REPO / "config" / "creatures.yaml"))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    lines = [ln for ln in out.splitlines() if "holds the runs of another dataset" in ln]
    assert len(lines) == 1 and "dataset.synthetic differ" in lines[0] and "make run CONFIG=<file>" in lines[0]
    assert "Traceback" not in out


def test_make_run_with_a_config_uses_a_folder_of_its_own():
    out = subprocess.run(["make", "-n", "run", "CONFIG=config/creatures.yaml"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert f"-d runs/creatures --configfile {REPO}/config/creatures.yaml" in out
    default = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "-d . " in default and "--configfile" not in default


@pytest.mark.parametrize("overlay", [False, True])
def test_real_data_never_gets_the_demos_recipe(tmp_path, voc_root, overlay):
    """A VOC dataset given on top of the embedded default (by --config, also behind an overlay that is no base)
    stops in one line that names the file to add; with config/voc.yaml first the same dataset plans."""
    given = ["--config", f"dataset={{kind: voc, root: {voc_root}}}"]
    if overlay:
        (tmp_path / "mine.yaml").write_text("train: {epochs: 2}\n")
        given = ["--configfile", str(tmp_path / "mine.yaml"), *given]
    proc = _dry_run(tmp_path, *given)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [ln for ln in out.splitlines() if "on top of the embedded default" in ln]
    assert len(lines) == 1 and "add --configfile config/voc.yaml as the first config file" in lines[0]
    base = ["--configfile", str(REPO / "config" / "voc.yaml")]
    ok = _dry_run(tmp_path, *(base + given[1:2] if overlay else base), *given[-2:])
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_a_cluster_profile_with_its_placeholders_left_stops_in_one_line(tmp_path):
    proc = _dry_run(tmp_path, "--profile", str(REPO / "profiles" / "slurm"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [ln for ln in out.splitlines() if "is still the placeholder" in ln]
    assert len(lines) == 1 and "slurm_partition is still the placeholder '<cpu-partition>'" in lines[0]

"""The chaos run (benchmarks/chaos.py): the tiny workflow SIGKILLed at random moments and rerun until done ends
with the same files as an uninterrupted run. The uninterrupted run logs to TensorBoard and write-protects its
models, options that must change no number: the same comparison shows that the same command from scratch gives the
same files (maps, masks, model files, scores, figures; JSON without its timing fields) with or without them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_run_killed_five_times_ends_identical_to_an_uninterrupted_one(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cmd = [sys.executable, "-m", "benchmarks.chaos", "--kills", "5", "--seed", "1", "--work", str(tmp_path),
           "--name", "chaos_test", "--reference-config", "tensorboard=true", "protect_models=true"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((REPO / "benchmarks" / "out" / "chaos_test.json").read_text())
    assert result["kills"] == 5 and len(result["episodes"]) >= 1
    assert result["files_compared"] > 200
    assert result["files_differ"] == [] and result["only_reference"] == [] and result["only_killed"] == []
    # the uninterrupted run's TensorBoard events: the classifier's and DeepLab's (mmengine's backend), under work/
    reference = tmp_path / "reference"
    board = EventAccumulator(str(reference / "work" / "rpc-s15" / "classifier" / "tensorboard")).Reload()
    assert "classifier/total" in board.Tags()["scalars"]
    assert list((reference / "work" / "rpc-s15" / "segmentation").glob("*/vis_data/events.out.tfevents.*"))
    # its models were written read-only (protect_models; the killed runs ran without it)
    models = ["pretrain/backbone.pth", "rpc-s15/classifier.pt", "rpc-s15/segmentation/model.pt"]
    assert all(not (reference / "results" / m).stat().st_mode & 0o222 for m in models)
    if os.geteuid() != 0:  # root may write any file: Snakemake sees nothing protected there
        (reference / "pre.yaml").write_text(yaml.safe_dump({"pretrain": {"epochs": 2}}))
        rerun = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "tiny.yaml",
                                "pre.yaml", "pretrain"], cwd=reference, capture_output=True, text=True,
                               env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
        assert rerun.returncode != 0 and "Write-protected output files" in rerun.stdout + rerun.stderr

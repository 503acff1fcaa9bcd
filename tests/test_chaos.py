"""The chaos run (benchmarks/chaos.py): the tiny workflow SIGKILLed at random moments and rerun until done ends
with the same files as an uninterrupted run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_run_killed_five_times_ends_identical_to_an_uninterrupted_one(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks.chaos", "--kills", "5", "--seed", "1", "--work", str(tmp_path),
           "--name", "chaos_test"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((REPO / "benchmarks" / "out" / "chaos_test.json").read_text())
    assert result["kills"] == 5 and len(result["episodes"]) >= 1
    assert result["files_compared"] > 200
    assert result["files_differ"] == [] and result["only_reference"] == [] and result["only_killed"] == []

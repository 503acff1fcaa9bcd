"""The chaos run: the tiny workflow, killed (SIGKILL to Snakemake's whole process group) at random moments and
rerun after each kill until it completes, then every output compared with an uninterrupted run of the same
settings.

    python -m benchmarks.chaos --kills 20 --seed 0 --work /tmp/chaos      # the README's figures
    python -m benchmarks.chaos --kills 5                                  # what the slow test runs

Each rerun is what a user types after a kill: `python -m rpc unlock-stale` (the lock a killed Snakemake leaves),
then the same `snakemake` command. The kill moments are drawn (seeded) uniformly over the reference run's
duration, so kills land in every stage: data, pretraining, training, maps, CRF, DeepLab, predictions, summaries.
Writes ``benchmarks/out/chaos.json``: kills made, runs needed, files compared, files that differ (goal: none;
JSON compared without timing fields, ``rpc.utils.digests``).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, write_result
from rpc.utils.digests import compare_outputs

CONFIG = REPO / "tests" / "tiny.yaml"


def workdir(path: Path) -> Path:
    """A folder that sees the repository's workflow (results land here) with the tiny config."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config", "envs"):
        (path / name).symlink_to(REPO / name)
    shutil.copy(CONFIG, path / "tiny.yaml")
    return path


def start(folder: Path, cores: int) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "rpc", "unlock-stale"], cwd=folder, env=env, check=True,
                   capture_output=True)  # fmt: skip
    log = open(folder / "snakemake.log", "ab")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", "tiny.yaml"],
                            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def run_to_end(folder: Path, cores: int) -> float:
    t0 = time.perf_counter()
    if start(folder, cores).wait() != 0:
        raise SystemExit(f"{folder}: the run failed; see {folder / 'snakemake.log'}")
    return time.perf_counter() - t0


def chaos(folder: Path, kills: int, duration: float, rng: random.Random, cores: int) -> dict:
    """Kill the run ``kills`` times at random moments, rerunning after each; then run to the end."""
    made, runs, moments = 0, 0, []
    while made < kills:
        delay = rng.uniform(0.5, duration)
        proc = start(folder, cores)
        runs += 1
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job it started
            proc.wait()
            made += 1
            moments.append(round(delay, 1))
            continue
        if proc.returncode != 0:
            raise SystemExit(f"{folder}: a rerun after a kill failed; see {folder / 'snakemake.log'}")
        break  # finished before the kill: nothing left to interrupt
    runs += 1
    if start(folder, cores).wait() != 0:  # complete (or confirm complete) after the last kill
        raise SystemExit(f"{folder}: the final rerun failed; see {folder / 'snakemake.log'}")
    return {"kills": made, "runs": runs, "kill_moments_s": moments}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "out" / "chaos")
    p.add_argument("--name", default="chaos")
    a = p.parse_args(argv)
    reference = workdir(a.work / "reference")
    duration = run_to_end(reference, a.cores)
    chaotic = workdir(a.work / "killed")
    result = chaos(chaotic, a.kills, duration, random.Random(a.seed), a.cores)
    comparison = compare_outputs(reference / "results", chaotic / "results")
    summary = {"seed": a.seed, "reference_s": round(duration, 1), **result, "files_compared": comparison["compared"],
               "files_differ": comparison["differ"], "only_reference": comparison["only_a"],
               "only_killed": comparison["only_b"]}  # fmt: skip
    write_result(a.name, summary)
    return summary


if __name__ == "__main__":
    main()

"""The chaos run: the tiny workflow, killed (SIGKILL to Snakemake's whole process group) at random moments and
rerun after each kill until it completes, then every output compared with an uninterrupted run of the same
settings.

    python -m benchmarks.chaos --kills 20 --seed 0 --work /tmp/chaos      # the README's figures
    python -m benchmarks.chaos --kills 5 --reference-config tensorboard=true protect_models=true
                                                                          # what the slow test runs

Each rerun is what a user types after a kill: `python -m rpc unlock-stale` (the lock a killed Snakemake leaves),
then the same `snakemake` command. The run is repeated from scratch in episodes of up to 5 kills; in each, the
kill moments are drawn (seeded) uniformly over the reference run's duration and the k-th rerun is killed at the
gap to the next moment, so kills land in every stage: data, pretraining, training, maps, CRF, DeepLab,
predictions, summaries. Each episode's outputs are compared with the reference run's (which may run with
settings that must change no output, `--reference-config`: the comparison shows they do not). Writes
``benchmarks/out/<name>.json``: kills made, runs needed, files compared (summed over episodes), files that differ
(goal: none; JSON compared without timing fields, ``rpc.utils.digests``).
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
    for name in ("Snakefile", "workflow", "config", "envs", "profiles"):  # profiles/default: --rerun-incomplete
        (path / name).symlink_to(REPO / name)
    shutil.copy(CONFIG, path / "tiny.yaml")
    return path


def start(folder: Path, cores: int, config: tuple[str, ...] = ()) -> subprocess.Popen:
    """``rpc unlock-stale``, then the tiny workflow in the background (``config``: ``--config`` KEY=VALUE items)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "rpc", "unlock-stale"], cwd=folder, env=env, check=True,
                   capture_output=True)  # fmt: skip
    log = open(folder / "snakemake.log", "ab")  # noqa: SIM115  (closed with the process)
    extra = ["--config", *config] if config else []
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", "tiny.yaml",
                             *extra], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def run_to_end(folder: Path, cores: int, config: tuple[str, ...] = ()) -> float:
    t0 = time.perf_counter()
    if start(folder, cores, config).wait() != 0:
        raise SystemExit(f"{folder}: the run failed; see {folder / 'snakemake.log'}")
    return time.perf_counter() - t0


def episode(folder: Path, moments: list[float], cores: int) -> dict:
    """One run from scratch, killed at ``moments`` (seconds of run time, increasing): the k-th rerun is killed
    ``moments[k] - moments[k-1]`` seconds after it starts, so the kills walk through the stages; then the run is
    completed. A rerun that finishes before its kill ends the episode early."""
    made, runs, previous = [], 0, 0.0
    for moment in moments:
        proc = start(folder, cores)
        runs += 1
        try:
            proc.wait(timeout=moment - previous)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job it started
            proc.wait()
            made.append(round(moment, 1))
            previous = moment
            continue
        if proc.returncode != 0:
            raise SystemExit(f"{folder}: a rerun after a kill failed; see {folder / 'snakemake.log'}")
        break  # finished before the kill: nothing left to interrupt
    runs += 1
    if start(folder, cores).wait() != 0:  # complete (or confirm complete) after the last kill
        raise SystemExit(f"{folder}: the final rerun failed; see {folder / 'snakemake.log'}")
    return {"kill_moments_s": made, "runs": runs}


def chaos(base: Path, reference: Path, kills: int, per_episode: int, duration: float, rng: random.Random,
          cores: int) -> dict:  # fmt: skip
    """Episodes of up to ``per_episode`` kills (moments drawn uniformly over the reference run's duration, at
    least 5 s apart), each from scratch and compared with the reference, until ``kills`` kills were made."""
    made, runs, episodes, compared, differ, only_ref, only_killed = 0, 0, [], 0, set(), set(), set()
    while made < kills:
        n = min(per_episode, kills - made)
        moments = sorted(rng.uniform(0.5, duration) for _ in range(n))
        for i in range(1, len(moments)):
            moments[i] = max(moments[i], moments[i - 1] + 5.0)
        folder = workdir(base / f"killed_{len(episodes)}")
        result = episode(folder, moments, cores)
        if not result["kill_moments_s"]:
            continue  # the run outran every kill (a loaded machine): draw again
        comparison = compare_outputs(reference / "results", folder / "results")
        made += len(result["kill_moments_s"])
        runs += result["runs"]
        compared += comparison["compared"]
        differ |= set(comparison["differ"])
        only_ref |= set(comparison["only_a"])
        only_killed |= set(comparison["only_b"])
        episodes.append({**result, "files_compared": comparison["compared"], "files_differ": comparison["differ"]})
        shutil.rmtree(folder)  # compared: its space is needed by the next episode
    return {"kills": made, "runs": runs, "episodes": episodes, "files_compared": compared,
            "files_differ": sorted(differ), "only_reference": sorted(only_ref),
            "only_killed": sorted(only_killed)}  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--per-episode", type=int, default=5, help="kills per run from scratch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "out" / "chaos")
    p.add_argument("--name", default="chaos")
    p.add_argument("--reference-config", nargs="+", default=[], metavar="KEY=VALUE",
                   help="--config items for the uninterrupted run only: settings that must change no output file "
                        "(e.g. tensorboard=true protect_models=true), shown by the comparison")
    a = p.parse_args(argv)
    reference = workdir(a.work / "reference")
    duration = run_to_end(reference, a.cores, tuple(a.reference_config))
    result = chaos(a.work, reference, a.kills, a.per_episode, duration, random.Random(a.seed), a.cores)
    summary = {"seed": a.seed, "reference_s": round(duration, 1), "reference_config": a.reference_config, **result}
    write_result(a.name, summary)
    return summary


if __name__ == "__main__":
    main()

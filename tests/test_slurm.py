"""SLURM submission without a cluster: the tiny workflow through `--executor slurm` (profiles/slurm with its
placeholders filled in), with stand-in sbatch/squeue/sacct/scancel/srun (tests/slurm_standin) that run each job on
this machine in the background and record what was submitted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_profiles import GPU_RULES, env, planned_jobs, profile_workdir
from test_workflow import REPO, TINY

STANDIN = REPO / "tests" / "slurm_standin"
TARGET = "pseudo_masks"  # data, pretraining, classifier, maps (GPU rules) and the CRF, its merge and scores (CPU)
FAST = ["--latency-wait", "5", "--seconds-between-status-checks", "1", "--slurm-init-seconds-before-status-checks", "1"]
ARGS = ["--profile", "profiles/slurm", "--configfile", "tiny.yaml", *FAST]


def run(work: Path, *extra: str, fail_rules: str = "") -> tuple[subprocess.CompletedProcess, float]:
    state = work / "standin"
    environment = {**env(), "PATH": f"{STANDIN}:{env()['PATH']}", "STANDIN_SLURM_DIR": str(state),
                   "STANDIN_SLURM_ACCOUNTS": "test-account", "STANDIN_SLURM_FAIL_RULES": fail_rules}  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "snakemake", *ARGS, *extra], cwd=work, env=environment,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    return proc, time.monotonic() - start


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    work = profile_workdir(tmp_path_factory.mktemp("slurm"))
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    planned = planned_jobs([*ARGS, TARGET], work)  # what the profile resolves to, for the same run
    proc, seconds = run(work, TARGET)
    print(f"\nslurm stand-in run of `{TARGET}`: {seconds:.0f} s")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return work, planned, proc


@pytest.mark.slow
def test_slurm_run_completes(slurm_run):
    work, planned, proc = slurm_run
    assert (work / "results" / "rpc-s15" / "pseudo_masks.json").is_file()
    jobs = [json.loads(p.read_text()) for p in (work / "standin" / "jobs").glob("*.json")]
    assert jobs and {j["state"] for j in jobs} == {"COMPLETED"}
    submitted = {s["rule"] for s in records(work / "standin" / "submissions.jsonl")}
    # the model stages, the data, the CRF, its merge and the scoring went through sbatch (each reads every image of
    # a split); only the target rule, which runs nothing, stayed beside Snakemake
    assert submitted == {"prepare_dataset", "pretrain_backbone", "train_classifier", "rs_cams", "pseudo_masks_shard",
                         "merge_pseudo_masks", "eval_pseudo_masks"}
    assert set(planned) - submitted == {TARGET}
    assert GPU_RULES & submitted == {"pretrain_backbone", "train_classifier", "rs_cams"}


@pytest.mark.slow
def test_submissions_carry_each_rules_resources(slurm_run):
    work, planned, _ = slurm_run
    submissions = records(work / "standin" / "submissions.jsonl")
    for sub in submissions:
        rule, opts = sub["rule"], sub["options"]
        res, threads = planned[rule]["resources"], planned[rule]["threads"]
        assert opts["parsable"] and opts["account"] == "test-account", rule
        assert opts["partition"] == ("gpu-test" if rule in GPU_RULES else "cpu-test"), rule
        assert opts["partition"] == res["slurm_partition"]
        memory = ("mem-per-cpu", res["mem_mb_per_cpu"]) if "mem_mb_per_cpu" in res else ("mem", res["mem_mb"])
        assert (memory[0], opts.get(memory[0])) == memory and opts["time"] == res["runtime"], rule
        if rule in GPU_RULES:
            assert opts["gpus"] == "1", rule  # sbatch --gpus=1
            cpus = ("cpus-per-gpu", res["cpus_per_gpu"]) if "cpus_per_gpu" in res else ("cpus-per-task", str(threads))
            assert (cpus[0], opts.get(cpus[0])) == cpus and threads == 8, rule
        else:
            assert "gpus" not in opts and "gres" not in opts, rule
            assert opts["cpus-per-task"] == str(threads) and opts["ntasks"] == "1", rule
    by_rule = {s["rule"]: s["options"] for s in submissions}
    assert by_rule["train_classifier"]["mem-per-cpu"] == "2000" and "mem" not in by_rule["train_classifier"]
    assert by_rule["train_classifier"]["cpus-per-gpu"] == "8" and by_rule["rs_cams"]["cpus-per-task"] == "8"
    assert by_rule["pseudo_masks_shard"]["cpus-per-task"] == "8" and by_rule["prepare_dataset"]["cpus-per-task"] == "1"
    # inside each job the plugin starts one job step; GPU jobs ask it for their GPU
    steps = {s["jobid"]: s["options"] for s in records(work / "standin" / "srun.jsonl")}
    for sub in submissions:
        assert ("--gpus=1" in steps[sub["jobid"]]) == (sub["rule"] in GPU_RULES), sub["rule"]


@pytest.mark.slow
def test_gpu_jobs_are_not_limited_to_one_at_a_time(slurm_run):
    work, _, _ = slurm_run
    jobs = [json.loads(p.read_text()) for p in (work / "standin" / "jobs").glob("*.json")]
    cams = sorted((j for j in jobs if j["rule"] == "rs_cams"), key=lambda j: j["start"])
    assert len(cams) == 2 and cams[1]["start"] < cams[0]["end"]  # both map shards ran side by side


@pytest.mark.slow
def test_a_failing_job_is_reported_failed(slurm_run):
    work, _, _ = slurm_run
    before = len(records(work / "standin" / "submissions.jsonl"))
    # (the target first: --forcerun takes every name after it)
    proc, seconds = run(work, TARGET, "--forcerun", "pseudo_masks_shard", fail_rules="pseudo_masks_shard")
    print(f"\nfailing run: {seconds:.0f} s")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert "Error in rule pseudo_masks_shard" in out and "SLURM status is: 'FAILED'" in out, out[-4000:]
    assert "made to fail by STANDIN_SLURM_FAIL_RULES" in out  # the job's log, shown (show-failed-logs)
    again = records(work / "standin" / "submissions.jsonl")[before:]
    # each of the two shards: submitted, failed, resubmitted once (retries)
    assert [s["rule"] for s in again] == ["pseudo_masks_shard"] * 4
    states = {json.loads((work / "standin" / "jobs" / f"{s['jobid']}.json").read_text())["state"] for s in again}
    assert states == {"FAILED"}

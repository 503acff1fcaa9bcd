"""What each profile resolves to: Snakemake applies profiles/default (the workflow profile) on top of any
`--profile`, key by key, so it must not carry machine settings; profiles/local and profiles/slurm must resolve to
exactly what they declare. Each test prints the resolved settings (`pytest -s` shows them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO, _workdir

PROFILES = REPO / "profiles"
# the <placeholders> of profiles/slurm, filled in for the tests
FILLED = {"<cpu-partition>": "cpu-test", "<gpu-partition>": "gpu-test", "<account>": "test-account"}
GPU_RULES = {"pretrain_backbone", "train_classifier", "rs_cams", "train_segmentation", "predict_segmentation",
             "train_segmentation_upper_bound", "predict_segmentation_upper_bound"}  # fmt: skip
MACHINE_KEYS = {"cores", "jobs", "local-cores", "resources", "default-resources", "set-threads", "set-resources",
                "executor", "max-threads"}  # fmt: skip

# the settings snakemake's own command-line parser makes of the profiles (cwd: a working folder)
RESOLVE = """
import json, sys
from snakemake.cli import parse_args
_, a = parse_args(sys.argv[1:])
raw = lambda r: getattr(r, "raw", r)
plain = lambda m: {k: raw(v) for k, v in (m or {}).items()}
print("RESOLVED " + json.dumps({
    "executor": a.executor, "cores": a.cores, "jobs": a.jobs, "resources": plain(a.resources),
    "set_threads": plain(a.set_threads), "set_resources": {r: plain(m) for r, m in (a.set_resources or {}).items()},
    "default_resources": plain(a.default_resources) if a.default_resources else None,
    "latency_wait": a.latency_wait, "retries": a.retries, "keep_going": a.keep_going,
    "rerun_incomplete": a.rerun_incomplete, "printshellcmds": a.printshellcmds, "show_failed_logs": a.show_failed_logs,
}))
"""


def env(**extra: str) -> dict[str, str]:
    """The caller's environment without profile or SLURM job settings, with the venv first on PATH."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SNAKEMAKE_", "SLURM_", "SBATCH_", "SRUN_"))}
    return {**keep, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1", **extra}


def profile_workdir(tmp_path: Path) -> Path:
    """A working folder like test_workflow's, with profiles/default and profiles/local as they are and
    profiles/slurm with its placeholders filled in (FILLED)."""
    work = _workdir(tmp_path)
    (work / "profiles").mkdir()
    for name in ("default", "local"):
        (work / "profiles" / name).symlink_to(PROFILES / name)
    text = (PROFILES / "slurm" / "config.yaml").read_text()
    for placeholder, value in FILLED.items():
        assert placeholder in text, placeholder
        text = text.replace(placeholder, value)
    assert "<" not in json.dumps(yaml.safe_load(text)), "a placeholder is left"
    (work / "profiles" / "slurm").mkdir()
    (work / "profiles" / "slurm" / "config.yaml").write_text(text)
    return work


def resolve(args: list[str], work: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", RESOLVE, *args], cwd=work, env=env(), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.split("RESOLVED ", 1)[1])


def planned_jobs(args: list[str], work: Path, **extra_env: str) -> dict[str, dict]:
    """Per rule of a dry run: the threads and resources snakemake gives its jobs (all jobs of a rule agree)."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", *args], cwd=work, env=env(**extra_env),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rules: dict[str, dict] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        threads = re.search(r"^    threads: (\d+)$", block, re.M)
        resources = re.search(r"^    resources: (.*)$", block, re.M)
        job = {"threads": int(threads[1]) if threads else 1,
               "resources": dict(kv.split("=", 1) for kv in resources[1].split(", ")) if resources else {}}  # fmt: skip
        job["resources"] = {k: v for k, v in job["resources"].items() if k in ("mem_mb", "runtime", "gpu")
                            or k.startswith(("slurm_", "cpus_", "mem_mb_per"))}  # fmt: skip
        seen = rules.setdefault(head[1], job)
        assert seen == job, (head[1], seen, job)
    return rules


def show(title: str, resolved: dict, jobs: dict[str, dict]) -> None:
    print(f"\n== {title}\n" + json.dumps(resolved, indent=1))
    for rule, job in sorted(jobs.items()):
        print(f"  {rule:22s} threads={job['threads']:<3d} " + " ".join(f"{k}={v}" for k, v in job["resources"].items()))


def test_workflow_profile_holds_only_settings_for_every_machine():
    default = yaml.safe_load((PROFILES / "default" / "config.yaml").read_text())
    assert not MACHINE_KEYS & set(default), "profiles/default is applied on every machine, on top of --profile"
    for name in ("local", "slurm"):
        declared = yaml.safe_load((PROFILES / name / "config.yaml").read_text())
        # a key in both would be overridden by profiles/default: the values must agree
        assert {k: declared[k] for k in set(default) & set(declared)} == {k: default[k] for k in set(default) &
                                                                           set(declared)}, name  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return profile_workdir(tmp_path_factory.mktemp("profiles"))


def test_default_profile_alone(work):
    resolved = resolve([], work)
    jobs = planned_jobs(["--cores", "3"], work)  # no profile sets cores here: the command line does
    show("profiles/default alone (dry run with --cores 3)", resolved, jobs)
    assert resolved["cores"] is None and resolved["jobs"] is None and resolved["executor"] is None
    assert resolved["resources"] == {} and resolved["set_threads"] == {} and resolved["default_resources"] is None
    assert resolved["keep_going"] and resolved["rerun_incomplete"] and resolved["show_failed_logs"]
    # config cpu_threads: the pretraining its pretrain.threads (2 of --cores 3), the other model stages 1 each
    assert {r: jobs[r]["threads"] for r in GPU_RULES} == {r: 2 if r == "pretrain_backbone" else 1 for r in GPU_RULES}
    assert not any("slurm_partition" in j["resources"] for j in jobs.values())


def test_local_profile(work):
    from snakemake.utils import available_cpu_count

    resolved = resolve(["--profile", "profiles/local"], work)
    jobs = planned_jobs(["--profile", "profiles/local"], work)
    show("profiles/local", resolved, jobs)
    cores = available_cpu_count()
    assert resolved["cores"] == cores and resolved["executor"] is None
    assert resolved["resources"] == {"gpu": 1}  # one GPU job at a time
    assert resolved["keep_going"] and resolved["rerun_incomplete"] and resolved["show_failed_logs"]
    assert {r: jobs[r]["threads"] for r in GPU_RULES} == {r: min(2, cores) if r == "pretrain_backbone" else 1
                                                          for r in GPU_RULES}  # fmt: skip
    # a GPU only where the machine has one: on a CPU-only machine the `gpu: 1` limit does not serialise them
    from rpc.utils.gpus import local_gpu_count

    assert all(jobs[r]["resources"]["gpu"] == str(min(1, local_gpu_count())) for r in GPU_RULES)


def test_per_gpu_threads_divide_the_cores_between_the_gpus(work, tmp_path):
    """A local 4-GPU machine (device files stood in by RPC_DEV_DIR), 16 cores: `per_gpu` gives each prediction job
    4 threads, so that four of them, one per GPU, fit the cores side by side; each job asks for one GPU, which the
    GPU-slot wrapper locks for it. The predictions' CRF is a CPU job: no GPU, memory per CRF worker."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for i in range(4):
        (dev / f"nvidia{i}").touch()
    (dev / "nvidiactl").touch()  # not a GPU
    args = ["--profile", "profiles/local", "--cores", "16", "--resources", "gpu=4",
            "--config", "cpu_threads={predict: per_gpu, train: per_gpu}"]
    jobs = planned_jobs(args, work, RPC_DEV_DIR=str(dev))
    for rule in ("predict_segmentation", "train_classifier"):
        assert jobs[rule]["threads"] == 4 and jobs[rule]["resources"]["gpu"] == "1", (rule, jobs[rule])
    assert int(jobs["predict_segmentation"]["resources"]["mem_mb"]) == 8000
    crf = jobs["crf_predictions"]
    assert crf["resources"].get("gpu") in (None, "0") and int(crf["resources"]["mem_mb"]) == 1000 + crf["threads"] * 600
    assert jobs["rs_cams"]["threads"] == 1  # the config's number: untouched
    # without a GPU, per_gpu is every core
    cpu = planned_jobs(["--cores", "3", "--config", "cpu_threads={predict: per_gpu}"], work,
                       RPC_DEV_DIR=str(tmp_path / "none"))  # fmt: skip
    assert cpu["predict_segmentation"]["threads"] == 3


@pytest.mark.parametrize("kind", ["voc", "coco"])
def test_real_configs_share_a_multi_gpu_machine_between_its_gpus(work, tmp_path, realdata, kind):
    """config/voc.yaml and config/coco.yaml on a local 4-GPU machine with 16 cores and no cpu_threads of their own:
    every GPU job takes a quarter of the cores and one GPU, so four of them run side by side."""
    from test_real_configs import _coco_root

    dev = tmp_path / "dev"
    dev.mkdir()
    for i in range(4):
        (dev / f"nvidia{i}").touch()
    root = _coco_root(realdata, tmp_path / "coco") if kind == "coco" else realdata / "voc" / "VOCdevkit" / "VOC2012"
    assert "cpu_threads" not in yaml.safe_load((REPO / "config" / f"{kind}.yaml").read_text())
    jobs = planned_jobs(["--profile", "profiles/local", "--cores", "16", "--resources", "gpu=4", "--configfile",
                         f"config/{kind}.yaml", "--config", f"dataset={{kind: {kind}, root: {root}}}"], work,
                        RPC_DEV_DIR=str(dev))  # fmt: skip
    for rule in GPU_RULES & set(jobs):
        assert jobs[rule]["threads"] == 4 and jobs[rule]["resources"]["gpu"] == "1", (rule, jobs[rule])
    assert {"train_classifier", "rs_cams", "train_segmentation", "predict_segmentation"} <= set(jobs)


def test_slurm_profile_resolves_to_what_it_declares(work):
    declared = yaml.safe_load((work / "profiles" / "slurm" / "config.yaml").read_text())
    resolved = resolve(["--profile", "profiles/slurm"], work)
    jobs = planned_jobs(["--profile", "profiles/slurm"], work)
    show("profiles/slurm (placeholders filled in)", resolved, jobs)
    # the run settings: the profile's, none from profiles/default or the machine
    assert resolved["executor"] == "slurm" and resolved["jobs"] == declared["jobs"]
    assert resolved["cores"] == declared["cores"] and resolved["resources"] == {}  # no global GPU limit
    assert resolved["latency_wait"] == declared["latency-wait"] and resolved["retries"] == declared["retries"]
    assert resolved["set_threads"] == declared["set-threads"] and resolved["show_failed_logs"]
    assert resolved["set_resources"] == declared["set-resources"]
    assert {k: resolved["default_resources"][k] for k in declared["default-resources"]} == declared["default-resources"]
    # per job: set-threads wins over `threads: workflow.cores`, every GPU rule goes to the GPU partition
    assert set(declared["set-threads"]) >= GPU_RULES
    for rule, job in jobs.items():
        res = job["resources"]
        assert res["slurm_account"] == "test-account", rule
        if rule in GPU_RULES:
            assert res["slurm_partition"] == "gpu-test" and res["gpu"] == "1", rule
            assert job["threads"] == declared["set-threads"][rule], rule
            for key, value in declared["set-resources"][rule].items():
                assert res[key] == str(value), (rule, key)
        else:
            assert res["slurm_partition"] == "cpu-test" and "gpu" not in res, rule
        assert job["threads"] < declared["cores"], rule  # nothing falls back to workflow.cores
    assert jobs["train_classifier"]["resources"]["cpus_per_gpu"] == "8"
    # the torchrun rules' memory per CPU: sbatch multiplies it by gpu x cpus_per_gpu
    for rule in ("train_classifier", "train_segmentation", "train_segmentation_upper_bound"):
        assert declared["set-resources"][rule]["mem_mb_per_cpu"] * 8 == 16000, rule
    assert jobs["pseudo_masks_shard"]["threads"] == declared["set-threads"]["pseudo_masks_shard"]
    # the CRF shards' memory follows their workers: the main process and 600 MB per worker (the scale rehearsal)
    assert int(jobs["pseudo_masks_shard"]["resources"]["mem_mb"]) == 1000 + 8 * 600


@pytest.mark.parametrize("kind", ["voc", "coco"])
def test_real_configs_jobs_ask_for_the_time_their_work_needs(work, tmp_path, realdata, kind):
    """config/voc.yaml and config/coco.yaml under profiles/slurm: each scaled job's time limit (sbatch --time) comes
    from its work at the standard split sizes and the measured rates (rpc/utils/job_time.py), none past a day; a
    COCO DeepLab (100k iterations) asks for more than a VOC one (20k)."""
    from test_real_configs import _coco_root

    from rpc.utils import job_time

    root = _coco_root(realdata, tmp_path / "coco") if kind == "coco" else realdata / "voc" / "VOCdevkit" / "VOC2012"
    jobs = planned_jobs(["--profile", "profiles/slurm", "--configfile", f"config/{kind}.yaml", "--config",
                         f"dataset={{kind: {kind}, root: {root}}}"], work)  # fmt: skip
    scaled = ("train_classifier", "rs_cams", "pseudo_masks_shard", "train_segmentation", "predict_segmentation",
              "crf_predictions")  # fmt: skip
    runtime = {r: int(jobs[r]["resources"]["runtime"]) for r in scaled}
    show(f"{kind}: runtime (minutes) per job", {}, {r: jobs[r] for r in scaled})
    iterations = {"voc": 20000, "coco": 100000}[kind]
    deeplab = job_time.work_seconds("deeplab", kind, iterations=iterations)
    assert runtime["train_segmentation"] == job_time.minutes(deeplab)
    assert all(job_time.FLOOR_MIN <= m <= 24 * 60 for m in runtime.values()), runtime
    if kind == "coco":  # 40,137 val images in 16 shards: the 81-class CRF on 8 threads needs more than the floor
        assert runtime["crf_predictions"] > job_time.FLOOR_MIN and runtime["train_segmentation"] > 1000

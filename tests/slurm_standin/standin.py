"""A stand-in for the SLURM commands the Snakemake SLURM executor plugin calls, for tests without a cluster.

The files beside this one (sbatch, squeue, sacct, scancel, srun, sinfo, scontrol, sacctmgr) call
`standin.py <command> ARGS`; a test puts this folder first on PATH. Every job runs on this machine, in the
background, as SLURM would run it. State lives in $STANDIN_SLURM_DIR (not SLURM_*: the plugin drops those
before the job step):

- submissions.jsonl: one JSON line per sbatch call (job id, rule, argv, the parsed options);
- srun.jsonl: one JSON line per srun call (the job step the plugin starts inside the job);
- jobs/<id>.json: the job's state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED), exit code and times;
- counter: the last job id.

Output formats are the ones snakemake_executor_plugin_slurm parses: `sbatch --parsable` prints the job id;
`sacct -X --parsable2 --noheader --format=JobIdRaw,State --name RUN` and `squeue --format=%i|%T --noheader
--name RUN` print `<id>|<STATE>` lines; `sacct -j <id>.<step> --format=Reason` prints the failure reason.

$STANDIN_SLURM_FAIL_RULES (comma-separated rule names, read at submission) makes the jobs of those rules exit 1
before running anything, like a job that dies on its node. $STANDIN_SLURM_ACCOUNTS (comma-separated, default
`standin`) are the accounts sacctmgr lists for the user; $STANDIN_SLURM_PARTITIONS those sinfo lists.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

# per command: options without a value, and short options -> long names
SBATCH = (
    {"--parsable", "--requeue", "--no-requeue"},
    {
        "-A": "account",
        "-p": "partition",
        "-t": "time",
        "-D": "chdir",
        "-C": "constraint",
        "-c": "cpus-per-task",
        "-n": "ntasks",
        "-N": "nodes",
        "-J": "job-name",
        "-o": "output",
        "-e": "error",
    },
)
SACCT = (
    {"-X", "--allocations", "-n", "--noheader", "-P", "--parsable2"},
    {"-n": "noheader", "-X": "allocations", "-P": "parsable2", "-j": "jobs", "-o": "format", "-u": "user"},
)
SQUEUE = ({"-h", "--noheader"}, {"-h": "noheader", "-o": "format", "-t": "states", "-n": "name", "-j": "jobs"})
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def state_dir() -> Path:
    root = os.environ.get("STANDIN_SLURM_DIR")
    if not root:
        sys.exit("slurm stand-in: STANDIN_SLURM_DIR is not set")
    path = Path(root)
    (path / "jobs").mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def locked(root: Path):
    with open(root / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_job(root: Path, jobid: str) -> dict | None:
    path = root / "jobs" / f"{jobid}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def parse_options(argv: list[str], spec: tuple[set[str], dict[str, str]]) -> tuple[dict, list[str]]:
    """`--key=value`, `--key value`, `-k value`, `-kvalue` and bare flags -> ({long name: value}, positionals)."""
    (flags, short), options, positional, i = spec, {}, [], 0
    while i < len(argv):
        token = argv[i]
        if token in flags:
            options[short.get(token, token.lstrip("-"))] = True
        elif token.startswith("--") and "=" in token:
            key, value = token[2:].split("=", 1)
            options[key] = value
        elif token.startswith("--"):
            i += 1
            options[token[2:]] = argv[i]
        elif token.startswith("-") and len(token) == 2:
            i += 1
            options[short.get(token, token[1:])] = argv[i]
        elif token.startswith("-") and len(token) > 2:
            options[short.get(token[:2], token[1:2])] = token[2:]
        else:
            positional.append(token)
        i += 1
    return options, positional


def rule_of(comment: str) -> str:
    """The plugin's job comment: `rule_<name>` or `rule_<name>_wildcards_<values>`."""
    return comment.removeprefix("rule_").split("_wildcards_")[0]


def sbatch(argv: list[str]) -> int:
    root = state_dir()
    options, positional = parse_options(argv, SBATCH)
    script = None
    if "wrap" not in options:  # a script path (the plugin's pass-command-as-script mode feeds /dev/stdin)
        script = sys.stdin.read() if not positional or positional[0] in ("-", "/dev/stdin") else None
        if script is None:
            script = Path(positional[0]).read_text()
    comment = str(options.get("comment", ""))
    rule = rule_of(comment)
    fail = rule in {r.strip() for r in os.environ.get("STANDIN_SLURM_FAIL_RULES", "").split(",") if r.strip()}
    with locked(root):
        counter = root / "counter"
        jobid = str(int(counter.read_text()) + 1 if counter.is_file() else 1001)
        counter.write_text(jobid)
        job = {
            "jobid": jobid,
            "name": options.get("job-name", ""),
            "comment": comment,
            "rule": rule,
            "partition": options.get("partition", ""),
            "account": options.get("account", ""),
            "state": "PENDING",
            "exit_code": "0:0",
            "submit": time.time(),
            "start": None,
            "end": None,
            "pid": None,
            "fail": fail,
        }
        write_json(root / "jobs" / f"{jobid}.json", job)
        with open(root / "submissions.jsonl", "a") as log:
            log.write(json.dumps({"jobid": jobid, "rule": rule, "argv": argv, "options": options}) + "\n")
    workdir = Path(options.get("chdir", os.getcwd()))
    output = str(options.get("output", workdir / "slurm-%j.out")).replace("%j", jobid)
    output = output.replace("%A", jobid).replace("%a", "0")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SLURM_JOB_ID": jobid,
        "SLURM_JOBID": jobid,
        "SLURM_JOB_NAME": job["name"],
        "SLURM_JOB_PARTITION": str(job["partition"]),
        "SLURM_JOB_ACCOUNT": str(job["account"]),
        "SLURM_SUBMIT_DIR": os.getcwd(),
        "SLURM_NTASKS": str(options.get("ntasks", 1)),
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODELIST": "localhost",
    }
    for option, var in (
        ("cpus-per-task", "SLURM_CPUS_PER_TASK"),
        ("cpus-per-gpu", "SLURM_CPUS_PER_GPU"),
        ("gpus", "SLURM_GPUS"),
        ("mem", "SLURM_MEM_PER_NODE"),
    ):
        if option in options:
            env[var] = str(options[option])
    command = ["/bin/sh", "-c", options["wrap"]] if script is None else ["/bin/sh", "-c", script]
    with open(output, "ab") as out:
        subprocess.Popen(
            [sys.executable, __file__, "_run", jobid, json.dumps(command)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    print(jobid if options.get("parsable") else f"Submitted batch job {jobid}")
    return 0


def run_job(jobid: str, command_json: str) -> int:
    """The job itself (started in the background by sbatch): run the batch script, record the outcome."""
    root = state_dir()
    with locked(root):
        job = read_job(root, jobid)
        if job["state"] == "CANCELLED":
            return 1
        job.update(state="RUNNING", start=time.time(), pid=os.getpid())
        write_json(root / "jobs" / f"{jobid}.json", job)
    if job["fail"]:
        print(f"slurm stand-in: job {jobid} (rule {job['rule']}) made to fail by STANDIN_SLURM_FAIL_RULES", flush=True)
        code = 1
    else:
        code = subprocess.call(json.loads(command_json))
    with locked(root):
        job = read_job(root, jobid)
        if job["state"] != "CANCELLED":
            job.update(state="COMPLETED" if code == 0 else "FAILED", exit_code=f"{code}:0", end=time.time())
            write_json(root / "jobs" / f"{jobid}.json", job)
    return code


def all_jobs(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "jobs").glob("*.json"))]


FIELDS = {
    "jobidraw": "jobid",
    "jobid": "jobid",
    "state": "state",
    "jobname": "name",
    "partition": "partition",
    "account": "account",
    "exitcode": "exit_code",
    "comment": "comment",
}


def sacct(argv: list[str]) -> int:
    root = state_dir()
    options, _ = parse_options(argv, SACCT)
    fields = [f.split("%")[0].strip().lower() for f in str(options.get("format", "JobID,State")).split(",")]
    rows = []
    if "jobs" in options:
        for ref in str(options["jobs"]).split(","):
            jobid, _, step = ref.partition(".")
            job = read_job(root, jobid)
            if job is None or (step and step != "0"):  # one step (0) per job
                continue
            rows.append(
                {
                    **job,
                    "jobid": ref,
                    "reason": "NonZeroExitCode" if job["state"] == "FAILED" else "None",
                    "nodelist": "localhost",
                }
            )
    else:
        name = options.get("name")
        rows = [
            {**j, "reason": "None", "nodelist": "localhost"}
            for j in all_jobs(root)
            if name is None or j["name"] == name
        ]
    separator = "|" if options.get("parsable2") else " "
    if not options.get("noheader"):
        print(separator.join(fields))
    for row in rows:
        print(separator.join(str(row.get(FIELDS.get(f, f), "")) for f in fields))
    return 0


def squeue(argv: list[str]) -> int:
    root = state_dir()
    options, _ = parse_options(argv, SQUEUE)
    fmt = str(options.get("format", "%i|%j|%T"))
    states = str(options.get("states", "")).lower()
    name = options.get("name")
    if not options.get("noheader"):
        print(fmt.replace("%i", "JOBID").replace("%T", "STATE").replace("%j", "NAME").replace("%P", "PARTITION"))
    for job in all_jobs(root):
        if (name is not None and job["name"] != name) or (states != "all" and job["state"] in FINAL):
            continue
        line = fmt.replace("%i", job["jobid"]).replace("%T", job["state"]).replace("%j", job["name"])
        print(line.replace("%P", str(job["partition"])))
    return 0


def scancel(argv: list[str]) -> int:
    root = state_dir()
    _, jobids = parse_options(argv, ({"--quiet", "-Q"}, {}))
    for jobid in jobids:
        with locked(root):
            job = read_job(root, jobid)
            if job is None or job["state"] in FINAL:
                continue
            job.update(state="CANCELLED", exit_code="0:15", end=time.time())
            write_json(root / "jobs" / f"{jobid}.json", job)
        if job["pid"]:
            try:
                os.killpg(job["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
    return 0


def srun(argv: list[str]) -> int:
    """A job step inside a stand-in job: record the step's options, then run its command in place."""
    takes_value = {"-n", "-c", "-N", "-J", "-p", "-A", "-t", "--ntasks", "--cpus-per-task", "--nodes", "--gpus"}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in takes_value else 1
    options, command = argv[:i], argv[i:]
    with locked(state_dir()), open(state_dir() / "srun.jsonl", "a") as log:
        log.write(json.dumps({"jobid": os.environ.get("SLURM_JOB_ID"), "options": options, "command": command}) + "\n")
    os.execvp(command[0], command)


def sinfo(argv: list[str]) -> int:
    print("PARTITION")
    for partition in os.environ.get("STANDIN_SLURM_PARTITIONS", "cpu,gpu").split(","):
        print(partition)
    return 0


def scontrol(argv: list[str]) -> int:
    if argv[:2] == ["show", "config"]:
        print("MaxArraySize            = 1001\nMinJobAge               = 300 sec")
    return 0


def sacctmgr(argv: list[str]) -> int:
    for account in os.environ.get("STANDIN_SLURM_ACCOUNTS", "standin").split(","):
        print(f"  {account}")
    return 0


COMMANDS = {
    "sbatch": sbatch,
    "sacct": sacct,
    "squeue": squeue,
    "scancel": scancel,
    "srun": srun,
    "sinfo": sinfo,
    "scontrol": scontrol,
    "sacctmgr": sacctmgr,
}

if __name__ == "__main__":
    if sys.argv[1] == "_run":
        sys.exit(run_job(sys.argv[2], sys.argv[3]))
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))

"""Where a workflow run's time went: wall time and job-seconds per rule, from Snakemake's log of the run.

    snakemake --cores all > run.log 2>&1
    python -m benchmarks.workflow_times run.log --name make_run_amx   ->  benchmarks/out/workflow_<name>.json

Job-seconds add up the jobs of a rule (jobs that ran side by side both count), so their sum can exceed the wall
time; a rule's share of the wall time is what its jobs cost the critical path at most.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path

from benchmarks.common import write_result

STAMP = r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]"


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%a %b %d %H:%M:%S %Y")


def rule_times(log: str) -> dict:
    """``{"wall_s", "jobs", "rules": {rule: {"jobs", "job_s"}}}`` of one Snakemake log."""
    starts = {
        m[4]: (_time(m[1]), m[2]) for m in re.finditer(STAMP + r"\n(?:local)?rule (\w+):(.*?)jobid: (\d+)", log, re.S)
    }
    ends = {m[2]: _time(m[1]) for m in re.finditer(STAMP + r"\nFinished jobid: (\d+)", log)}
    rules: dict[str, dict] = {}
    for job, (start, rule) in starts.items():
        if job in ends:
            r = rules.setdefault(rule, {"jobs": 0, "job_s": 0})
            r["jobs"] += 1
            r["job_s"] += int((ends[job] - start).total_seconds())
    times = [t for t, _ in starts.values()] + list(ends.values())
    wall = int((max(times) - min(times)).total_seconds()) if times else 0
    return {"wall_s": wall, "jobs": sum(r["jobs"] for r in rules.values()),
            "rules": dict(sorted(rules.items(), key=lambda kv: -kv[1]["job_s"]))}  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("log", help="Snakemake's output of the run")
    ap.add_argument("--name", required=True)
    ap.add_argument("--note", default="", help="what the run was (config, machine limits)")
    a = ap.parse_args(argv)
    result = rule_times(Path(a.log).read_text())
    print(result)
    write_result(f"workflow_{a.name}", {"note": a.note, **result})


if __name__ == "__main__":
    main()

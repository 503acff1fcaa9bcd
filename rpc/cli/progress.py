"""Watching a run: ``python -m rpc progress`` prints what each running job of the workflow is doing."""

from __future__ import annotations

import time

from rpc.cli.common import add_command


def _progress_parser(sub) -> None:
    s = add_command(sub, "progress", "what each running job is doing (step or image of N, time left), from logs/",
                    _progress, "Run it in the folder where snakemake runs (it reads logs/**/*.log written to "
                    "recently); --watch repeats it.")  # fmt: skip
    s.add_argument("--logs", default="logs", help="the workflow's log folder (default: logs)")
    s.add_argument("--within", type=float, default=10.0, metavar="MINUTES",
                   help="logs written to in the last MINUTES count as running (default: 10)")
    s.add_argument("--watch", type=float, metavar="SECONDS", help="repeat every SECONDS until interrupted")


def _progress(a):
    from pathlib import Path

    from rpc.utils.job_progress import running_jobs

    while True:
        jobs = running_jobs(a.logs, a.within * 60)
        stamp = time.strftime("%H:%M:%S")
        if not jobs:
            print(f"{stamp} no log under {a.logs}/ written to in the last {a.within:g} minutes", flush=True)
        for job in jobs:
            print(f"{stamp} {job.line(Path(a.logs))}", flush=True)
        if not a.watch:
            return
        time.sleep(a.watch)


COMMANDS = [_progress_parser]

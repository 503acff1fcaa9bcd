"""What the running jobs of a workflow are doing, from their logs: the last progress line of each log under
``logs/`` written to recently (``python -m rpc progress``).

Every long stage writes a progress bar to its log (``desc: 71%|...| 340/480 [03:15<01:20, 1.74it/s]``, one line
at least every 30 seconds in a log file) and its trainers a metrics line per ``log_interval`` steps
(``step=340 epoch=4 ... total=0.77``); a log whose last bar is complete, or that ends in an error, is reported
as such.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

# tqdm's default bar: "<desc>: <pct>%|<bar>| <n>/<total> [<elapsed><<eta>, <rate>]"
_BAR = re.compile(r"(?:(?P<desc>[^\r\n|]*?): )?\s*(?P<pct>\d+)%\|[^|]*\| (?P<n>\d+)/(?P<total>\d+) "
                  r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+)")  # fmt: skip
_METRICS = re.compile(r"(?:^|[\r\n])\s*(step=\d+ [^\r\n]*)")
TAIL_BYTES = 16384


@dataclass
class JobProgress:
    log: Path
    age_s: float  # since the log was last written
    what: str  # "train 340/480 (71 %), elapsed 03:15, left 01:20", or the log's last line

    def line(self, root: Path) -> str:
        name = self.log.relative_to(root) if self.log.is_relative_to(root) else self.log
        return f"{name}: {self.what} (log written {self.age_s:.0f} s ago)"


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - TAIL_BYTES))
        return f.read().decode("utf-8", "replace")


def describe(text: str) -> str:
    """The state a log's tail shows: ``finished: <result>`` if it ends in the stage's JSON result line, else its
    last progress bar (with the last metrics line), else its last non-empty line."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]", text) if ln.strip()]
    if lines and lines[-1].startswith("{"):  # the stage's one-line JSON result: it has finished
        return f"finished: {lines[-1][:160]}"
    bars = list(_BAR.finditer(text))
    if bars:
        m = bars[-1]
        desc = (m["desc"] or "").strip() or "progress"
        what = f"{desc} {m['n']}/{m['total']} ({m['pct']} %), elapsed {m['elapsed']}, left {m['eta']}"
        metrics = _METRICS.findall(text)
        return what + (f"; {metrics[-1]}" if metrics else "")
    return lines[-1][:200] if lines else "(empty)"


def running_jobs(logs: str | os.PathLike = "logs", within_s: float = 600.0) -> list[JobProgress]:
    """Every ``*.log`` under ``logs`` written to in the last ``within_s`` seconds, most recent first."""
    root = Path(logs)
    if not root.is_dir():
        return []
    now = time.time()
    found = []
    for path in root.rglob("*.log"):
        age = now - path.stat().st_mtime
        if age <= within_s:
            found.append(JobProgress(path, age, describe(_tail(path))))
    return sorted(found, key=lambda j: j.age_s)

"""``python -m rpc progress``: the running jobs' state read from their logs."""

import os
import time

from rpc.cli import main
from rpc.utils.job_progress import describe, running_jobs

TRAIN_LOG = (
    "2026-01-01 INFO rpc.engine.train: work folder work/rpc-s15/classifier\n"
    "\rtrain:  69%|######9   | 330/480 [03:10<01:26,  1.74it/s]\r                    \r"
    "step=330 epoch=4 cls=0.06989 total=0.33627 images_per_s=13.85 lr=0.0176\n"
    "\rtrain:  71%|#######   | 340/480 [03:15<01:20,  1.74it/s]"
)


def test_describe_reads_the_last_bar_and_metrics():
    assert describe(TRAIN_LOG) == ("train 340/480 (71 %), elapsed 03:15, left 01:20; step=330 epoch=4 cls=0.06989 "
                                   "total=0.33627 images_per_s=13.85 lr=0.0176")  # fmt: skip
    assert describe(TRAIN_LOG + '\n{"step": 480, "total": 0.2}\n').startswith('finished: {"step": 480')
    assert describe("maps shard 0:  10%|#  | 8/80 [00:12<01:48,  0.66it/s]") == \
        "maps shard 0 8/80 (10 %), elapsed 00:12, left 01:48"
    assert describe("Traceback (most recent call last):\nValueError: boom\n") == "ValueError: boom"


def test_running_jobs_are_the_recent_logs(tmp_path, capsys):
    logs = tmp_path / "logs"
    (logs / "rpc-s15").mkdir(parents=True)
    (logs / "rpc-s15" / "train_classifier.log").write_text(TRAIN_LOG)
    old = logs / "cam-s15.log"
    old.write_text("done long ago\n")
    past = time.time() - 3600
    os.utime(old, (past, past))
    jobs = running_jobs(logs, within_s=600)
    assert [j.log.name for j in jobs] == ["train_classifier.log"]
    assert main(["progress", "--logs", str(logs)]) == 0
    out = capsys.readouterr().out
    assert "rpc-s15/train_classifier.log: train 340/480 (71 %)" in out and "cam-s15" not in out


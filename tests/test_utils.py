"""Small shared helpers: gathering shard folders, precision choice, file permissions."""

import json
import math
import os
import shutil
import stat
import time
from pathlib import Path

import pytest
import torch

from rpc.utils.io import DataError
from rpc.utils.merge import merge_dirs
from rpc.utils.progress import ImageProgress

REPO = Path(__file__).resolve().parents[1]


def test_merge_dirs_links_every_file_and_refuses_clashes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x.png").write_bytes(b"1")
    (b / "y.png").write_bytes(b"2")
    (b / ".tmp.png").write_bytes(b"partial")  # temporary files of a killed job are not gathered
    assert merge_dirs([a, b], tmp_path / "m") == 2
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["x.png", "y.png"]
    assert (tmp_path / "m" / "x.png").stat().st_ino == (a / "x.png").stat().st_ino  # a hard link, not a copy
    (b / "x.png").write_bytes(b"3")
    with pytest.raises(DataError, match="x.png: the same file name is in another input folder"):
        merge_dirs([a, b], tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["x.png", "y.png"]  # the old result survives


def _fake_step(seconds: dict, calls: list):
    """A step that takes ``seconds[bf16]`` and records its calls."""

    def step(bf16: bool) -> None:
        calls.append(bf16)
        time.sleep(seconds[bf16])

    return step


def test_amp_auto_is_measured_and_cached(tmp_path, monkeypatch):
    """auto picks the faster precision by timing the stage's own step, once per workload and machine."""
    from rpc.utils import precision

    monkeypatch.setenv("RPC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    cpu = torch.device("cpu")
    calls = []
    assert precision.decide_bf16("auto", cpu, {"w": 1}, _fake_step({False: 0.05, True: 0.01}, calls))
    assert calls.count(True) == calls.count(False) == 4  # one warm-up + 3 each
    cached = json.loads((tmp_path / "precision.json").read_text())
    (entry,) = cached.values()
    assert entry["choice"] and entry["bf16_s"] < entry["fp32_s"] and entry["key"]["workload"] == {"w": 1}
    calls.clear()  # the same workload again: the cached answer, nothing timed
    assert precision.decide_bf16("auto", cpu, {"w": 1}, _fake_step({False: 0.05, True: 0.01}, calls))
    assert calls == []
    # another workload where bf16 is slower (AVX-512 BF16 without AMX): fp32, and within 10 % counts as slower
    assert not precision.decide_bf16("auto", cpu, {"w": 2}, _fake_step({False: 0.01, True: 0.05}, calls))
    assert not precision.decide_bf16("auto", cpu, {"w": 3}, _fake_step({False: 0.20, True: 0.19}, []))  # jitter << 10 %
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # a limited ISA is another machine: re-timed
    calls.clear()
    precision.decide_bf16("auto", cpu, {"w": 1}, _fake_step({False: 0.01, True: 0.02}, calls))
    assert calls and len(json.loads((tmp_path / "precision.json").read_text())) == 4
    # explicit settings are never timed; without native bf16 auto is fp32 untimed
    assert precision.decide_bf16("bf16", cpu, {}, None) and not precision.decide_bf16("none", cpu, {}, None)
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert not precision.decide_bf16("auto", cpu, {"w": 9}, None)
    with pytest.raises(ValueError, match="auto, bf16 or none"):
        precision.decide_bf16("fp16", cpu, {}, None)


def test_precision_and_layout_decisions(tmp_path, monkeypatch):
    """fp32's layout by timing (cached, like amp), bf16 in channels-last compared with fp32 in the chosen layout;
    fixed layouts and forced bf16 time no layout; a GPU takes channels-last untimed."""
    from rpc.utils import precision

    monkeypatch.setenv("RPC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    cpu = torch.device("cpu")

    def fake(seconds: dict, calls: list):  # seconds[(bf16, channels_last)]
        def step(bf16: bool, channels_last: bool) -> None:
            calls.append((bf16, channels_last))
            time.sleep(seconds[bf16, channels_last])

        return step

    calls = []  # channels-last faster in fp32, bf16 faster still
    decide = precision.decide_precision_and_layout
    timing = {(False, False): 0.04, (False, True): 0.02, (True, True): 0.01}
    assert decide("auto", cpu, {"w": 1}, fake(timing, calls)) == (True, True)
    assert set(calls) == {(False, False), (False, True), (True, True)}  # fp32 timed in the chosen layout
    calls.clear()
    assert decide("auto", cpu, {"w": 1}, fake(timing, calls)) == (True, True) and calls == []  # cached
    # default layout faster in fp32 and bf16 not faster than that: fp32 in the default layout
    timing = {(False, False): 0.01, (False, True): 0.03, (True, True): 0.02}
    assert decide("auto", cpu, {"w": 2}, fake(timing, calls)) == (False, False)
    assert (False, True) in calls and (True, False) not in calls
    calls.clear()  # explicit fp32: the layout is still timed
    assert decide("none", cpu, {"w": 3}, fake(timing, calls)) == (False, False) and calls
    calls.clear()  # forced bf16: channels-last, nothing timed
    assert decide("bf16", cpu, {"w": 4}, fake(timing, calls)) == (True, True) and calls == []
    # a fixed layout: the bf16 timing uses it, no layout timing
    assert decide("auto", cpu, {"w": 6}, fake({(False, False): 0.04, (True, False): 0.01}, calls), "off") == (
        True, False)  # fmt: skip
    assert precision.decide_channels_last(torch.device("cuda"), {"w": 7}, None)  # GPU: untimed
    with pytest.raises(ValueError, match="auto, on or off"):
        decide("auto", cpu, {}, None, "yes")


def test_amp_auto_measures_and_continues_when_the_cache_cannot_be_written(tmp_path, monkeypatch, logs):
    from rpc.utils import precision

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RPC_CACHE_DIR", str(blocker / "cache"))  # cannot be created: a file is in the way
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    calls = []
    assert precision.decide_bf16("auto", torch.device("cpu"), {"w": 1}, _fake_step({False: 0.05, True: 0.01}, calls))
    assert calls and "not cached" in logs.read()
    monkeypatch.delenv("RPC_CACHE_DIR")
    monkeypatch.setattr(precision.Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no"))))
    assert precision.cache_path() is None  # no home folder: measured every time, never a crash
    assert precision.decide_bf16("auto", torch.device("cpu"), {"w": 2}, _fake_step({False: 0.05, True: 0.01}, []))


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    """Results on a shared cluster: readable by the group like any file, not tempfile's private 0600 / 0700."""
    from rpc.utils.checkpoint_file import save_checkpoint
    from rpc.utils.io import write_text_atomic

    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "summary.md", "x")
        save_checkpoint(tmp_path / "classifier.pt", {"w": torch.zeros(1)})
        (tmp_path / "shard").mkdir()
        write_text_atomic(tmp_path / "shard" / "a.png", "x")
        merge_dirs([tmp_path / "shard"], tmp_path / "merged")
    finally:
        os.umask(old)
    for name, mode in (("summary.md", 0o666), ("classifier.pt", 0o666), ("merged", 0o777)):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode & ~umask, name


def test_local_gpu_count_reads_the_device_files(tmp_path):
    from rpc.utils.gpus import local_gpu_count

    assert local_gpu_count(tmp_path) == 0
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):  # control devices are not GPUs
        (tmp_path / name).touch()
    assert local_gpu_count(tmp_path) == 2


def test_image_progress_counts_what_was_left_and_times_only_the_work():
    progress = ImageProgress(["a", "b", "c", "d"], lambda n: n in ("b", "d"), "test")
    assert progress.todo == ["a", "c"]
    time.sleep(0.5)  # before the work: not counted
    with progress:
        time.sleep(0.05)
        progress.update(2)
    result = progress.result(crf_s=1.5)
    assert result["images"] == 2 and result["skipped"] == 2 and result["crf_s"] == 1.5
    assert 0.05 <= result["wall_s"] < 0.5
    assert result["images_per_s"] == pytest.approx(2 / result["wall_s"])
    with ImageProgress(["a"], lambda n: True, "test") as nothing:
        pass
    assert nothing.result()["images"] == 0 and math.isnan(nothing.result()["images_per_s"])


def test_split_lists_refuse_duplicates_and_path_like_ids(tmp_path):
    from rpc.utils.io import read_list

    good = tmp_path / "good.txt"
    good.write_text("# comment\na\n\nb\n")
    assert read_list(good) == ["a", "b"]
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("a\nb extra-column\n")
    with pytest.raises(DataError, match=r"spaced.txt:2: 'b extra-column' is not one image id"):
        read_list(spaced)
    dup = tmp_path / "dup.txt"
    dup.write_text("a\nb\na\n")
    with pytest.raises(DataError, match=r"dup.txt: image id 'a' listed twice \(lines 1 and 3\)"):
        read_list(dup)
    for bad in ("../x", "sub/x", "..", "a\\b"):
        path = tmp_path / "bad.txt"
        path.write_text(f"ok\n{bad}\n")
        with pytest.raises(DataError, match=r"bad.txt:2: image id .* is not a plain file name"):
            read_list(path)


def test_duplicate_seeds_are_refused_by_the_config_schema():
    import jsonschema
    import yaml

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    base = {"dataset": {"kind": "synthetic"}, "experiments": {"rpc": {"preset": "rpc"}}}
    jsonschema.validate({**base, "seeds": [15, 16]}, schema)
    for bad in ({**base, "seeds": [15, 15]}, {**base, "experiments": {"rpc": {"preset": "rpc", "seeds": [3, 3]}}}):
        with pytest.raises(jsonschema.ValidationError, match="non-unique|has non-unique"):
            jsonschema.validate(bad, schema)


def test_per_stage_outputs_without_a_work_folder_are_claimed_for_their_settings(tmp_path):
    """Without --work, a stage writes into its output folder: reused only for the same settings; another setting
    (or an unrecorded folder) is refused by name, and nothing in it is deleted."""
    from rpc.utils.workdir import OUTPUT_RECORD, staged_outputs

    out = tmp_path / "masks"
    with staged_outputs({"masks": out}, None, {"crf": {"iterations": 10}}) as folders:
        (folders["masks"] / "a.png").write_bytes(b"1")
    with staged_outputs({"masks": out}, None, {"crf": {"iterations": 10}}) as folders:  # same settings: resumes
        assert (folders["masks"] / "a.png").is_file()
    with pytest.raises(DataError, match=r"masks: holds files made with other settings"):
        with staged_outputs({"masks": out}, None, {"crf": {"iterations": 5}}):
            pass
    (out / OUTPUT_RECORD).unlink()
    with pytest.raises(DataError, match="settings it does not record"):
        with staged_outputs({"masks": out}, None, {"crf": {"iterations": 10}}):
            pass
    assert (out / "a.png").read_bytes() == b"1"


def test_synthetic_data_into_a_folder_of_another_spec_is_refused(tmp_path):
    from rpc.data.synthetic import SyntheticSpec, generate_dataset

    generate_dataset(SyntheticSpec(n_train=2, n_train_eval=1, n_val=1, size=64), tmp_path)
    generate_dataset(SyntheticSpec(n_train=2, n_train_eval=1, n_val=1, size=64), tmp_path)  # same: fine
    with pytest.raises(DataError, match="other settings"):
        generate_dataset(SyntheticSpec(n_train=2, n_train_eval=1, n_val=1, size=96), tmp_path)


def test_provenance_records_merge_across_shards_and_folders(tmp_path):
    from rpc.utils.merge import merge_dirs
    from rpc.utils.provenance import RECORD, provenance, read_records, summary_line, write_record

    entry = provenance(torch.device("cpu"), True)
    assert entry["precision"] == "bf16" and entry["threads"] == torch.get_num_threads() and entry["torch"]
    a, b = tmp_path / "a", tmp_path / "b"
    write_record(a, {"classifier": entry, "maps": entry})
    write_record(b, {"classifier": entry, "maps": {**entry, "precision": "fp32"}})  # a shard that ran in fp32
    (a / "x.png").write_bytes(b"1")
    (b / "y.png").write_bytes(b"2")
    merged = read_records([a, b])
    assert merged["classifier"] == entry and [e["precision"] for e in merged["maps"]] == ["bf16", "fp32"]
    assert merge_dirs([a, b], tmp_path / "m") == 2  # the records are not files to merge ...
    assert json.loads((tmp_path / "m" / RECORD).read_text()) == merged  # ... but travel with the merged folder
    line = summary_line(merged)
    assert line.startswith("classifier bf16 x") and "maps bf16" in line and "maps fp32" in line
    assert read_records([tmp_path / "nothing"]) == {} and summary_line({}) == "-"


_HOLDER = """
import os, subprocess, sys, time
from rpc.utils.snakemake_lock import write_holder_record
write_holder_record(sys.argv[1])  # what the workflow's onstart hook does, in the Snakemake process
if len(sys.argv) > 2:  # a job of this run, in its own session (it outlives a kill -9 of this process)
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=sys.argv[1], start_new_session=True)
    print(flush=True)
time.sleep(60)
"""


def _locked_folder(folder):
    locks = folder / ".snakemake" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "0.input.lock").write_text("x")
    return locks


def _start_holder(folder, *extra, prefix=()):
    """A stand-in Snakemake process that records itself as the lock's holder (and starts a job, given ``job``)."""
    import subprocess
    import sys

    proc = subprocess.Popen([*prefix, sys.executable, "-c", _HOLDER, str(folder), *extra], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    record = folder / ".snakemake" / "rpc-lock-holder.json"
    for _ in range(300):
        if record.is_file() and (not extra or proc.stdout.readline()):
            return proc
        time.sleep(0.05)
    raise AssertionError("the stand-in holder never wrote its record")


def _job_pids(folder):
    from rpc.utils.snakemake_lock import working_processes

    return working_processes(folder, 0)


def test_unlock_stale_removes_only_a_lock_nobody_holds(tmp_path):
    from rpc.utils.snakemake_lock import unlock_if_stale

    assert unlock_if_stale(tmp_path) == "no lock"
    locks = _locked_folder(tmp_path)
    # a lock without a record (plain Snakemake without the workflow's hook): kept, and the command is said
    assert unlock_if_stale(tmp_path).endswith("type: snakemake --unlock") and locks.is_dir()
    live = _start_holder(tmp_path)
    try:
        assert "still running: not touched" in unlock_if_stale(tmp_path) and locks.is_dir()
    finally:
        live.kill()
        live.wait()
    assert unlock_if_stale(tmp_path).startswith("removed a stale lock") and not locks.exists()


def test_unlock_stale_keeps_the_lock_while_jobs_of_a_killed_run_still_run(tmp_path):
    """After ``kill -9`` of Snakemake its jobs go on (re-parented); the lock stays until they end."""
    import signal

    from rpc.utils.snakemake_lock import unlock_if_stale

    locks = _locked_folder(tmp_path)
    holder = _start_holder(tmp_path, "job")
    holder.kill()
    holder.wait()
    jobs = _job_pids(tmp_path)
    try:
        assert len(jobs) == 1
        message = unlock_if_stale(tmp_path)
        assert f"processes {jobs} still work in this folder" in message and locks.is_dir()
    finally:
        for pid in jobs:
            os.kill(pid, signal.SIGKILL)
    for _ in range(100):  # the orphan is reaped by init
        if not _job_pids(tmp_path):
            break
        time.sleep(0.05)
    assert unlock_if_stale(tmp_path).startswith("removed a stale lock") and not locks.exists()


def test_unlock_stale_ignores_its_own_pipeline_partners(tmp_path):
    """``rpc unlock-stale | tail`` in the run folder: ``tail`` started after the holder and works in the folder,
    but it is this command's partner (same process group), not a job of the killed run."""
    import subprocess
    import sys

    locks = _locked_folder(tmp_path)
    holder = _start_holder(tmp_path)
    holder.kill()
    holder.wait()
    out = subprocess.run(f"{sys.executable} -m rpc unlock-stale | cat", shell=True, cwd=tmp_path, text=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)  # fmt: skip
    assert "removed a stale lock" in out.stdout and not locks.exists()


def test_unlock_stale_refuses_a_lock_folder_that_is_a_link(tmp_path, capsys):
    """``.snakemake/locks`` linked elsewhere: one line naming it (exit status 2), and nothing is removed."""
    from rpc.cli import main

    elsewhere = _locked_folder(tmp_path / "elsewhere")
    (tmp_path / "run" / ".snakemake").mkdir(parents=True)
    locks = tmp_path / "run" / ".snakemake" / "locks"
    locks.symlink_to(elsewhere)
    assert main(["unlock-stale", "--dir", str(tmp_path / "run")]) == 2
    captured = capsys.readouterr()
    assert not captured.out and captured.err == (
        f"error: {locks} is a symbolic link (to {elsewhere}), not touched: Snakemake's lock folder must be a real "
        "folder; remove the link once no run uses it\n"
    )
    assert locks.is_symlink() and (elsewhere / "0.input.lock").read_text() == "x"


def _shared_folder():
    """A folder every user can write (pytest's own tmp folders are private to root)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="rpc-lock-"))
    folder.chmod(0o777)
    (folder / ".snakemake").mkdir(mode=0o777)
    (folder / ".snakemake").chmod(0o777)
    return folder


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unlock_stale_keeps_the_lock_of_another_users_live_run():
    """(a) Another user's Snakemake: its working folder cannot be read by this user; the lock is kept."""
    import subprocess
    import sys

    folder = _shared_folder()
    locks = _locked_folder(folder)
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    live = _start_holder(folder, prefix=drop)
    try:
        other = ["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups"]
        proc = subprocess.run([*other, sys.executable, "-m", "rpc", "unlock-stale", "--dir", str(folder)],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                              timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "of user id 65534" in proc.stdout and "lock kept" in proc.stdout and locks.is_dir()
    finally:
        live.kill()
        live.wait()
        shutil.rmtree(folder)


def test_unlock_stale_keeps_the_lock_seen_from_another_pid_namespace(tmp_path):
    """(b) A run seen from another PID namespace (a container; another host on a shared filesystem is the same case
    by host name): its PID means nothing there; the lock is kept."""
    import subprocess
    import sys

    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare --pid is not permitted here: {probe.stderr.decode().strip()[:200]}")
    locks = _locked_folder(tmp_path)
    live = _start_holder(tmp_path)
    try:
        proc = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "rpc",
                               "unlock-stale", "--dir", str(tmp_path)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "another PID namespace" in proc.stdout and locks.is_dir()
    finally:
        live.kill()
        live.wait()


def test_digests_ignore_timings_and_the_run_folder_but_not_results(tmp_path):
    from rpc.utils.digests import compare_outputs

    for run, miou, wall in (("a", 0.5, 1.0), ("b", 0.5, 9.0), ("c", 0.6, 1.0)):
        (tmp_path / run / "results").mkdir(parents=True)
        root = tmp_path / run / "results" / "data" / "raw"
        data = {"root": str(root), "miou": miou, "wall_s": wall}
        (tmp_path / run / "results" / "x.json").write_text(json.dumps(data))
    same = compare_outputs(tmp_path / "a" / "results", tmp_path / "b" / "results")
    assert same == {"compared": 1, "differ": [], "only_a": [], "only_b": []}
    assert compare_outputs(tmp_path / "a" / "results", tmp_path / "c" / "results")["differ"] == ["x.json"]

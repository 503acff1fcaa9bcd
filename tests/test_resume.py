"""Kills in the middle of the per-image stages: resume that survives Snakemake, and a process pool that fails loudly.

The kills are real SIGKILLs (``tests/faults/sitecustomize.py``): a process dies at the N-th file it would write.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rpc.data.maps import label_keys, load_cams, save_cams
from rpc.data.palette import read_mask
from rpc.utils.io import is_temporary
from rpc.utils.workdir import SETTINGS, staged_outputs

REPO = Path(__file__).resolve().parents[1]
FAULTS = REPO / "tests" / "faults"


def _env(kill: str | None = None) -> dict:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    env.pop("RPC_KILL_AFTER", None)
    if kill:
        env["PYTHONPATH"] = os.pathsep.join([str(FAULTS), *filter(None, [os.environ.get("PYTHONPATH")])])
        env["RPC_KILL_AFTER"] = kill
    return env


def _json_result(log: str) -> dict:
    """The result line a stage prints last (``{"images": ..., "skipped": ...}``)."""
    return json.loads([line for line in log.splitlines() if line.startswith("{")][-1])


def _finished(folder: Path, pattern: str) -> list[str]:
    """The names of the files written whole in ``folder``.

    A dead pool worker makes the pool stop the other one too: a write it had begun can stay behind as a
    temporary (never under the final name); the resumed run deletes it.
    """
    return sorted(p.stem for p in folder.glob(pattern) if not is_temporary(p))


def test_staged_outputs_keep_work_until_complete_and_restart_on_other_settings(tmp_path, logs):
    out, work = tmp_path / "results" / "shard_0", tmp_path / "work" / "shard_0"
    with pytest.raises(KeyboardInterrupt):
        with staged_outputs({"maps": out}, work, {"lr": 1}) as folders:
            (folders["maps"] / "a.npz").write_text("a")
            raise KeyboardInterrupt  # killed mid-way: nothing published, the work kept
    assert not out.exists() and (work / "maps" / "a.npz").is_file()
    with staged_outputs({"maps": out}, work, {"lr": 1}) as folders:  # same settings: resumed
        assert (folders["maps"] / "a.npz").is_file()
        (folders["maps"] / "b.npz").write_text("b")
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", "b.npz"] and not work.exists()
    with pytest.raises(KeyboardInterrupt):
        with staged_outputs({"maps": out}, work, {"lr": 1}) as folders:
            (folders["maps"] / "c.npz").write_text("c")
            raise KeyboardInterrupt
    with staged_outputs({"maps": out}, work, {"lr": 2}) as folders:  # other settings: afresh, and said
        assert not any(folders["maps"].iterdir()) and (work / SETTINGS).is_file()
    assert "was started with other settings" in logs.read()
    assert not any(out.iterdir())  # the new run's (empty) result replaced the old one


def test_a_dead_crf_worker_ends_the_job_with_the_images_named(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    names = index.names("val")
    rng = np.random.default_rng(0)
    for name in names:
        keys = label_keys(index.label(name))
        h, w = index.read_image(name).shape[:2]
        save_cams(tmp_path / "maps" / f"{name}.npz", keys, rng.random((len(keys), h, w)))
    cmd = [sys.executable, "-m", "rpc", "pseudo-masks", "--dataset", str(index.root), "--split", "val", "--cams",
           str(tmp_path / "maps"), "--out", str(tmp_path / "out"), "--workers", "2", "--work", str(tmp_path / "w")]
    # each worker writes one mask, then is killed before its second: the job must end, not wait
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=_env("rpc.crf.pseudo:write_mask:1"))  # fmt: skip
    assert proc.returncode != 0
    assert "a CRF worker process died" in proc.stderr
    named = proc.stderr.rsplit("while processing one of:", 1)[1].split(";")[0]
    assert any(n in named for n in names), proc.stderr[-2000:]
    assert not (tmp_path / "out").exists()
    kept = _finished(tmp_path / "w" / "masks", "*.png")
    assert 1 <= len(kept) <= 2
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = _json_result(proc.stdout)
    assert result["skipped"] == len(kept) and result["images"] == len(names) - len(kept)
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.png")) == sorted(names)
    assert not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory):
    from test_workflow import TINY, _workdir

    work = _workdir(tmp_path_factory.mktemp("resume"))
    cfg = {**TINY, "model": {"depth": 18, "weights": "none"},
           "segmentation": {**TINY["segmentation"], "weights": "config"}}
    (work / "tiny.yaml").write_text(yaml.safe_dump(cfg))  # no pretraining stage: only maps and masks matter here
    return work


def _snakemake(work: Path, *args, kill=None, check=True):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", "tiny.yaml"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=900, env=_env(kill))
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def test_killed_shard_jobs_resume_under_snakemake(tiny_workdir):
    work = tiny_workdir
    maps, masks = Path("results/rpc-s15/cams/shard_0"), Path("results/rpc-s15/pseudo_masks/shard_0")
    shard = 16  # 32 training images in 2 shards
    # 1. the map job is killed after 5 of its 16 maps
    proc = _snakemake(work, str(maps), kill="rpc.cams.generate:save_cams:5", check=False)
    assert proc.returncode != 0 and not (work / maps).exists()
    assert len(list((work / "work/rpc-s15/cams/shard_0/maps").glob("*.npz"))) == 5
    # 2. rerun: only the 11 missing maps are computed; then the CRF job is killed (each worker after 3 masks)
    proc = _snakemake(work, str(masks), kill="rpc.crf.pseudo:write_mask:3", check=False)
    assert proc.returncode != 0
    done = _json_result((work / "logs/rpc-s15/rs_cams_0.log").read_text())
    assert done == {**done, "images": shard - 5, "skipped": 5}
    assert len(list((work / maps).glob("*.npz"))) == shard and not (work / "work/rpc-s15/cams/shard_0").exists()
    kept = len(_finished(work / "work/rpc-s15/pseudo_masks/shard_0/masks", "*.png"))
    assert 3 <= kept <= 6 and not (work / masks).exists()
    # 3. rerun: only the missing masks
    _snakemake(work, str(masks))
    done = _json_result((work / "logs/rpc-s15/pseudo_masks_0.log").read_text())
    assert done["skipped"] == kept and done["images"] == shard - kept
    # 4. the results equal an uninterrupted run's
    resumed = work / "resumed"
    shutil.copytree(work / "results/rpc-s15", resumed)
    _snakemake(work, str(masks), "--forcerun", "pseudo_masks_shard")
    for png in sorted((work / masks).glob("*.png")):
        assert (read_mask(png) == read_mask(resumed / "pseudo_masks/shard_0" / png.name)).all(), png.name
    _snakemake(work, str(maps), "--forcerun", "rs_cams")
    for npz in sorted((work / maps).glob("*.npz")):
        keys, cams = load_cams(npz)
        keys_r, cams_r = load_cams(resumed / "cams/shard_0" / npz.name)
        assert (keys == keys_r).all()
        np.testing.assert_allclose(cams, cams_r, atol=2e-3, err_msg=npz.name)  # float16 maps, batch order

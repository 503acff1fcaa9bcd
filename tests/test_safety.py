"""Data safety: what a kill leaves behind, unfinished training, moved data, non-finite maps, cleaning work/."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from rpc.data.maps import check_maps, check_no_strays, save_cams
from rpc.utils.io import DataError
from rpc.utils.workdir import MARKER, clean_finished, staged_outputs


def test_a_temporary_left_by_a_killed_write_is_ignored_and_removed(tmp_path):
    maps = tmp_path / "maps"
    save_cams(maps / "a.npz", np.array([0, 1]), np.ones((2, 4, 4)))
    (maps / ".b.x1y2.tmp.npz").write_bytes(b"half")  # what a SIGKILL inside save_npz_atomic leaves
    check_no_strays([maps], {"a"}, "train")  # no "map for an image that is not in the split"
    with pytest.raises(KeyboardInterrupt):
        with staged_outputs({"maps": tmp_path / "out3"}, tmp_path / "work3", {}) as folders:
            (folders["maps"] / ".e.q.tmp.npz").write_bytes(b"half")
            raise KeyboardInterrupt
    with staged_outputs({"maps": tmp_path / "out3"}, tmp_path / "work3", {}) as folders:
        assert not list(folders["maps"].iterdir())  # the resumed run starts without the stale temporary


def test_non_finite_maps_are_refused_when_written_and_read(tmp_path):
    cams = np.ones((2, 4, 4))
    cams[1, 0, 0] = np.nan
    with pytest.raises(DataError, match="x.npz: non-finite values in the cams"):
        save_cams(tmp_path / "x.npz", np.array([0, 1]), cams)
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(DataError, match="y.npz: the map holds non-finite values"):
        check_maps(tmp_path / "y.npz", np.array([0, 1]), cams, np.array([1, 0]), (4, 4))


def test_max_steps_exits_non_zero_without_a_model(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    cmd = [sys.executable, "-m", "rpc", "train", "--dataset", str(index.root), "--work", str(tmp_path / "w"),
           "--out", str(tmp_path / "m.pt"), "--preset", "cam", "--set", "model.depth=18", "model.weights=\"none\"",
           "train.batch_size=4", "train.crop=64", "train.long_side=[56,72]", "train.num_workers=0",
           "train.epochs=1", "train.max_steps=1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "stopped at step 1 of" in proc.stderr and "m.pt is not written yet" in proc.stderr
    assert not (tmp_path / "m.pt").exists() and (tmp_path / "w" / "last.pt").is_file()


def test_a_moved_dataset_is_found_or_named(tmp_path):
    from rpc.data.index import DatasetIndex
    from rpc.data.synthetic import SyntheticSpec, generate_dataset
    from rpc.data.voc import prepare_voc

    a = tmp_path / "a"
    generate_dataset(SyntheticSpec(n_train=4, n_train_eval=2, n_val=2, size=64), a / "raw")
    prepare_voc(a / "raw", a / "prepared", name="synthetic")
    shutil.move(a, tmp_path / "b")  # the whole project moved: found through the relative paths
    index = DatasetIndex.load(tmp_path / "b" / "prepared")
    assert index.read_image(index.names("train")[0]).shape == (64, 64, 3)
    shutil.rmtree(tmp_path / "b" / "raw")
    with pytest.raises(DataError, match=r"prepared/dataset.json: image folder .*JPEGImages not found"):
        DatasetIndex.load(tmp_path / "b" / "prepared")


def test_clean_work_removes_only_finished_runs(tmp_path):
    done, running = tmp_path / "rpc-s15" / "classifier", tmp_path / "cam-s15" / "classifier"
    for folder in (done, running):
        folder.mkdir(parents=True)
        (folder / "last.pt").write_bytes(b"0" * 1000)
    (done / MARKER).write_text("{}")
    assert [f for f, _ in clean_finished(tmp_path, dry_run=True)] == [done] and done.exists()
    removed = clean_finished(tmp_path)
    assert [f for f, _ in removed] == [done] and removed[0][1] >= 1000
    assert not done.exists() and (running / "last.pt").is_file()

"""Small shared helpers: gathering shard folders, precision choice, file permissions."""

import os
import stat

import pytest
import torch

from rpc.utils.device import use_bf16
from rpc.utils.io import DataError, merge_dirs


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


def test_precision_settings():
    cpu = torch.device("cpu")
    assert use_bf16("bf16", cpu) and not use_bf16("none", cpu)
    with pytest.raises(ValueError, match="auto, bf16 or none"):
        use_bf16("fp16", cpu)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    """Results on a shared cluster: readable by the group like any file, not tempfile's private 0600 / 0700."""
    from rpc.models.checkpoint import save_checkpoint
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

"""Small shared helpers: gathering shard folders, precision choice."""

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

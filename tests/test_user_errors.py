"""Errors a user can cause by typing: one line naming the flag, key or file and what is allowed."""

import pytest
import torch

from rpc.utils.device import pick_device
from rpc.utils.io import DataError


def test_a_device_that_is_not_there_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(DataError, match=r"--device cuda: no CUDA GPU is visible on this machine; use --device cpu"):
        pick_device("cuda")
    with pytest.raises(DataError, match=r"--device gpu0: not a device name"):
        pick_device("gpu0")
    assert pick_device("cpu").type == "cpu" and pick_device("auto").type == "cpu"


def test_a_backbone_weights_file_that_is_not_one_is_one_line(tmp_path):
    from rpc.models.backbone import load_resnet

    (tmp_path / "r50.pth").write_text("not weights\n")
    with pytest.raises(DataError, match=r"r50\.pth: a text file, not a torch checkpoint; expected a torchvision"):
        load_resnet(50, tmp_path / "r50.pth")

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

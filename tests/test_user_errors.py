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


def test_irn_imported_maps_without_a_background_threshold_stop_the_dry_run(tmp_path):
    from test_run_folders import _dry_run

    (tmp_path / "o.yaml").write_text(f"imported_maps:\n  irn_run: {{path: {tmp_path}, format: irn}}\n")
    proc = _dry_run(tmp_path, "--configfile", str(tmp_path / "o.yaml"))
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "bg_threshold" in ln]
    assert proc.returncode != 0 and lines == ["config: imported_maps.irn_run: 'bg_threshold' is a required property"]

"""Errors a user can cause by typing: one line naming the flag, key or file and what is allowed."""

import pytest
import torch
from PIL import Image

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


def test_a_classifier_file_given_to_segment_is_named_as_such(tmp_path, capsys):
    from rpc.cli import main
    from rpc.models.checkpoint import save_model
    from rpc.models.rpc import RPCModel, config_to_dict, make_config

    cfg = make_config("sipe", depth=18, weights="none", num_classes=2)
    save_model(tmp_path / "classifier.pt", RPCModel(cfg), config_to_dict(cfg), ["background", "a", "b"], {})
    image = tmp_path / "x.jpg"
    Image.new("RGB", (32, 32)).save(image)
    assert main(["segment", str(image), "--model", str(tmp_path / "classifier.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "classifier.pt: a classifier model file (written by `python -m rpc train`), not a DeepLab model" in err

"""mmseg integration: compatibility module, DeepLabv2 head, training/resume, input checks, predictions, mIoU."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

from rpc.data.palette import read_mask, write_mask  # noqa: E402
from rpc.evaluation.masks import evaluate_mask_dir  # noqa: E402
from rpc.segmentation.deeplabv2 import DeepLabV2Head  # noqa: E402
from rpc.segmentation.predict import load_segmenter, predict_segmentation  # noqa: E402
from rpc.segmentation.train import train_segmentation  # noqa: E402
from rpc.utils.io import DataError  # noqa: E402

CONFIG = "config/mmseg/deeplabv2_r18-d8_1xb8-100_synthetic-128x128.py"
FAST = ["train_dataloader.batch_size=2", "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False"]


def _opts(iters, schedule=None):
    return [*FAST, f"train_cfg.max_iters={iters}", f"param_scheduler.0.end={schedule or iters}",
            "default_hooks.checkpoint.interval=2", "default_hooks.logger.interval=1"]  # fmt: skip


def test_mmseg_imports_and_ops_stand_in():
    import mmcv.ops
    import mmseg.models  # noqa: F401  (fails without the stand-in under mmcv-lite)

    x = torch.arange(16.0).view(1, 1, 4, 4)
    # pixel centres in [0, 1] coordinates (x, y) sample the pixels exactly
    pts = torch.tensor([[[0.125, 0.125], [0.875, 0.375], [0.375, 0.875]]])
    np.testing.assert_allclose(mmcv.ops.point_sample(x, pts).flatten().tolist(), [0.0, 7.0, 13.0])
    with pytest.raises(ModuleNotFoundError):
        from mmcv.ops import CrissCrossAttention  # noqa: F401
    with pytest.raises(RuntimeError, match="compiled mmcv ops"):
        mmcv.ops.sigmoid_focal_loss(x, x)


class _Sneaky:
    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer

        return getattr, (HistoryBuffer, "__subclasses__")


def test_weights_only_loading_stays_narrow(tmp_path):
    torch.save({"x": _Sneaky()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="refusing getattr"):
        torch.load(tmp_path / "evil.pth", weights_only=True)


def test_deeplabv2_head_is_the_sum_of_four_dilated_convs():
    head = DeepLabV2Head(in_channels=8, in_index=0, num_classes=5)
    head.init_weights()
    assert [c.dilation for c in head.aspp] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert [c.padding for c in head.aspp] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert not hasattr(head, "conv_seg")
    assert sum(p.numel() for p in head.parameters()) == 4 * (8 * 5 * 9 + 5)
    x = torch.randn(2, 8, 30, 30)
    out = head((x,))
    dilations = (6, 12, 18, 24)
    ref = sum(F.conv2d(x, c.weight, c.bias, padding=d, dilation=d) for c, d in zip(head.aspp, dilations, strict=True))
    assert out.shape == (2, 5, 30, 30)
    torch.testing.assert_close(out, ref)
    assert 0.005 < head.aspp[0].weight.std() < 0.015 and head.aspp[0].bias.abs().max() == 0


@pytest.fixture(scope="module")
def trained(tiny_synthetic, tmp_path_factory):
    """A tiny DeepLabv2 on a 4-iteration schedule, stopped after 2 (as if killed), then resumed to 4."""
    _, _, index = tiny_synthetic
    tmp = tmp_path_factory.mktemp("seg")
    first = train_segmentation(CONFIG, index.root, "train_aug", None, tmp / "work", tmp / "a.pt", _opts(2, 4))
    (tmp / "work" / "COMPLETE").unlink()  # as if killed after the checkpoint at iteration 2
    second = train_segmentation(CONFIG, index.root, "train_aug", None, tmp / "work", tmp / "model.pt", _opts(4))
    return index, tmp, first, second


def test_training_resumes_from_work_folder(trained):
    index, tmp, first, second = trained
    assert first == {"iterations": 2, "resumed": False, "images": 24}
    assert second["iterations"] == 4 and second["resumed"] is True
    ckpt = torch.load(tmp / "model.pt", weights_only=True)  # the declared result loads weights-only
    assert json.loads(ckpt["classes"]) == list(index.classes)
    a, b = torch.load(tmp / "a.pt", weights_only=True), ckpt
    key = "decode_head.aspp.0.weight"
    assert not torch.equal(a["state_dict"][key], b["state_dict"][key])  # training went on after resuming


def test_class_count_comes_from_the_dataset():
    # the config file says 7 (the synthetic default); a dataset with 5 classes (own classes.txt) gets 5, even
    # over an explicit option: one config serves every VOC-format folder
    from rpc.segmentation.train import load_config

    assert load_config(CONFIG, 5).model.decode_head.num_classes == 5
    assert load_config(CONFIG, 5, ["model.decode_head.num_classes=9"]).model.decode_head.num_classes == 5
    assert load_config(CONFIG, 7).model.decode_head.num_classes == 7


def test_non_finite_loss_stops_deeplab_training(tiny_synthetic, tmp_path):
    from rpc.segmentation.hooks import NonFiniteLoss

    _, _, index = tiny_synthetic
    with pytest.raises(NonFiniteLoss, match="non-finite DeepLab loss .* at iteration 2"):
        train_segmentation(CONFIG, index.root, "train_aug", None, tmp_path / "w", tmp_path / "m.pt",
                           [*_opts(4), "optim_wrapper.optimizer.lr=nan"])  # fmt: skip
    assert not (tmp_path / "m.pt").exists()  # no model of NaNs for later stages


def test_backbone_weights_of_another_depth_are_refused(tmp_path):
    import torchvision

    from rpc.segmentation.train import check_backbone_weights

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    check_backbone_weights(tmp_path / "r18.pth", 18)  # fits
    with pytest.raises(DataError, match="r18.pth: not a ResNet-101 backbone"):
        check_backbone_weights(tmp_path / "r18.pth", 101)  # mmengine alone would only warn


def test_bad_training_input_fails_before_training(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    masks = tmp_path / "masks"
    names = index.names("train_aug")
    for n in names[1:]:
        write_mask(masks / f"{n}.png", index.read_mask(n))
    with pytest.raises(DataError, match=f"1 mask\\(s\\) missing .* {names[0]}.png"):
        train_segmentation(CONFIG, index.root, "train_aug", masks, tmp_path / "w", tmp_path / "m.pt", _opts(1))
    bad = index.read_mask(names[0]).copy()
    bad[0, 0] = 9  # class 9 >= 7 classes
    write_mask(masks / f"{names[0]}.png", bad)
    with pytest.raises(DataError, match=f"{names[0]}.png"):
        train_segmentation(CONFIG, index.root, "train_aug", masks, tmp_path / "w", tmp_path / "m.pt", _opts(1))
    assert not (tmp_path / "w").exists() and not (tmp_path / "m.pt").exists()


def test_predictions_and_miou_agree_with_mmseg(trained):
    from mmengine.structures import PixelData
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample

    index, tmp, _, _ = trained
    result = predict_segmentation(tmp / "model.pt", index.root, "val", tmp / "pred", tmp / "crf", scales=(1.0, 0.75),
                                  flip=True)  # fmt: skip
    assert result["images"] == 8 and result["crf_s"] > 0
    again = predict_segmentation(tmp / "model.pt", index.root, "val", tmp / "pred", tmp / "crf")
    assert again["images"] == 0 and again["skipped"] == 8  # resume
    ours = evaluate_mask_dir(index, "val", tmp / "pred", uncertain="ignore")
    metric = IoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = {"classes": index.classes}
    samples = []
    for name in index.names("val"):
        s = SegDataSample()
        pred = read_mask(tmp / "pred" / f"{name}.png").astype(np.int64)
        s.pred_sem_seg = PixelData(data=torch.from_numpy(pred)[None])
        s.gt_sem_seg = PixelData(data=torch.from_numpy(index.read_mask(name).astype(np.int64))[None])
        samples.append(s.to_dict())
    metric.process([], samples)
    theirs = metric.compute_metrics(metric.results)
    assert ours["miou"] * 100 == pytest.approx(theirs["mIoU"], abs=0.01)


def test_segmenter_file_rebuilds_the_model(trained):
    _, tmp, _, _ = trained
    model, cfg, classes = load_segmenter(tmp / "model.pt")
    assert cfg.model.decode_head.type == "DeepLabV2Head" and len(classes) == 7
    assert not model.training


def test_finished_segmentation_run_is_retrained_not_resumed(trained):
    index, tmp, _, _ = trained
    assert (tmp / "work" / "COMPLETE").is_file()
    result = train_segmentation(CONFIG, index.root, "train_aug", None, tmp / "work", tmp / "again.pt", _opts(2))
    assert result == {"iterations": 2, "resumed": False, "images": 24}

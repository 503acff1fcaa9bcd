"""mmseg integration: compatibility module, DeepLabv2 head, training/resume, input checks, predictions, mIoU."""

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

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

REPO = Path(__file__).resolve().parents[1]

CONFIG = "config/mmseg/deeplabv2_r18-d8_1xb8-5ep_synthetic-128x128.py"
FAST = ["train_dataloader.batch_size=2", "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False"]


def _opts(iters, schedule=None, every=2):
    return [*FAST, f"train_cfg.max_iters={iters}", f"param_scheduler.0.end={schedule or iters}",
            f"default_hooks.checkpoint.interval={every}", "default_hooks.logger.interval=1"]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread is as fast, and much faster when the machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Killed(Exception):
    pass


def _killed_after(iteration):
    """While active, training stops (as if the process were killed) right after ``iteration``, its checkpoint
    included."""
    from mmengine.runner.loops import IterBasedTrainLoop

    original = IterBasedTrainLoop.run_iter

    def run_iter(self, data_batch):
        original(self, data_batch)
        if self._iter == iteration:
            raise _Killed(f"killed after iteration {iteration}")

    return mock.patch.object(IterBasedTrainLoop, "run_iter", run_iter)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


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
    """A tiny DeepLabv2 on a 4-iteration schedule, killed after iteration 2 (its checkpoint written), then rerun
    with the same settings: it resumes to 4."""
    _, _, index = tiny_synthetic
    tmp = tmp_path_factory.mktemp("seg")
    with _killed_after(2), pytest.raises(_Killed):
        train_segmentation(
            CONFIG,
            index.root,
            "train_aug",
            mask_dir=None,
            work_dir=tmp / "work",
            out=tmp / "model.pt",
            options=_opts(4),
        )
    assert (tmp / "work" / "iter_2.pth").is_file() and not (tmp / "model.pt").exists()
    result = train_segmentation(
        CONFIG, index.root, "train_aug", mask_dir=None, work_dir=tmp / "work", out=tmp / "model.pt", options=_opts(4)
    )
    return index, tmp, result


def test_training_resumes_from_work_folder(trained):
    index, tmp, result = trained
    assert result == {"iterations": 4, "resumed": True, "images": 24, "bf16": mock.ANY}
    ckpt = torch.load(tmp / "model.pt", weights_only=True)  # the declared result loads weights-only
    assert json.loads(ckpt["classes"]) == list(index.classes)
    at_2 = torch.load(tmp / "work" / "iter_2.pth", weights_only=True)  # two checkpoints kept: 2 and 4
    key = "decode_head.aspp.0.weight"
    assert not torch.equal(at_2["state_dict"][key], ckpt["state_dict"][key])  # training went on after resuming
    assert (tmp / "work" / "last_checkpoint").read_text().endswith("iter_4.pth")


def test_rerun_with_other_settings_starts_afresh(tiny_synthetic, tmp_path, logs):
    # killed at iteration 2 of a 4-iteration schedule; the rerun asks for a 2-iteration schedule at another lr:
    # a fresh run, not "resumed at 2/2" (nothing trained) or a mix of two schedules
    _, _, index = tiny_synthetic
    with _killed_after(2), pytest.raises(_Killed):
        train_segmentation(
            CONFIG,
            index.root,
            "train_aug",
            mask_dir=None,
            work_dir=tmp_path / "w",
            out=tmp_path / "m.pt",
            options=_opts(4),
        )
    logs.read()
    other = [*_opts(2), "optim_wrapper.optimizer.lr=0.01"]
    again = train_segmentation(
        CONFIG, index.root, "train_aug", mask_dir=None, work_dir=tmp_path / "w", out=tmp_path / "m.pt", options=other
    )
    out = logs.read()
    assert "was started with other settings" in out and "starting afresh" in out
    assert again == {"iterations": 2, "resumed": False, "images": 24, "bf16": mock.ANY}
    fresh = train_segmentation(
        CONFIG, index.root, "train_aug", mask_dir=None, work_dir=tmp_path / "f", out=tmp_path / "f.pt", options=other
    )
    assert fresh == again
    a, b = _weights(tmp_path / "m.pt"), _weights(tmp_path / "f.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_resume_point_is_a_checkpoint_that_loads(tmp_path, logs):
    from rpc.segmentation.train import find_resume_checkpoint

    def state(i):
        torch.save({"meta": {"iter": i}, "state_dict": {"w": torch.full((2,), float(i))}}, tmp_path / f"iter_{i}.pth")

    assert find_resume_checkpoint(tmp_path) is None  # an empty folder: a fresh run
    state(1)
    state(2)
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_2.pth"))
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / "iter_2.pth")
    # mmengine with max_keep_ckpts=1 killed while saving 3: it had deleted 2, 3 is cut short, the pointer names 2
    (tmp_path / "iter_2.pth").unlink()
    (tmp_path / "iter_3.pth").write_bytes((tmp_path / "iter_1.pth").read_bytes()[:300])
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / "iter_1.pth")
    out = logs.read()
    assert "iter_3.pth: unreadable checkpoint" in out and "is missing; resuming from" in out
    assert not (tmp_path / "iter_3.pth").exists() and not (tmp_path / "last_checkpoint").exists()
    # killed while writing the pointer (mmengine truncates it, then writes): the newest that loads
    state(2)
    (tmp_path / "last_checkpoint").write_text("")
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / "iter_2.pth")
    assert "is empty; resuming from" in logs.read()
    # nothing loads: a fresh run, said so
    for i in (1, 2):
        (tmp_path / f"iter_{i}.pth").write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_2.pth"))
    assert find_resume_checkpoint(tmp_path) is None
    assert "does not load and no other checkpoint loads; starting afresh" in logs.read()


def test_only_a_checkpoint_cut_short_is_deleted(tmp_path, logs):
    """A whole checkpoint that does not load (here: a class outside the weights-only allow-list, as after an
    environment change) is moved aside, not deleted; a file that cannot be read stops the job, deleting nothing."""
    import datetime

    from rpc.segmentation.train import checkpoint_state, find_resume_checkpoint

    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "iter_1.pth")
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"when": datetime.date(2026, 1, 1)}},
               tmp_path / "iter_2.pth")  # fmt: skip
    (tmp_path / "iter_3.pth").write_bytes((tmp_path / "iter_1.pth").read_bytes()[:-30])  # the end is missing
    assert [checkpoint_state(tmp_path / f"iter_{i}.pth") for i in (1, 2, 3)] == ["ok", "unloadable", "truncated"]
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / "iter_1.pth")
    out = logs.read()
    assert "iter_3.pth: unreadable checkpoint (cut short" in out and not (tmp_path / "iter_3.pth").exists()
    assert "iter_2.pth: a whole checkpoint that does not load" in out
    assert (tmp_path / "iter_2.pth.unloadable").is_file() and (tmp_path / "iter_1.pth").is_file()
    (tmp_path / "iter_4.pth").mkdir()  # stands for a file the system cannot read (NFS error, permissions)
    with pytest.raises(OSError):
        find_resume_checkpoint(tmp_path)
    assert (tmp_path / "iter_1.pth").is_file() and (tmp_path / "iter_2.pth.unloadable").is_file()


_DIE_WHILE_SAVING = """
import json, os, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from mmengine.hooks import checkpoint_hook
from mmengine.runner import Runner
from rpc.segmentation.train import train_segmentation

window = sys.argv[1]
original = Runner.save_checkpoint


def save_checkpoint(self, out_dir, filename, *args, **kwargs):
    if window == "checkpoint" and filename == "iter_3.pth":
        # CheckpointHook has just removed the oldest kept checkpoint; the process dies halfway through the write
        Path(out_dir, filename).write_bytes(Path(out_dir, "iter_2.pth").read_bytes()[:1000])
        os._exit(9)
    return original(self, out_dir, filename, *args, **kwargs)


def hook_open(path, mode="r", *args, **kwargs):
    f = open(path, mode, *args, **kwargs)  # "w" truncates the pointer: the process dies before writing it
    if window == "pointer" and Path(path).name == "last_checkpoint" and (Path(path).parent / "iter_3.pth").is_file():
        f.close()
        os._exit(9)
    return f


Runner.save_checkpoint = save_checkpoint
checkpoint_hook.open = hook_open
config, dataset, work, out, options = json.loads(sys.argv[2])
train_segmentation(config, dataset, "train_aug", mask_dir=None, work_dir=work, out=out, options=options)
"""


@pytest.mark.parametrize("window", ["checkpoint", "pointer"])
def test_a_kill_while_saving_leaves_a_resumable_folder(tiny_synthetic, tmp_path, window, logs):
    # mmengine removes the oldest kept checkpoint, then writes the new one, then the last_checkpoint pointer,
    # none of them atomically: a kill in either write must leave a folder that a rerun resumes from
    _, _, index = tiny_synthetic
    work, options = tmp_path / "w", _opts(4, every=1)
    script = tmp_path / "die.py"
    script.write_text(_DIE_WHILE_SAVING)
    args = json.dumps([CONFIG, str(index.root), str(work), str(tmp_path / "m.pt"), options])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), window, args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert proc.returncode == 9, proc.stderr[-3000:]
    assert not (work / "iter_1.pth").exists() and (work / "iter_2.pth").is_file()  # 1 removed before 3 was saved
    if window == "checkpoint":
        assert (work / "last_checkpoint").read_text().endswith("iter_2.pth")
    else:
        assert (work / "last_checkpoint").read_text() == ""
    result = train_segmentation(
        CONFIG, index.root, "train_aug", mask_dir=None, work_dir=work, out=tmp_path / "m.pt", options=options
    )
    assert result == {"iterations": 4, "resumed": True, "images": 24, "bf16": mock.ANY}
    out = logs.read()
    if window == "checkpoint":  # the pointer named the kept checkpoint 2; the cut-short 3 is written again
        assert "is empty" not in out
    else:  # the newest checkpoint that loads: 3, complete before the pointer's write
        assert "last_checkpoint is empty; resuming from" in out and "iter_3.pth" in out
    assert _weights(tmp_path / "m.pt")
    assert sorted(p.name for p in work.glob("iter_*.pth")) == ["iter_3.pth", "iter_4.pth"]


def test_class_count_comes_from_the_dataset():
    # the config file says 7 (the synthetic default); a dataset with 5 classes (own classes.txt) gets 5, even
    # over an explicit option: one config serves every VOC-format folder
    from rpc.segmentation.train import load_config

    assert load_config(CONFIG, 5).model.decode_head.num_classes == 5
    assert load_config(CONFIG, 5, ["model.decode_head.num_classes=9"]).model.decode_head.num_classes == 5
    assert load_config(CONFIG, 7).model.decode_head.num_classes == 7


def test_bf16_uses_mmengines_amp_wrapper_on_cuda_and_the_cpu_wrapper_on_a_cpu(monkeypatch):
    """CUDA (simulated): ``bf16`` -> AmpOptimWrapper in bfloat16 + channels-last, ``auto`` stays fp32, a GPU
    without bf16 refuses; CPU: the CPU autocast wrapper. The optimiser itself is untouched."""
    from rpc.segmentation.precision import use_bf16, wants_bf16
    from rpc.segmentation.train import load_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU half, also on a machine with a GPU
    cpu = load_config(CONFIG, 5)
    optimizer = cpu.optim_wrapper.optimizer.to_dict()
    use_bf16(cpu)
    assert cpu.optim_wrapper.type == "CPUBf16OptimWrapper" and "dtype" not in cpu.optim_wrapper
    assert cpu.custom_hooks[-1] == {"type": "ChannelsLastHook"}
    assert wants_bf16(cpu, "none") is False and wants_bf16(cpu, "bf16") is True  # neither times a step
    with pytest.raises(ValueError, match="auto, bf16 or none"):
        wants_bf16(cpu, "fp16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    gpu = load_config(CONFIG, 5)
    assert wants_bf16(gpu, "auto") is False and wants_bf16(gpu, "none") is False and wants_bf16(gpu, "bf16") is True
    use_bf16(gpu)
    assert gpu.optim_wrapper.type == "AmpOptimWrapper" and gpu.optim_wrapper.dtype == "bfloat16"
    assert gpu.optim_wrapper.loss_scale == {"enabled": False}  # no loss scaling in bf16
    assert gpu.optim_wrapper.optimizer.to_dict() == optimizer and gpu.custom_hooks[-1] == {"type": "ChannelsLastHook"}
    # a GPU before Ampere: bf16 only emulated (torch says supported unless emulation is excluded)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "an old GPU")
    with pytest.raises(ValueError, match="an old GPU has no bf16 support"):
        wants_bf16(gpu, "bf16")


def test_non_finite_loss_stops_deeplab_training(tiny_synthetic, tmp_path):
    from rpc.segmentation.hooks import NonFiniteLoss

    _, _, index = tiny_synthetic
    with pytest.raises(NonFiniteLoss, match="non-finite DeepLab loss .* at iteration 2"):
        train_segmentation(CONFIG, index.root, "train_aug", mask_dir=None, work_dir=tmp_path / "w",
                           out=tmp_path / "m.pt", options=[*_opts(4), "optim_wrapper.optimizer.lr=nan"])  # fmt: skip
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
        train_segmentation(
            CONFIG,
            index.root,
            "train_aug",
            mask_dir=masks,
            work_dir=tmp_path / "w",
            out=tmp_path / "m.pt",
            options=_opts(1),
        )
    bad = index.read_mask(names[0]).copy()
    bad[0, 0] = 9  # class 9 >= 7 classes
    write_mask(masks / f"{names[0]}.png", bad)
    with pytest.raises(DataError, match=f"{names[0]}.png"):
        train_segmentation(
            CONFIG,
            index.root,
            "train_aug",
            mask_dir=masks,
            work_dir=tmp_path / "w",
            out=tmp_path / "m.pt",
            options=_opts(1),
        )
    assert not (tmp_path / "w").exists() and not (tmp_path / "m.pt").exists()


def test_the_predictions_crf_in_worker_processes_writes_the_same_masks(trained, tmp_path, monkeypatch):
    import rpc.segmentation.predict as predict

    index, tmp, _ = trained

    def scores(model, cfg, image, scales, flip):  # each image's own noisy scores, for the CRF to change
        rng = np.random.default_rng(int(image.sum()))
        return torch.from_numpy(rng.normal(size=(index.num_classes, *image.shape[:2])).astype(np.float32)).softmax(0)

    monkeypatch.setattr(predict, "class_probabilities", scores)
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        result = predict_segmentation(tmp / "model.pt", index.root, "val", out / "pred", crf_dir=out / "crf",
                                      crf_workers=workers)  # fmt: skip
        assert result["images"] == 8 and result["crf_s"] > 0
        runs[workers] = {f"{d}/{p.name}": p.read_bytes() for d in ("pred", "crf") for p in (out / d).glob("*.png")}
    assert len(runs[1]) == 16 and runs[2] == runs[1]
    # the CRF changes pixels of every image (else the comparison above would not test it)
    assert all(runs[1][f"crf/{n}.png"] != runs[1][f"pred/{n}.png"] for n in index.names("val"))


def test_predictions_in_shards_gathered_equal_one_job(trained, tmp_path, monkeypatch):
    """The workflow's scatter/gather of the predictions (segmentation.predict_shards): 3 shards, each its own
    folders, merged with merge-dirs, hold exactly the files of one job over the whole split, CRF included."""
    import rpc.segmentation.predict as predict
    from rpc.utils.merge import merge_dirs

    index, tmp, _ = trained

    def scores(model, cfg, image, scales, flip):  # each image's own scores, so that a mixed-up file is seen
        rng = np.random.default_rng(int(image.sum()))
        return torch.from_numpy(rng.normal(size=(index.num_classes, *image.shape[:2])).astype(np.float32)).softmax(0)

    monkeypatch.setattr(predict, "class_probabilities", scores)
    whole = tmp_path / "whole"
    predict_segmentation(tmp / "model.pt", index.root, "val", whole / "pred", crf_dir=whole / "crf")
    parts = [tmp_path / f"shard_{i}" for i in range(3)]
    counts = [predict_segmentation(tmp / "model.pt", index.root, "val", d / "pred", crf_dir=d / "crf", shard_index=i,
                                   num_shards=3)["images"] for i, d in enumerate(parts)]  # fmt: skip
    assert sorted(counts) == [2, 3, 3]  # 8 images, none twice
    for sub in ("pred", "crf"):
        assert merge_dirs([d / sub for d in parts], tmp_path / "merged" / sub) == 8
        files = {p.name: p.read_bytes() for p in (tmp_path / "merged" / sub).glob("*.png")}
        assert files == {p.name: p.read_bytes() for p in (whole / sub).glob("*.png")} and len(files) == 8
    # more shards than images: the last shard's job writes empty folders, which gather to nothing
    empty = tmp_path / "empty"
    result = predict_segmentation(tmp / "model.pt", index.root, "val", empty / "pred", crf_dir=empty / "crf",
                                  shard_index=8, num_shards=9)  # fmt: skip
    assert result["images"] == 0 and (empty / "pred").is_dir() and (empty / "crf").is_dir()
    assert merge_dirs([empty / "pred"], tmp_path / "merged_empty") == 0


def test_the_crf_of_stored_scores_in_its_own_job_matches_the_crf_beside_the_model(trained, tmp_path, monkeypatch):
    """The workflow's split (seg-predict --scores-out on the GPU, seg-crf on CPUs, 2 shards, 2 workers) against the
    CRF run beside the model: the same argmax byte for byte, the same CRF masks up to the scores' 65535 levels."""
    import rpc.segmentation.predict as predict
    from rpc.segmentation.refine import refine_predictions, save_scores
    from rpc.utils.merge import merge_dirs

    index, tmp, _ = trained

    def scores(model, cfg, image, scales, flip):  # each image's own noisy scores, for the CRF to change
        rng = np.random.default_rng(int(image.sum()))
        noise = 3 * rng.normal(size=(index.num_classes, *image.shape[:2]))
        return torch.from_numpy(noise.astype(np.float32)).softmax(0)

    monkeypatch.setattr(predict, "class_probabilities", scores)
    whole = tmp_path / "whole"
    predict_segmentation(tmp / "model.pt", index.root, "val", whole / "pred", crf_dir=whole / "crf")
    parts = [tmp_path / f"shard_{i}" for i in range(2)]
    for i, d in enumerate(parts):
        predict_segmentation(tmp / "model.pt", index.root, "val", d / "pred", scores_dir=d / "scores", shard_index=i,
                             num_shards=2)  # fmt: skip
        assert not (d / "crf").exists()
        result = refine_predictions(index.root, "val", d / "scores", d / "crf", workers=2, shard_index=i, num_shards=2)
        assert result["images"] == len(list((d / "scores").glob("*.npz"))) > 0 and result["crf_s"] > 0
    for sub in ("pred", "crf"):
        assert merge_dirs([d / sub for d in parts], tmp_path / sub) == 8
    names = index.names("val")
    assert all((tmp_path / "pred" / f"{n}.png").read_bytes() == (whole / "pred" / f"{n}.png").read_bytes()
               for n in names)  # fmt: skip
    ours, inline, plain = (np.stack([read_mask(d / f"{n}.png") for n in names])
                           for d in (tmp_path / "crf", whole / "crf", whole / "pred"))  # fmt: skip
    assert (ours == inline).mean() > 0.9995 and (inline != plain).mean() > 0.05  # and the CRF changed pixels
    # a second run skips every image (resume); scores of another class count are refused, naming the file
    assert refine_predictions(index.root, "val", parts[0] / "scores", parts[0] / "crf", shard_index=0,
                              num_shards=2)["images"] == 0  # fmt: skip
    bad = next((parts[0] / "scores").glob("*.npz"))
    save_scores(bad, np.full((3, *inline.shape[1:]), 1 / 3, np.float32))
    with pytest.raises(DataError, match=rf"{bad.name}: scores of 3 classes, the dataset has {index.num_classes}"):
        refine_predictions(index.root, "val", parts[0] / "scores", tmp_path / "again", shard_index=0, num_shards=2)


def test_predictions_and_miou_agree_with_mmseg(trained):
    from mmengine.structures import PixelData
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample

    index, tmp, _ = trained
    result = predict_segmentation(tmp / "model.pt", index.root, "val", tmp / "pred", crf_dir=tmp / "crf",
                                  scales=(1.0, 0.75), flip=True)  # fmt: skip
    assert result["images"] == 8 and result["crf_s"] > 0
    again = predict_segmentation(tmp / "model.pt", index.root, "val", tmp / "pred", crf_dir=tmp / "crf",
                                 scales=(1.0, 0.75), flip=True)  # fmt: skip
    assert again["images"] == 0 and again["skipped"] == 8  # resume (the same settings)
    with pytest.raises(DataError, match="pred: holds files made with other settings"):
        predict_segmentation(tmp / "model.pt", index.root, "val", tmp / "pred", crf_dir=tmp / "crf")
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
    _, tmp, _ = trained
    model, cfg, classes = load_segmenter(tmp / "model.pt")
    assert cfg.model.decode_head.type == "DeepLabV2Head" and len(classes) == 7
    assert not model.training


def test_a_crafted_segmentation_model_file_runs_no_code(trained, tmp_path):
    """The stored config is JSON data; Python text (as an older version wrote, or an attacker) is refused unread."""
    _, tmp, _ = trained
    ckpt = torch.load(tmp / "model.pt", weights_only=True)
    assert json.loads(ckpt["config"])["model"]["decode_head"]["type"] == "DeepLabV2Head"
    marker = tmp_path / "ran"
    for payload in (f"x = __import__('os').system('touch {marker}')\nmodel = dict(type='X')",
                    json.dumps(["not", "a", "dict"])):  # fmt: skip
        torch.save({**ckpt, "config": payload}, tmp_path / "crafted.pt")
        with pytest.raises(DataError, match="crafted.pt: the stored config is not"):
            load_segmenter(tmp_path / "crafted.pt")
    assert not marker.exists()


def test_finished_segmentation_run_is_retrained_not_resumed(trained):
    index, tmp, _ = trained
    assert (tmp / "work" / "COMPLETE").is_file()
    result = train_segmentation(
        CONFIG, index.root, "train_aug", mask_dir=None, work_dir=tmp / "work", out=tmp / "again.pt", options=_opts(2)
    )
    assert result == {"iterations": 2, "resumed": False, "images": 24, "bf16": mock.ANY}


def test_the_seed_reaches_deeplab(tiny_synthetic, tmp_path):
    """`seed` is mmengine's randomness.seed: recorded in the model file's config; another seed, another init."""
    _, _, index = tiny_synthetic
    runs = {}
    for seed in (3, 4):
        out = tmp_path / f"s{seed}.pt"
        train_segmentation(CONFIG, index.root, "train_aug", mask_dir=None, work_dir=tmp_path / f"w{seed}", out=out,
                           options=_opts(1), seed=seed)  # fmt: skip
        ckpt = torch.load(out, weights_only=True)
        assert json.loads(ckpt["config"])["randomness"]["seed"] == seed
        runs[seed] = _weights(out)
    key = "decode_head.aspp.0.weight"
    assert not torch.equal(runs[3][key], runs[4][key])


def _own_dataset(tmp_path):
    """A private synthetic dataset (its files may be changed by the test)."""
    from rpc.data.synthetic import SyntheticSpec, generate_dataset
    from rpc.data.voc import prepare_voc

    raw = generate_dataset(SyntheticSpec(n_train=8, n_train_eval=4, n_val=2, size=64), tmp_path / "raw")
    return raw, prepare_voc(raw, tmp_path / "prepared", name="synthetic")


def test_ground_truth_run_restarts_when_the_data_changes(tmp_path, logs):
    """The ground-truth DeepLab run's settings hold the listed images' masks, the split list and the labels: a
    killed run does not resume on regenerated data."""
    from rpc.data.palette import read_mask, write_mask

    raw, index = _own_dataset(tmp_path)
    with _killed_after(2), pytest.raises(_Killed):
        train_segmentation(CONFIG, index.root, "train_aug", mask_dir=None, work_dir=tmp_path / "w",
                           out=tmp_path / "m.pt", options=_opts(4))  # fmt: skip
    mask = raw / "SegmentationClass" / "syn_00001.png"
    write_mask(mask, np.where(read_mask(mask) > 0, 0, read_mask(mask)))  # new labels for one image
    logs.read()
    result = train_segmentation(CONFIG, index.root, "train_aug", mask_dir=None, work_dir=tmp_path / "w",
                                out=tmp_path / "m.pt", options=_opts(4))  # fmt: skip
    assert "started with other settings" in logs.read() and result["resumed"] is False


def test_bad_ground_truth_and_rotated_images_are_named_before_training(tmp_path):
    from PIL import Image

    from rpc.data.palette import write_mask
    from rpc.segmentation.dataset import check_masks

    raw, index = _own_dataset(tmp_path)
    names = index.names("train_aug")
    check_masks(index, names, None)  # the ground truth as generated: fine
    bad = raw / "SegmentationClass" / "syn_00002.png"
    original = bad.read_bytes()
    write_mask(bad, np.full((64, 64), 9, np.uint8))  # class 9 of a 7-class dataset
    with pytest.raises(DataError, match=r"syn_00002.png: mask values \[9\] outside"):
        train_segmentation(CONFIG, index.root, "train_aug", mask_dir=None, work_dir=tmp_path / "w",
                           out=tmp_path / "m.pt", options=_opts(1))  # fmt: skip
    bad.write_bytes(original)
    image = raw / "JPEGImages" / "syn_00003.jpg"
    with Image.open(image) as img:
        exif = img.getexif()
        exif[0x0112] = 6  # "rotate 90 degrees to display"
        img.save(image, exif=exif)
    with pytest.raises(DataError, match=r"syn_00003.jpg: EXIF orientation 6"):
        check_masks(index, names, None)
    with pytest.raises(DataError, match="EXIF orientation 6"):
        index.read_image("syn_00003")
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(raw / "JPEGImages" / "deep.png")
    from rpc.data.index import read_image

    with pytest.raises(DataError, match="deep.png: image mode I;16"):
        read_image(raw / "JPEGImages" / "deep.png")


def test_the_exported_model_loads_with_mmseg_apis_and_predicts_as_seg_predict(trained, tmp_path):
    from mmseg.apis import inference_model, init_model

    from rpc.segmentation.export import export_mmseg
    from rpc.segmentation.predict import class_probabilities, load_segmenter

    index, tmp, _ = trained
    files = export_mmseg(tmp / "model.pt", tmp_path / "mmseg")
    model = init_model(files["config"], files["checkpoint"], device="cpu")
    assert model.dataset_meta["classes"] == list(index.classes)
    ours, cfg, _ = load_segmenter(tmp / "model.pt", fold_bn=True)  # as seg-predict runs it: BN folded
    unfolded, _, _ = load_segmenter(tmp / "model.pt")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ours.backbone.modules())
    for name in index.names("val")[:3]:
        # the scores seg-predict takes its argmax of (scale 1, no flip) vs mmseg's own pipeline and model
        probs = class_probabilities(ours, cfg, index.read_image(name)).numpy()
        theirs = inference_model(model, str(index.image_path(name))).seg_logits.data.softmax(0).numpy()
        assert theirs.shape == probs.shape and probs.std() > 1e-3  # not a constant map
        assert np.abs(theirs - probs).max() < 1e-4
        assert np.abs(class_probabilities(unfolded, cfg, index.read_image(name)).numpy() - probs).max() < 1e-5


def test_segment_own_images_equals_the_split_predictions(trained, tmp_path):
    from rpc.cli import main

    index, tmp, _ = trained
    names = index.names("val")[:2]
    predict_segmentation(tmp / "model.pt", index.root, "val", tmp_path / "split")
    images = [str(index.image_path(n)) for n in names]
    assert main(["segment", *images, "--model", str(tmp / "model.pt"), "--out", str(tmp_path / "own")]) == 0
    for n in names:
        assert (read_mask(tmp_path / "own" / f"{n}.png") == read_mask(tmp_path / "split" / f"{n}.png")).all()
    from PIL import Image

    assert Image.open(tmp_path / "own" / f"{names[0]}.png").mode == "P"  # palette PNG, as the VOC server takes
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / Path(images[0]).name).write_bytes(Path(images[0]).read_bytes())
    assert main(["segment", images[0], str(twin / Path(images[0]).name), "--model", str(tmp / "model.pt"),
                 "--out", str(tmp_path / "x")]) == 2  # fmt: skip


def _evil_model_file(path):
    """A model file whose stored config names ``os.system`` as a type: mmengine's fallback lookup would import and
    call it when the model is built."""
    config = {"model": {"type": "EncoderDecoder", "backbone": {"type": "torch.nn.Identity"},
                        "decode_head": {"type": "os.system", "command": "id > PWNED"},
                        "data_preprocessor": {"type": "SegDataPreProcessor"}}}  # fmt: skip
    torch.save({"state_dict": {}, "config": json.dumps(config), "classes": json.dumps(["bg", "a"]), "meta": "{}"}, path)


@pytest.mark.parametrize("command", ["segment", "export-mmseg", "seg-predict"])
def test_a_model_file_naming_an_unregistered_type_is_refused_and_runs_nothing(command, tiny_synthetic, tmp_path,
                                                                              monkeypatch, capsys):  # fmt: skip
    from rpc.cli import main

    _, _, index = tiny_synthetic
    monkeypatch.chdir(tmp_path)
    _evil_model_file(tmp_path / "evil_model.pt")
    image = str(index.image_path(index.names("val")[0]))
    args = {"segment": ["segment", image, "--model", "evil_model.pt", "--out", "o"],
            "export-mmseg": ["export-mmseg", "--model", "evil_model.pt", "--out", "x"],
            "seg-predict": ["seg-predict", "--model", "evil_model.pt", "--dataset", str(index.root), "--split", "val",
                            "--out", "p"]}[command]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "evil_model.pt: config.model.backbone.type = 'torch.nn.Identity' is not a type registered" in err or (
        "evil_model.pt: config.model.decode_head.type = 'os.system' is not a type registered" in err), err
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("config, message", [
    ({"model": {"type": "EncoderDecoder"}, "custom_imports": {"imports": ["os"]}}, "custom_imports names 'os'"),
    ({"model": {"type": "EncoderDecoder"}, "_base_": ["x.py"]}, "may not hold the key '_base_'"),
    ({"model": {"type": "EncoderDecoder", "head": [{"type": "NotRegistered"}]}}, r"config.model.head\[0\].type"),
    ({"model": {"type": "EncoderDecoder", "norm_cfg": {"type": "BN"}, "init_cfg": {"type": "Pretrained"}}}, None),
])  # fmt: skip
def test_stored_configs_may_name_only_registered_types(config, message):
    from rpc.segmentation.stored_config import check_stored_config

    if message is None:  # mmengine's own registered names (BN, Pretrained) are fine
        check_stored_config(config, "m.pt")
        return
    with pytest.raises(DataError, match=message):
        check_stored_config(config, "m.pt")


@pytest.mark.parametrize("config", ["deeplabv2_r18-d8_1xb8-5ep_synthetic-128x128.py",
                                    "deeplabv2_r101-d8_1xb10-20k_voc12aug-321x321.py"])  # fmt: skip
def test_a_schedule_in_epochs_grows_with_the_training_split(config):
    """``segmentation.epochs``: iterations = ceil(epochs x images / global batch); twice the images, twice the
    iterations; the poly decay ends with the run, a warm-up keeps its length; VOC's published schedule is what the
    config says when no epochs are given."""
    from rpc.segmentation.train import load_config, schedule_in_epochs

    path = REPO / "config" / "mmseg" / config
    iters = {}
    for n in (640, 1280):
        cfg = load_config(path, 7)
        batch = cfg.train_dataloader.batch_size
        iters[n] = schedule_in_epochs(cfg, 5, n)
        assert iters[n] == -(-5 * n // batch) and cfg.train_cfg.max_iters == iters[n]
        assert cfg.param_scheduler[-1]["end"] == iters[n]
    assert iters[1280] == 2 * iters[640]
    cfg = load_config(path, 7)
    cfg.param_scheduler = [dict(type="LinearLR", begin=0, end=10, by_epoch=False),
                           dict(type="PolyLR", begin=10, end=100, by_epoch=False)]  # fmt: skip
    schedule_in_epochs(cfg, 5, 640)
    assert cfg.param_scheduler[0]["end"] == 10 and cfg.param_scheduler[1]["begin"] == 10
    with pytest.raises(DataError, match="fewer than the warm-up"):
        schedule_in_epochs(cfg, 0.01, 64)
    voc = load_config(REPO / "config" / "mmseg" / "deeplabv2_r101-d8_1xb10-20k_voc12aug-321x321.py", 21)
    assert voc.train_cfg.max_iters == 20000  # without epochs: the published schedule


def test_the_global_batch_is_split_over_the_processes():
    """VOC's batch 10 is the global batch: 2 processes take 5 each, the iterations stay 20k; 4 do not divide 10."""
    from rpc.segmentation.train import load_config, split_global_batch

    path = REPO / "config" / "mmseg" / "deeplabv2_r101-d8_1xb10-20k_voc12aug-321x321.py"
    for world, per_process in ((1, 10), (2, 5), (5, 2)):
        cfg = load_config(path, 21)
        assert split_global_batch(cfg, world, path) == per_process == cfg.train_dataloader.batch_size
        assert cfg.train_cfg.max_iters == 20000
    with pytest.raises(DataError, match=r"batch_size 10 is the global batch and does not divide over 4 processes; "
                                        r"give a multiple of 4 \(e.g. --cfg-options train_dataloader.batch_size=8\)"):
        split_global_batch(load_config(path, 21), 4, path)


def test_the_exported_model_runs_in_mmsegs_own_test_loop(trained, tmp_path):
    """What mmseg's tools/test.py runs, given only the exported folder: Runner.from_cfg(config).test() builds the
    hooks and dataset the config names (custom_imports) and scores the training dataset's val split; its mIoU is
    the one of seg-predict's predictions (same model, whole image, no CRF)."""
    import os
    import shutil

    from mmengine.config import Config
    from mmengine.runner import Runner

    from rpc.segmentation.export import export_mmseg

    index, tmp, _ = trained
    files = export_mmseg(tmp / "model.pt", tmp_path / "mmseg", dataset=index.root)
    cfg = Config.fromfile(files["config"])
    cfg.work_dir, cfg.load_from = str(tmp_path / "test_work"), files["checkpoint"]  # what tools/test.py sets
    metrics = Runner.from_cfg(cfg).test()
    predict_segmentation(tmp / "model.pt", index.root, "val", tmp_path / "pred")
    ours = 100 * evaluate_mask_dir(index, "val", tmp_path / "pred")["miou"]
    assert metrics["mIoU"] == pytest.approx(ours, abs=0.5), (metrics, ours)
    # portable: moved elsewhere and run from another working folder with nothing set, the same score
    moved = shutil.move(tmp_path / "mmseg", tmp_path / "elsewhere" / "deeplab")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    before = os.getcwd()
    try:
        os.chdir(elsewhere)
        cfg = Config.fromfile(os.path.join(moved, "config.py"))
        assert cfg.load_from is None and cfg.data_preprocessor == cfg.model.data_preprocessor
        again = Runner.from_cfg(cfg).test()
    finally:
        os.chdir(before)
    assert again["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-6)

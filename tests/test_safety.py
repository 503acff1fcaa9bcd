"""Data safety: what a kill leaves behind, unfinished training, moved data, non-finite maps, cleaning work/, and
model files from someone else (refused in one line before any work, never run as code)."""

import contextlib
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


# --- model files from someone else: one line before any work, and never code --------------------------------------

PROBE_KEY = "x': __import__('os').system('touch {marker}'), 'y"


@pytest.fixture(scope="module")
def deeplab_file(tiny_synthetic, tmp_path_factory):
    """An untrained DeepLab model file (ResNet-18, the synthetic dataset's classes) as seg-train writes one: the
    resolved project config as JSON data, the state dict, the classes."""
    import torch

    from rpc.segmentation.compat import ensure_mmseg

    ensure_mmseg()
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import rpc.segmentation.deeplabv2  # noqa: F401  (registers DeepLabV2Head)
    from rpc.models.checkpoint import save_model
    from rpc.segmentation.train import load_config

    _, _, index = tiny_synthetic
    cfg = load_config("config/mmseg/deeplabv2_r18-d8_1xb8-5ep_synthetic-128x128.py", index.num_classes)
    cfg.model.backbone.init_cfg = None
    cfg.train_dataloader.dataset.update(dataset_dir=str(index.root), split="train_aug", mask_dir=None)
    register_all_modules(init_default_scope=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
    path = tmp_path_factory.mktemp("deeplab") / "model.pt"
    save_model(path, model, cfg.to_dict(), list(index.classes), {"iterations": 0})
    return path


def _with_config(source, target, change):
    """``source`` (a DeepLab model file) with its stored config changed in place by ``change(config)``."""
    import json

    import torch

    ckpt = torch.load(source, weights_only=True)
    config = json.loads(ckpt["config"])
    change(config)
    torch.save({**ckpt, "config": json.dumps(config)}, target)
    return target


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert not any("Traceback" in line for line in err), err
    return err[-1]


def test_a_quote_in_a_nested_key_of_a_model_file_runs_no_code_on_export(deeplab_file, tmp_path, monkeypatch,
                                                                          capsys):  # fmt: skip
    """mmengine writes a nested key that is not a Python name between quotes, unescaped: the probe key would make
    the exported config.py run a shell command when loaded. The stored config is refused (exit 2, one line), and
    nothing is written."""
    from rpc.cli import main

    marker = tmp_path / "MARKER"
    key = PROBE_KEY.format(marker=marker)
    _with_config(deeplab_file, tmp_path / "probe.pt", lambda c: c["model"]["decode_head"].update({key: 1}))
    monkeypatch.chdir(tmp_path)
    assert main(["export-mmseg", "--model", "probe.pt", "--out", "exported"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: probe.pt: config.model.decode_head holds the key ") and "__import__" in line
    written = list((tmp_path / "exported").rglob("*")) if (tmp_path / "exported").exists() else []
    for config in (p for p in written if p.suffix == ".py"):  # nothing should be there; whatever is, loads inert
        from mmengine.config import Config

        with contextlib.suppress(Exception):
            Config.fromfile(str(config))
    assert written == [] and not (tmp_path / "exported").exists()
    assert not marker.exists()


def test_the_exported_text_is_checked_to_be_data_before_it_is_written(deeplab_file, tmp_path, monkeypatch):
    """Second line of defence, with the stored config's checks switched off: what export-mmseg would write is
    parsed and refused unless it assigns literal data only, and says what the stored config says."""
    import rpc.segmentation.predict
    from rpc.segmentation.export import check_config_text, export_mmseg

    marker = tmp_path / "MARKER"
    monkeypatch.setattr(rpc.segmentation.predict, "check_stored_config", lambda cfg, source: None)
    code = _with_config(deeplab_file, tmp_path / "code.pt",
                        lambda c: c["env_cfg"].update({PROBE_KEY.format(marker=marker): 1}))  # fmt: skip
    with pytest.raises(DataError, match=r"code.pt: line \d+ of the exported config.py would run code, not hold data "
                                        r"\(\"__import__\('os'\).system\("):  # fmt: skip
        export_mmseg(code, tmp_path / "out")
    literal = _with_config(deeplab_file, tmp_path / "literal.pt",
                           lambda c: c["env_cfg"].update({"x': 1, 'load_from': '/elsewhere', 'y": 1}))  # fmt: skip
    with pytest.raises(DataError, match="literal.pt: the exported config.py would not say what the stored config"):
        export_mmseg(literal, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not marker.exists()
    for text, message in [("import os\n", "would not assign data"),
                          ("a = dict(b=open('f'))\n", r"would run code, not hold data \(\"open\('f'\)\"\)"),
                          ("dict = 1\n", "would not assign data"),
                          ("a = dict(**b)\n", "would run code"), ("a = [*b]\n", "would run code"),
                          ("a = 1e999\n", "would run code"), ("a = b'x'\n", "would run code"),
                          ("a = '{{ fileDirname }}'\n", r"would hold '\{\{' \(line 1\)"),
                          ("a = {'k': (\n", "would not be Python")]:  # fmt: skip
        with pytest.raises(DataError, match=f"^m.pt: (line 1 of )?the exported config.py {message}"):
            check_config_text(text, "m.pt")
    assert check_config_text("a = dict(b=[1, -2.5, None, True], c=dict({'x.y': ('s',)}))\n", "m") == {
        "a": {"b": [1, -2.5, None, True], "c": {"x.y": ("s",)}}
    }


def test_a_legitimate_export_round_trips(deeplab_file, tiny_synthetic, tmp_path):
    """What export-mmseg writes for a model file of seg-train loads with mmengine and mmseg and says what the
    stored config says; a second export into the same folder replaces both files."""
    import json

    import torch
    from mmengine.config import Config
    from mmseg.apis import init_model

    from rpc.cli import main

    _, _, index = tiny_synthetic
    out = tmp_path / "exported"
    for _ in range(2):
        assert main(["export-mmseg", "--model", str(deeplab_file), "--out", str(out), "--dataset", str(index.root),
                     "--split", "val"]) == 0  # fmt: skip
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pth", "config.py"]
    cfg = Config.fromfile(str(out / "config.py"))
    stored = json.loads(torch.load(deeplab_file, weights_only=True)["config"])
    assert cfg.model.decode_head.to_dict() == stored["model"]["decode_head"]
    assert cfg.test_dataloader.dataset.dataset_dir == str(index.root)
    model = init_model(str(out / "config.py"), str(out / "checkpoint.pth"), device="cpu")
    assert model.dataset_meta["classes"] == list(index.classes)


def test_export_refuses_a_dataset_of_another_class_count(deeplab_file, tiny_synthetic, tmp_path, capsys,
                                                         monkeypatch):  # fmt: skip
    """Refused before the model is built (building it prints mmseg's warnings before the error line)."""
    import rpc.segmentation.predict as predict
    from rpc.cli import main

    def no_build(_cfg):
        raise AssertionError("the model was built before the dataset was checked")

    monkeypatch.setattr(predict.MODELS, "build", no_build)
    from rpc.data.synthetic import SyntheticSpec, generate_dataset
    from rpc.data.voc import prepare_voc

    _, _, index = tiny_synthetic
    raw = generate_dataset(SyntheticSpec(classes=("disc", "square"), n_train=2, n_train_eval=1, n_val=1, size=32),
                           tmp_path / "raw")  # fmt: skip
    other = prepare_voc(raw, tmp_path / "three", name="synthetic")
    assert main(["export-mmseg", "--model", str(deeplab_file), "--out", str(tmp_path / "x"),
                 "--dataset", str(other.root)]) == 2  # fmt: skip
    assert _one_error_line(capsys) == (
        f"error: {deeplab_file}: a model of {index.num_classes} classes, but the "
        f"dataset {other.root} has 3; give --dataset a dataset of the model's classes"
    )
    assert not (tmp_path / "x").exists()


def test_an_unknown_decode_head_setting_is_named_before_the_model_is_built(deeplab_file, tiny_synthetic, tmp_path,
                                                                           capsys):  # fmt: skip
    """A key of model.decode_head that DeepLabV2Head does not take: one line naming the file and the key (the
    head itself says the same when an edited exported config.py names one)."""
    from rpc.cli import main
    from rpc.segmentation.deeplabv2 import DeepLabV2Head

    bad = _with_config(deeplab_file, tmp_path / "bad.pt", lambda c: c["model"]["decode_head"].update(dilation=3))
    _, _, index = tiny_synthetic
    predict = ["seg-predict", "--dataset", str(index.root), "--split", "val", "--out", str(tmp_path / "p")]
    for command in (["export-mmseg", "--out", str(tmp_path / "x")], predict):
        assert main([command[0], "--model", str(bad), *command[1:]]) == 2
        line = _one_error_line(capsys)
        assert line.startswith(f"error: {bad}: config.model.decode_head.dilation is not a setting of DeepLabV2Head "
                               "(it takes: act_cfg, align_corners, channels, "), line  # fmt: skip
    with pytest.raises(TypeError, match=r"^DeepLabV2Head: unknown setting 'dilation' \(it takes: act_cfg, "):
        DeepLabV2Head(in_channels=8, in_index=0, num_classes=3, dilation=3)


@pytest.mark.parametrize("command", ["seg-predict", "cams"])
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(command, tiny_synthetic, tmp_path, capsys):
    """An empty file, a text file, a pickle of objects weights-only loading refuses and a plain Python pickle, given
    as a model: one line naming the file, what it is and what was expected; weights-only loading is never switched
    off or advised off."""
    import argparse
    import pickle

    import torch

    from rpc.cli import main
    from rpc.utils.checkpoint_file import load_checkpoint

    _, _, index = tiny_synthetic
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("model weights: see the shared drive\n")
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pt")
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"state_dict": {}}, protocol=4))  # no torch.save at all
    whats = {"empty": "an empty file (0 bytes), not a torch checkpoint",
             "text": "a text file, not a torch checkpoint",
             "pickled": "holds pickled Python objects that are not allowed (argparse.Namespace); only tensors and "
                        "plain data are loaded, never code",
             "plain": "a plain Python pickle, not a torch checkpoint: pickled Python objects are not "
                      "loaded"}  # fmt: skip
    expected = {"seg-predict": "a DeepLab model file written by `python -m rpc seg-train` "
                               "(results/<run>/segmentation/model.pt)",
                "cams": "a classifier model file written by `python -m rpc train` (its --out)"}[command]  # fmt: skip
    args = [command, "--dataset", str(index.root), "--split", "val", "--out", str(tmp_path / "out")]
    for name, what in whats.items():
        model = tmp_path / f"{name}.pt"
        with pytest.raises(DataError) as caught:
            load_checkpoint(model)
        assert str(caught.value).startswith(f"{model}: {what}; expected a model file or checkpoint written by ")
        assert main([*args, "--model", str(model)]) == 2
        assert _one_error_line(capsys) == f"error: {model}: {what}; expected {expected}"
        assert "weights_only" not in str(caught.value)

"""The pretraining corpus: its classes, its disjointness from the synthetic benchmark, and the pretrained
weights it produces (loadable by the classifiers and by mmseg's DeepLab backbone)."""

import colorsys
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from rpc.data.corpus import (
    BENCHMARK_HUES,
    COLOUR_FAMILIES,
    HUE_MARGIN,
    MAX_SATURATION,
    NUM_CLASSES,
    SHAPES,
    TEXTURES,
    CorpusSpec,
    _texture,
    class_attributes,
    generate_corpus,
    hue_distance,
    render,
)
from rpc.data.synthetic import DEFAULT_CLASSES, class_colours, stripe_pattern


def orientation_concentration(pattern: np.ndarray, width: float = 10.0) -> float:
    """Share of a pattern's spectral energy (DC removed) within +-``width`` degrees of its strongest
    orientation: about 1 for a grating (stripes), much lower for isotropic or two-orientation patterns."""
    p = pattern - pattern.mean()
    energy = np.abs(np.fft.fftshift(np.fft.fft2(p))) ** 2
    n = p.shape[0]
    ky, kx = np.mgrid[-n // 2 : n // 2, -n // 2 : n // 2]
    angle = np.degrees(np.arctan2(ky, kx)) % 180
    energy[n // 2, n // 2] = 0
    per_angle = [energy[np.minimum(abs(angle - a), 180 - abs(angle - a)) <= width].sum() for a in range(180)]
    return max(per_angle) / energy.sum()


def test_classes_are_every_combination_once():
    combos = {class_attributes(k) for k in range(NUM_CLASSES)}
    assert NUM_CLASSES == 64 and len(combos) == 64
    assert {c[0] for c in combos} == set(SHAPES) and {c[1] for c in combos} == set(TEXTURES)
    with pytest.raises(ValueError, match="corpus label"):
        class_attributes(64)


def test_benchmark_hues_are_the_benchmark_generators_own():
    disc, _ = class_colours(len(DEFAULT_CLASSES))
    hues = [360 * colorsys.rgb_to_hsv(*(c / 255))[0] for c in disc]
    np.testing.assert_allclose(hues, BENCHMARK_HUES, atol=1e-6)


def test_hue_windows_keep_clear_of_every_benchmark_hue():
    for family in COLOUR_FAMILIES:
        for lo, hi in family:
            for hue in np.linspace(lo, hi, 61):
                assert min(hue_distance(hue, b) for b in BENCHMARK_HUES) >= HUE_MARGIN


def test_rendered_objects_avoid_benchmark_colours():
    # measured on the pixels: the median colour of each object lies >= 10 degrees from every benchmark hue
    # and below full saturation (the benchmark's discriminative parts are fully saturated)
    for i in range(128):
        rng = np.random.default_rng([7, i])
        image, mask, hue = render(i % NUM_CLASSES, 64, rng)
        assert min(hue_distance(hue, b) for b in BENCHMARK_HUES) >= HUE_MARGIN
        if class_attributes(i % NUM_CLASSES)[1] != "flat":
            continue  # textured objects mix shades; the flat ones show the base colour itself
        rgb = np.median(image[mask].astype(float), axis=0) / 255
        h, s, _ = colorsys.rgb_to_hsv(*rgb)
        assert min(hue_distance(360 * h, b) for b in BENCHMARK_HUES) >= 10, (i, 360 * h)
        assert s <= MAX_SATURATION + 0.08


def test_no_corpus_texture_is_a_grating_like_the_benchmark_stripes():
    for c in range(len(DEFAULT_CLASSES)):
        assert orientation_concentration(stripe_pattern(c, len(DEFAULT_CLASSES), 64)) > 0.8
    rng = np.random.default_rng(0)
    for texture in TEXTURES:
        if texture == "flat":
            continue
        for _ in range(6):
            assert orientation_concentration(_texture(texture, 64, rng)) < 0.5, texture


def test_corpus_is_deterministic_and_balanced():
    spec = CorpusSpec(size=32, images_per_class=2, val_per_class=1, seed=3)
    a, la = generate_corpus(spec, "train")
    b, lb = generate_corpus(spec, "train")
    np.testing.assert_array_equal(a, b)
    assert a.shape == (128, 32, 32, 3) and np.bincount(la).tolist() == [2] * 64
    v, _ = generate_corpus(spec, "val")
    assert not any(np.array_equal(v[i], a[i]) for i in range(len(v)))  # held-out images differ


@pytest.mark.slow
def test_pretrained_weights_load_into_classifier_and_deeplab(tmp_path):
    from rpc.engine.pretrain import PretrainConfig, pretrain_backbone
    from rpc.models.backbone import FrozenBNResNet

    cfg = PretrainConfig(size=32, images_per_class=4, val_per_class=1, epochs=2, batch_size=32, amp="none")
    result = pretrain_backbone(tmp_path / "b.pth", tmp_path / "work", cfg, tmp_path / "report.json")
    assert len(result["epochs"]) == 2 and 0 <= result["val_accuracy"] <= 1
    state = torch.load(tmp_path / "b.pth", weights_only=True)
    assert state["fc.weight"].shape == (NUM_CLASSES, 512)
    backbone = FrozenBNResNet(18, tmp_path / "b.pth")
    torch.testing.assert_close(backbone.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    torch.testing.assert_close(backbone.stem[1].running_var, state["bn1.running_var"])
    fresh = torch.load(tmp_path / "work" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(fresh[k], v) for k, v in state.items())  # out = the final epoch's weights

    from rpc.segmentation.compat import ensure_mmseg

    ensure_mmseg()
    from mmseg.registry import MODELS

    import rpc.segmentation.deeplabv2  # noqa: F401

    net = MODELS.build(dict(type="ResNet", depth=18, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                            init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "b.pth"))))  # fmt: skip
    net.init_weights()
    torch.testing.assert_close(net.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(net.norm1.weight, state["bn1.weight"])


def test_pretraining_resumes_only_the_same_recipe(tmp_path, logs):
    """A killed pretraining (checkpoint after epoch 1, no COMPLETE) rerun with other settings starts afresh instead
    of continuing the old run (or, with fewer epochs than the checkpoint, publishing it unfinished)."""
    from rpc.engine.pretrain import PretrainConfig, pretrain_backbone
    from rpc.utils.workdir import MARKER

    cfg = PretrainConfig(size=32, images_per_class=2, val_per_class=1, epochs=1, batch_size=32, amp="none")
    pretrain_backbone(tmp_path / "a.pth", tmp_path / "work", cfg)
    (tmp_path / "work" / MARKER).unlink()  # as if killed right after the epoch-1 checkpoint
    logs.read()
    same = pretrain_backbone(tmp_path / "b.pth", tmp_path / "work", PretrainConfig(**{**cfg.__dict__, "epochs": 2}))
    assert "started with other settings" in logs.read()
    assert [e["epoch"] for e in same["epochs"]] == [1, 2]  # both epochs trained, not resumed after epoch 1
    (tmp_path / "work" / MARKER).unlink()
    again = pretrain_backbone(tmp_path / "c.pth", tmp_path / "work", PretrainConfig(**{**cfg.__dict__, "epochs": 2}))
    assert "resumed from" in logs.read() and len(again["epochs"]) == 2  # same recipe: resumes


def test_a_pretraining_is_taken_from_the_machines_cache_only_for_the_same_recipe(tmp_path, monkeypatch, logs):
    """The second run of the same recipe copies the first run's files (no corpus is generated, nothing trains);
    another recipe trains; a cached file that does not match its recorded digest is not used."""
    from rpc.engine import pretrain as pretrain_module
    from rpc.engine.pretrain import PretrainConfig, pretrain_backbone

    monkeypatch.setenv("RPC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RPC_PRETRAIN_CACHE", "1")
    cfg = PretrainConfig(size=32, images_per_class=2, val_per_class=1, epochs=1, batch_size=32, amp="none")
    first = pretrain_backbone(tmp_path / "a.pth", tmp_path / "wa", cfg, tmp_path / "a.json")
    (cached,) = (tmp_path / "cache" / "pretrain").glob("*/backbone.pth")  # this recipe's entry
    generated = []
    real = pretrain_module.generate_corpus
    monkeypatch.setattr(pretrain_module, "generate_corpus", lambda *a, **k: generated.append(1) or real(*a, **k))
    logs.read()
    again = pretrain_backbone(tmp_path / "b.pth", tmp_path / "wb", cfg, tmp_path / "b.json")
    assert not generated and "from the machine's cache" in logs.read() and not (tmp_path / "wb").exists()
    assert (tmp_path / "a.pth").read_bytes() == (tmp_path / "b.pth").read_bytes()
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text() and again == first
    other = PretrainConfig(**{**cfg.__dict__, "lr": 0.05})
    pretrain_backbone(tmp_path / "c.pth", tmp_path / "wc", other)
    assert generated  # another recipe: trained
    for entry in (tmp_path / "cache" / "pretrain").glob("*/backbone.pth"):
        entry.write_bytes(entry.read_bytes()[:-8] + b"tampered")
    generated.clear()
    pretrain_backbone(tmp_path / "d.pth", tmp_path / "wd", cfg)
    assert generated and "does not match its record" in logs.read()  # not used: trained again
    assert cached.read_bytes() == (tmp_path / "d.pth").read_bytes()  # and stored again


def test_the_pretraining_cache_key_follows_every_module_pretraining_imports(tmp_path):
    """A changed normalisation constant (rpc/data/transforms.py, imported by pretraining) gives another key, so the
    cache cannot hand back a backbone made by other code; a module pretraining never imports changes nothing."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import rpc

    shutil.copytree(Path(rpc.__file__).parent, tmp_path / "rpc", ignore=shutil.ignore_patterns("__pycache__"))
    script = ("import json, torch; from rpc.engine.pretrain import PretrainConfig; "
              "from rpc.engine.pretrain_cache import cache_key; "
              "print(json.dumps(cache_key(PretrainConfig(), torch.device('cpu'))))")  # fmt: skip

    def key():
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path)  # fmt: skip
        return json.loads(out.stdout)

    def edit(relative, old, new):
        path = tmp_path / "rpc" / relative
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    first = key()
    assert {"torch", "torchvision", "numpy", "pillow"} <= set(first)
    edit("evaluation/summary.py", '"""', '"""Edited. ')  # not imported by pretraining
    assert key() == first
    edit("data/transforms.py", "IMAGENET_MEAN = np.array([0.485,", "IMAGENET_MEAN = np.array([0.5,")
    changed = key()
    assert changed["code"] != first["code"] and {k: v for k, v in changed.items() if k != "code"} == {
        k: v for k, v in first.items() if k != "code"}


_PRETRAIN_TINY = """
import sys, torch
torch.set_num_threads(int(sys.argv[2]))  # what the job was given
from rpc.engine.pretrain import PretrainConfig, pretrain_backbone
cfg = PretrainConfig(size=32, images_per_class=4, val_per_class=1, epochs=1, batch_size=64, amp="none",
                     threads=int(sys.argv[3]))
pretrain_backbone(sys.argv[1] + "/b.pth", sys.argv[1] + "/work", cfg, cache=False)
"""


def _tiny_pretraining(folder, job_threads, threads):
    import subprocess
    import sys

    folder.mkdir()
    subprocess.run([sys.executable, "-c", _PRETRAIN_TINY, str(folder), str(job_threads), str(threads)], check=True,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})  # fmt: skip
    return torch.load(folder / "b.pth", weights_only=True)


def test_the_pretrained_weights_do_not_depend_on_the_jobs_thread_count(tmp_path):
    """pretrain.threads fixes the threads the pretraining computes with: jobs given 1 or 3 threads write the same
    weights (with the job's own thread count, 0, they differ: oneDNN splits the reductions by thread)."""
    one, three = _tiny_pretraining(tmp_path / "a", 1, 2), _tiny_pretraining(tmp_path / "b", 3, 2)
    assert all(torch.equal(one[k], three[k]) for k in one)
    own_one, own_three = _tiny_pretraining(tmp_path / "c", 1, 0), _tiny_pretraining(tmp_path / "d", 3, 0)
    assert not all(torch.equal(own_one[k], own_three[k]) for k in own_one)

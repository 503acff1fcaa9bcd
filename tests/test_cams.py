"""RS-CAM inference (batching, resume, stage maps), Local.Maps evaluation and figures."""

import numpy as np
import pytest
import torch
from PIL import Image

from rpc.cams.generate import loader_workers, make_rs_cams, pyramid_on_device
from rpc.data.maps import load_cams, save_cams
from rpc.evaluation.figures import LEGEND_HEIGHT, TITLE_HEIGHT, legend_entries, make_figures, mask_panel
from rpc.evaluation.local_maps import evaluate_cams
from rpc.models.checkpoint import save_model
from rpc.models.rpc import RPCModel, config_to_dict, make_config
from rpc.utils.io import DataError


@pytest.fixture(scope="module")
def model_file(tiny_synthetic, tmp_path_factory):
    """An untrained 2-stage RPC model (ResNet-18) with non-trivial classifier weights. Its inference seeds come from
    the label-masked CAM: with random weights SIPE's rule gives most pixels to absent classes, and empty maps."""
    _, _, index = tiny_synthetic
    cfg = make_config("rpc", depth=18, weights="none", num_classes=index.num_classes - 1, inference_seed_cam="masked")
    torch.manual_seed(0)
    model = RPCModel(cfg)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, model, config_to_dict(cfg), list(index.classes), {})
    return path


def test_loader_workers_auto_leaves_cpu_cores_to_the_model_and_feeds_a_gpu(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert loader_workers("auto", torch.device("cpu")) == 0
    assert loader_workers("auto", torch.device("cuda")) == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    assert loader_workers("auto", torch.device("cuda")) == 4  # more gained little (H200: 6.7 -> 7.0 img/s)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert loader_workers("auto", torch.device("cuda")) == 1
    assert loader_workers("3", torch.device("cpu")) == 3 and loader_workers(0, torch.device("cuda")) == 0
    with pytest.raises(ValueError, match="auto or a number"):
        loader_workers("many", torch.device("cpu"))


def test_batched_maps_equal_single_image_maps(tiny_synthetic, model_file, tmp_path):
    _, _, index = tiny_synthetic
    kw = dict(scales=(1.0, 0.5), save_stages=True, num_workers=0, amp="none")
    one = make_rs_cams(model_file, index.root, "val", tmp_path / "b1", batch_size=1, **kw)
    four = make_rs_cams(model_file, index.root, "val", tmp_path / "b4", batch_size=4, **kw)
    assert one["images"] == four["images"] == 8
    for name in index.names("val"):
        k1, c1, s1 = load_cams(tmp_path / "b1" / f"{name}.npz", stages=True)
        k4, c4, s4 = load_cams(tmp_path / "b4" / f"{name}.npz", stages=True)
        assert k1.tolist() == k4.tolist() == [0] + [int(i) + 1 for i in np.nonzero(index.label(name))[0]]
        np.testing.assert_allclose(c1, c4, atol=2e-3)  # batched and single forward passes sum in other orders
        assert c1.shape == (len(k1), 96, 96) and s1.shape == (2, len(k1), 96, 96)
        peaks = c1.max((1, 2))  # each channel max-normalised (an all-zero channel stays zero)
        assert peaks[1:].max() == pytest.approx(1.0, abs=2e-3)
        np.testing.assert_allclose(peaks[peaks > 1e-3], 1.0, atol=2e-3)


def test_device_pyramid_maps_equal_the_host_pyramid_maps(tiny_synthetic, model_file, tmp_path):
    """Scales and flips built on the model's device (here the CPU) give the host path's maps within float16
    storage (2e-3 on maps in [0, 1]; the inputs are the same values, tests/test_transforms.py)."""
    _, _, index = tiny_synthetic
    kw = dict(scales=(1.0, 0.5, 1.5, 2.0), save_stages=True, num_workers=0, amp="none", batch_size=4)
    host = make_rs_cams(model_file, index.root, "val", tmp_path / "host", pyramid="host", **kw)
    device = make_rs_cams(model_file, index.root, "val", tmp_path / "device", pyramid="device", **kw)
    assert (host["pyramid"], device["pyramid"]) == ("host", "device") and host["images"] == device["images"] == 8
    for name in index.names("val"):
        kh, ch, sh = load_cams(tmp_path / "host" / f"{name}.npz", stages=True)
        kd, cd, sd = load_cams(tmp_path / "device" / f"{name}.npz", stages=True)
        assert kh.tolist() == kd.tolist()
        np.testing.assert_allclose(cd, ch, atol=2e-3)
        np.testing.assert_allclose(sd, sh, atol=2e-3)
    assert pyramid_on_device("auto", torch.device("cuda")) and not pyramid_on_device("auto", torch.device("cpu"))
    assert pyramid_on_device("device", torch.device("cpu")) and not pyramid_on_device("host", torch.device("cuda"))
    with pytest.raises(ValueError, match="auto, device or host"):
        pyramid_on_device("gpu", torch.device("cpu"))


def test_maps_resume_skips_complete_and_redoes_truncated(tiny_synthetic, model_file, tmp_path):
    _, _, index = tiny_synthetic
    out = tmp_path / "maps"
    make_rs_cams(
        model_file, index.root, "val", out, shard_index=1, num_shards=2, scales=(1.0,), num_workers=0, amp="none"
    )
    names = index.names("val")[1::2]
    assert sorted(p.stem for p in out.glob("*.npz")) == sorted(names)
    victim = out / f"{names[0]}.npz"
    reference = load_cams(victim)[1]
    victim.write_bytes(victim.read_bytes()[:100])
    again = make_rs_cams(
        model_file, index.root, "val", out, shard_index=1, num_shards=2, scales=(1.0,), num_workers=0, amp="none"
    )
    assert again["images"] == 1 and again["skipped"] == len(names) - 1
    np.testing.assert_allclose(load_cams(victim)[1], reference, atol=2e-3)  # batch of 1 vs batch of 4


def test_maps_refuse_a_model_for_other_classes(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    cfg = make_config("cam", depth=18, weights="none", num_classes=3)
    save_model(tmp_path / "m.pt", RPCModel(cfg), config_to_dict(cfg), ["background", "a", "b", "c"], {})
    with pytest.raises(DataError, match="trained on classes"):
        make_rs_cams(tmp_path / "m.pt", index.root, "val", tmp_path / "o", num_workers=0)


def _gt_cams(index, split, out):
    for name in index.names(split):
        gt = index.read_mask(name)
        keys = np.array([0] + [int(i) + 1 for i in np.nonzero(index.label(name))[0]])
        save_cams(out / f"{name}.npz", keys, np.stack([(gt == k).astype(np.float32) for k in keys]))


def test_local_maps_of_ground_truth_maps_score_one(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    _gt_cams(index, "val", tmp_path)
    result = evaluate_cams(index.root, "val", [tmp_path])
    assert result["sipe"]["miou"] == pytest.approx(1.0)
    assert result["empty_foreground_maps"] == {"final": 0.0, "stages": None}
    # one-hot maps: every threshold below 1 separates foreground exactly
    assert list(result["irn"]["sweep"].values()) == pytest.approx([1.0] * 20)
    assert result["irn"]["at_edge"] is False  # a plateau is not a best at the edge


def test_local_maps_irn_sweep_finds_the_right_threshold(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    for name in index.names("val"):  # foreground maps at 0.32 on the object, 0 elsewhere; no background channel
        gt = index.read_mask(name)
        keys = np.array([0] + [int(i) + 1 for i in np.nonzero(index.label(name))[0]])
        cams = np.stack([np.zeros(gt.shape, np.float32)] + [0.32 * (gt == k) for k in keys[1:]])
        save_cams(tmp_path / f"{name}.npz", keys, cams)
    result = evaluate_cams(index.root, "val", tmp_path)
    assert result["irn"]["best_miou"] == pytest.approx(1.0)
    assert result["irn"]["sweep"]["0.35"] < 0.5 and result["irn"]["sweep"]["0.30"] == pytest.approx(1.0)


def test_local_maps_irn_best_at_the_edge_of_the_sweep_is_flagged(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    for name in index.names("val"):  # foreground 1.0 on the object and 0.93 elsewhere: only t = 0.95 separates
        gt = index.read_mask(name)
        keys = np.array([0] + [int(i) + 1 for i in np.nonzero(index.label(name))[0]])
        cams = np.stack([np.zeros(gt.shape, np.float32)] + [np.where(gt == k, 1.0, 0.93) for k in keys[1:]])
        save_cams(tmp_path / f"{name}.npz", keys, cams.astype(np.float32))
    result = evaluate_cams(index.root, "val", tmp_path)
    assert result["irn"]["best_threshold"] == 0.95 and result["irn"]["at_edge"] is True
    assert result["irn"]["best_miou"] > result["irn"]["sweep"]["0.90"]


def test_empty_foreground_maps_are_counted(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    _gt_cams(index, "val", tmp_path)
    name = index.names("val")[0]  # one present class of one image gets an all-zero map (no seeds)
    keys, cams = load_cams(tmp_path / f"{name}.npz")
    cams[1] = 0
    save_cams(tmp_path / f"{name}.npz", keys, cams)
    total = sum(int(index.label(n).sum()) for n in index.names("val"))
    result = evaluate_cams(index.root, "val", tmp_path)
    assert result["empty_foreground_maps"]["final"] == pytest.approx(1 / total)


def test_local_maps_errors_name_the_file(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    _gt_cams(index, "val", tmp_path)
    name = index.names("val")[0]
    keys, cams = load_cams(tmp_path / f"{name}.npz")
    save_cams(tmp_path / f"{name}.npz", keys, cams[:, :, :-2])
    with pytest.raises(DataError, match=f"{name}.npz: map size"):
        evaluate_cams(index.root, "val", tmp_path)
    (tmp_path / f"{name}.npz").unlink()
    with pytest.raises(DataError, match=f"no map {name}.npz"):
        evaluate_cams(index.root, "val", tmp_path)


def test_figures_show_each_panel(tiny_synthetic, model_file, tmp_path):
    _, _, index = tiny_synthetic
    names = index.names("val")[:2]
    make_rs_cams(model_file, index.root, "val", tmp_path / "maps", scales=(1.0,), save_stages=True, num_workers=0)
    paths = make_figures(index.root, names, tmp_path / "fig", [tmp_path / "maps"], {})
    fig = np.asarray(Image.open(paths[0]).convert("RGB"))
    # image | stage 1 | stage 2 | RS-CAM | ground truth, 96 px each, under a title strip, over a legend strip
    assert fig.shape == (96 + TITLE_HEIGHT + LEGEND_HEIGHT, 5 * 96, 3)
    panels = fig[TITLE_HEIGHT : TITLE_HEIGHT + 96]
    np.testing.assert_array_equal(panels[:, 4 * 96 :], mask_panel(index.read_mask(names[0])))
    np.testing.assert_array_equal(panels[:, :96], index.read_image(names[0]))
    # the legend names every class of the ground truth in its colour, and the maps' ramp
    gt = index.read_mask(names[0])
    entries = legend_entries([gt], list(index.classes), with_maps=True)
    assert [label for label, _ in entries] == [index.classes[v] for v in np.unique(gt) if v != 255] + ["map 0..1"]
    legend = fig[TITLE_HEIGHT + 96 :]
    for _, colour in entries[:-1]:  # each swatch's colour is in the strip
        assert (legend == colour).all(-1).any()


def test_the_legend_explains_the_uncertain_white():
    mask = np.array([[0, 1], [255, 255]], np.uint8)
    entries = legend_entries([mask], ["background", "cat"], with_maps=False)
    assert entries == [("background", (0, 0, 0)), ("cat", (128, 0, 0)), ("uncertain (255, white)", (255, 255, 255))]


def test_images_of_mixed_sizes_share_batches_by_size(tmp_path, monkeypatch):
    """A folder of interleaved sizes (VOC, COCO, a user's own) is grouped by size, so batches stay full; the maps
    equal those computed one image at a time."""
    import rpc.cams.generate as generate
    from rpc.data.synthetic import SyntheticSpec, generate_dataset
    from rpc.data.voc import prepare_voc

    raw = generate_dataset(SyntheticSpec(n_train=8, n_train_eval=4, n_val=8, size=64), tmp_path / "raw")
    index = prepare_voc(raw, tmp_path / "prepared", name="synthetic")
    names = index.names("val")
    for name in names[1::2]:  # every other image becomes 48 x 80: sizes interleave
        path = index.image_path(name)
        Image.open(path).resize((80, 48)).save(path, quality=95)
    order = generate.by_size(index, names)
    assert order == names[0::2] + names[1::2]  # one run per size, the split's order kept within a size
    cfg = make_config("rpc", depth=18, weights="none", num_classes=index.num_classes - 1)
    torch.manual_seed(0)
    save_model(tmp_path / "m.pt", RPCModel(cfg), config_to_dict(cfg), list(index.classes), {})
    seen = []
    infer = generate._infer_batch
    monkeypatch.setattr(
        generate, "_infer_batch", lambda model, batch, *a: (seen.append(len(batch)), infer(model, batch, *a))
    )
    kw = dict(scales=(1.0, 0.5), num_workers=0, amp="none")
    make_rs_cams(tmp_path / "m.pt", index.root, "val", tmp_path / "b4", batch_size=4, **kw)
    assert seen == [4, 4]  # without grouping: 8 batches of one image
    make_rs_cams(tmp_path / "m.pt", index.root, "val", tmp_path / "b1", batch_size=1, **kw)
    for name in names:
        (k4, c4), (k1, c1) = load_cams(tmp_path / "b4" / f"{name}.npz"), load_cams(tmp_path / "b1" / f"{name}.npz")
        assert k4.tolist() == k1.tolist()
        np.testing.assert_allclose(c4, c1, atol=2e-3)

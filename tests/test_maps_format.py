"""The map file format: 65535 levels per channel stored as row differences, deflated. A quarter of SIPE's float32
maps at most, the earlier float16 files still read, and scores within 0.1 mIoU of the float maps they store."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from rpc.data.maps import load_cams, save_cams
from rpc.evaluation.local_maps import evaluate_cams
from rpc.utils.io import save_npz_atomic


def _smooth_maps(shape, seed):
    """RS-CAM-like maps: smooth, >= 0, each channel max-normalised."""
    rng = np.random.default_rng(seed)
    maps = np.stack([gaussian_filter(rng.random(shape[1:]), 12) for _ in range(shape[0])]).astype(np.float32)
    maps -= maps.min((1, 2), keepdims=True)
    return maps / maps.max((1, 2), keepdims=True)


def test_round_trip_within_half_a_level_and_zero_channels_stay_zero(tmp_path):
    cams = _smooth_maps((3, 40, 50), 0) * np.array([1.0, 0.5, 0.0], np.float32)[:, None, None]
    stages = np.stack([cams, cams * 0.25])
    save_cams(tmp_path / "a.npz", np.array([0, 4, 9]), cams, stages)
    keys, back, back_stages = load_cams(tmp_path / "a.npz", stages=True)
    assert keys.tolist() == [0, 4, 9] and back.dtype == np.float32
    for orig, got in ((cams, back), (stages, back_stages)):
        step = orig.max(axis=(-2, -1), keepdims=True) / 65535
        assert (np.abs(got - orig) <= step / 2 + 1e-7).all()
        np.testing.assert_array_equal(got.max(axis=(-2, -1)), orig.max(axis=(-2, -1)))  # peaks exact
    assert (back[2] == 0).all()
    with np.load(tmp_path / "a.npz") as z:
        assert z["cams"].dtype == np.uint16 and z["cams_scale"].dtype == np.float32


def test_a_voc_sized_map_takes_at_most_a_quarter_of_sipes_float32(tmp_path):
    """A map as inference makes it: a stride-16 grid upsampled bilinearly to VOC's typical size."""
    import torch
    import torch.nn.functional as F

    grid = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(1))  # background + 2 classes
    cams = F.interpolate(grid, (375, 500), mode="bilinear", align_corners=False)[0].numpy()
    cams /= cams.max((1, 2), keepdims=True)
    save_cams(tmp_path / "a.npz", np.array([0, 3, 15]), cams)
    sipe_bytes = cams.size * 4  # SIPE's IS_CAM: float32 maps of the present classes
    assert (tmp_path / "a.npz").stat().st_size <= sipe_bytes / 4


def test_files_of_the_earlier_float16_format_still_load(tmp_path):
    cams = _smooth_maps((2, 16, 20), 2)
    save_npz_atomic(tmp_path / "old.npz", keys=np.array([0, 1], np.int16), cams=cams.astype(np.float16))
    keys, back = load_cams(tmp_path / "old.npz")
    np.testing.assert_array_equal(back, cams.astype(np.float16).astype(np.float32))


def test_scores_of_stored_maps_equal_the_float_maps_within_a_tenth(tiny_synthetic, tmp_path):
    """Maps near the ground truth (blurred one-hot plus noise) scored from the earlier float16 files and from the
    current files: Local.Maps and the IRN sweep's best agree within 0.1 mIoU."""
    _, _, index = tiny_synthetic
    rng = np.random.default_rng(3)
    for folder in ("f16", "cur"):
        (tmp_path / folder).mkdir()
    for name in index.names("train"):
        gt = index.read_mask(name)
        keys = np.concatenate([[0], np.flatnonzero(index.label(name)) + 1])
        maps = np.stack([gaussian_filter((gt == k).astype(np.float32), 3) for k in keys]) + 0.3 * rng.random(
            (len(keys), *gt.shape), dtype=np.float32)  # fmt: skip
        maps /= maps.max((1, 2), keepdims=True)
        save_npz_atomic(tmp_path / "f16" / f"{name}.npz", keys=keys.astype(np.int16), cams=maps.astype(np.float16))
        save_cams(tmp_path / "cur" / f"{name}.npz", keys, maps)
    old, new = (evaluate_cams(index.root, "train", tmp_path / f) for f in ("f16", "cur"))
    assert 0.2 < old["sipe"]["miou"] < 0.98
    assert new["sipe"]["miou"] == pytest.approx(old["sipe"]["miou"], abs=1e-3)
    assert new["irn"]["best_miou"] == pytest.approx(old["irn"]["best_miou"], abs=1e-3)

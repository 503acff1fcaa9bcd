"""Dense CRF: unaries, the two-pass confident labelling, pseudo masks on real VOC images, bad input, resume."""

import dataclasses
import os

import numpy as np
import pytest
from PIL import Image, ImageFilter

import rpc.crf.pseudo as pseudo
from rpc.data.maps import save_cams
from rpc.data.palette import read_mask, write_mask
from rpc.evaluation.masks import evaluate_mask_dir
from rpc.models.dense_crf import PSEUDO_MASK_CRF, crf_from_labels, crf_from_probs, label_unary, parse_params
from rpc.utils.io import DataError, is_temporary


def test_label_unary_energies():
    labels = np.array([[0, 2], [1, 1]])
    u = label_unary(labels, 3, 0.7)
    assert u.shape == (3, 2, 2)
    assert u[0, 0, 0] == pytest.approx(-np.log(0.7)) and u[1, 0, 0] == pytest.approx(-np.log(0.15))
    assert u[2, 0, 1] == pytest.approx(-np.log(0.7)) and u[0, 1, 1] == pytest.approx(-np.log(0.15))
    # the given label always has the lowest energy
    assert (np.argmin(u, 0) == labels).all()
    # and it equals pydensecrf's own helper (IRN builds its unary with it)
    from pydensecrf.utils import unary_from_labels

    many = np.random.default_rng(0).integers(0, 4, (5, 7))
    reference = unary_from_labels(many, 4, gt_prob=0.7, zero_unsure=False).reshape(4, 5, 7)
    np.testing.assert_allclose(label_unary(many, 4, 0.7), reference, rtol=1e-6)


def _two_region_image(h=48, w=64):
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2] = (200, 40, 40)
    image[:, w // 2 :] = (30, 60, 220)
    truth = np.zeros((h, w), np.int64)
    truth[:, w // 2 :] = 1
    return image, truth


def test_crf_cleans_label_noise_along_image_edges():
    image, truth = _two_region_image()
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random(truth.shape) < 0.25, 1 - truth, truth)
    refined = crf_from_labels(image, noisy, 2)
    assert (noisy == truth).mean() < 0.8
    assert (refined == truth).mean() > 0.99


def test_crf_from_probs_returns_marginals_that_follow_the_image():
    image, truth = _two_region_image()
    probs = np.full((2, *truth.shape), 0.5, np.float32)
    probs[1, :, 28:36] = 0.9  # a blurry, misplaced boundary: columns 28..35 lean to class 1
    probs[0] = 1 - probs[1]
    probs[1, :, 36:], probs[0, :, 36:] = 0.95, 0.05
    probs[0, :, :28], probs[1, :, :28] = 0.95, 0.05
    q = crf_from_probs(image, probs)
    assert q.shape == probs.shape
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)
    # the appearance kernel pulls columns 28..31 (red) back to class 0
    assert (q.argmax(0) == truth).mean() > 0.99


def test_crf_rejects_mismatched_image():
    with pytest.raises(ValueError, match="differs from the map size"):
        crf_from_labels(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12), np.int64), 2)
    with pytest.raises(ValueError, match="uint8"):
        crf_from_labels(np.zeros((10, 10, 3), np.float32), np.zeros((10, 10), np.int64), 2)


def test_confident_labels_combines_the_two_passes(monkeypatch):
    # with the CRF replaced by the identity, the combination rule is visible pixel by pixel
    monkeypatch.setattr(pseudo, "crf_from_labels", lambda image, labels, n, p: labels)
    keys = np.array([0, 7])
    cams = np.array([[[0.9, 0.6, 0.2]], [[0.2, 0.4, 0.8]]], np.float32)  # (2 keys, 1, 3 pixels)
    mask = pseudo.confident_labels(np.zeros((1, 3, 3), np.uint8), keys, cams)
    # sure background (0.45 > 0.2) | background only at full strength (0.3 < 0.4) -> uncertain | foreground
    assert mask.tolist() == [[0, 255, 7]]
    assert cams[0, 0, 0] == pytest.approx(0.9)  # the input maps are not modified


def test_parse_params():
    p = parse_params(["bilateral_sxy=80", "iterations=5"], PSEUDO_MASK_CRF)
    assert p.bilateral_sxy == 80 and p.iterations == 5 and p.gauss_sxy == PSEUDO_MASK_CRF.gauss_sxy
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_params(["sxy=3"], PSEUDO_MASK_CRF)


def _gt_maps(index, name, blur: float):
    """Maps made from the ground truth: per key the one-hot region, Gaussian-blurred, in [0, 1]."""
    gt = index.read_mask(name)
    keys = np.array([0] + [int(i) + 1 for i in np.nonzero(index.label(name))[0]])
    maps = []
    for k in keys:
        onehot = Image.fromarray(((gt == k) * 255).astype(np.uint8))
        maps.append(np.asarray(onehot.filter(ImageFilter.GaussianBlur(blur)), np.float32) / 255)
    return keys, np.stack(maps)


@pytest.fixture(scope="module")
def voc_seg(voc_root, tmp_path_factory):
    """The real VOC images that have SegmentationClass masks (the trainval list, 10 images)."""
    from rpc.data.voc import prepare_voc

    return prepare_voc(voc_root, tmp_path_factory.mktemp("voc_seg"), splits=("trainval",))


@pytest.fixture(scope="module")
def voc_maps(voc_seg, tmp_path_factory):
    """Two map folders for the real VOC trainval images: blurred ground truth, and uniform maps."""
    good, flat = tmp_path_factory.mktemp("good_maps"), tmp_path_factory.mktemp("flat_maps")
    for name in voc_seg.names("trainval"):
        keys, maps = _gt_maps(voc_seg, name, blur=6)
        save_cams(good / f"{name}.npz", keys, maps)
        save_cams(flat / f"{name}.npz", keys, np.full_like(maps, 0.5))
    return good, flat


def test_pseudo_masks_on_real_voc_recover_blurred_ground_truth(voc_seg, voc_maps, tmp_path):
    good, flat = voc_maps
    out = tmp_path / "good"
    result = pseudo.make_pseudo_masks(voc_seg.root, "trainval", good, out, workers=2)
    assert result["images"] == 10 and result["crf_s"] > 0
    score = evaluate_mask_dir(voc_seg, "trainval", out, uncertain="background")
    # argmax of these maps alone scores 0.98; the CRF keeps large objects (> 0.84 IoU) but erodes the
    # thin and small ones, as IRN's CRF does (bottle 0.10, bicycle 0.69): measured 0.805 overall
    assert score["miou"] > 0.75, score["per_class_iou"]
    large = ("background", "bus", "car", "dog", "person", "sheep", "sofa")
    assert min(score["per_class_iou"][c] for c in large) > 0.8
    assert 0 < score["uncertain_fraction"] < 0.1  # only a band along the blurred boundaries
    ignored = evaluate_mask_dir(voc_seg, "trainval", out, uncertain="ignore")
    assert ignored["miou"] >= score["miou"]
    # uniform maps carry no location: every pixel ends uncertain and the masks score like all-background
    pseudo.make_pseudo_masks(voc_seg.root, "trainval", flat, tmp_path / "flat", workers=1)
    flat_score = evaluate_mask_dir(voc_seg, "trainval", tmp_path / "flat", uncertain="background")
    assert flat_score["uncertain_fraction"] > 0.95 and flat_score["miou"] < 0.1


def test_pseudo_masks_resume_and_redo_truncated(voc_seg, voc_maps, tmp_path):
    good, _ = voc_maps
    out = tmp_path / "m"
    names = voc_seg.names("trainval")
    pseudo.make_pseudo_masks(voc_seg.root, "trainval", good, out, shard_index=0, num_shards=2)
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(names[0::2])
    first = out / f"{names[0]}.png"
    reference = read_mask(first)
    first.write_bytes(first.read_bytes()[:50])  # truncated, as by a killed job
    kept = out / f"{names[2]}.png"
    stamp = kept.stat().st_mtime_ns
    result = pseudo.make_pseudo_masks(voc_seg.root, "trainval", good, out, shard_index=0, num_shards=2)
    assert result["images"] == 1 and result["skipped"] == len(names[0::2]) - 1
    assert (read_mask(first) == reference).all() and kept.stat().st_mtime_ns == stamp
    assert not [p for p in out.iterdir() if is_temporary(p)]  # no temporary files left


def test_pseudo_masks_bad_input_names_the_file(voc_seg, tmp_path):
    names = voc_seg.names("trainval")
    maps = tmp_path / "maps"
    for name in names:
        save_cams(maps / f"{name}.npz", *_gt_maps(voc_seg, name, blur=2))
    out = tmp_path / "out"
    write_mask(out / f"{names[0]}.png", np.zeros(voc_seg.read_mask(names[0]).shape, np.uint8))
    finished = (out / f"{names[0]}.png").read_bytes()

    save_cams(maps / "2099_000001.npz", np.array([0, 1]), np.zeros((2, 4, 4)))  # not in the list
    with pytest.raises(DataError, match="2099_000001.npz: map for an image that is not in split"):
        pseudo.make_pseudo_masks(voc_seg.root, "trainval", maps, out)
    os.remove(maps / "2099_000001.npz")

    os.rename(maps / f"{names[1]}.npz", tmp_path / "aside.npz")  # a list image without a map
    with pytest.raises(DataError, match=f"no map {names[1]}.npz"):
        pseudo.make_pseudo_masks(voc_seg.root, "trainval", maps, out)
    os.rename(tmp_path / "aside.npz", maps / f"{names[1]}.npz")

    keys, cams = _gt_maps(voc_seg, names[1], blur=2)
    save_cams(maps / f"{names[1]}.npz", np.append(keys, 20 if keys[-1] != 20 else 19), np.concatenate([cams, cams[:1]]))
    # (a folder of its own: `out` holds a mask without a settings record, which an in-place run refuses)
    with pytest.raises(DataError, match=f"{names[1]}.npz: keys .* disagree with the image labels"):
        pseudo.make_pseudo_masks(voc_seg.root, "trainval", maps, tmp_path / "out_keys")
    save_cams(maps / f"{names[1]}.npz", keys, cams[:, :-1])
    with pytest.raises(DataError, match=f"{names[1]}.npz: map size .* differs from the image size"):
        pseudo.make_pseudo_masks(voc_seg.root, "trainval", maps, tmp_path / "out_size")
    with pytest.raises(DataError, match=f"{out}: holds files made with settings it does not record"):
        pseudo.make_pseudo_masks(voc_seg.root, "trainval", maps, out)
    assert (out / f"{names[0]}.png").read_bytes() == finished  # finished work untouched


@pytest.mark.parametrize("shape, scale", [((375, 500), 1.0), ((500, 333), 1.0), ((480, 640), 1.0),
                                          ((128, 128), 128 / 500), ((96, 200), 200 / 500)])  # fmt: skip
def test_position_kernels_scale_with_the_long_side_below_vocs(shape, scale):
    """With reference_size 500: VOC (long side 500) and COCO (640) images keep the published widths; smaller images
    get them scaled by long side / 500; the colour width, the weights and the iterations never change; the default
    (reference_size 0) never scales."""
    from rpc.models.dense_crf import PSEUDO_MASK_CRF, SEGMENTATION_CRF, for_image

    for published in (PSEUDO_MASK_CRF, SEGMENTATION_CRF):
        assert published.reference_size == 0 and for_image(published, shape) == published
        p = dataclasses.replace(published, reference_size=500.0)
        q = for_image(p, shape)
        assert q.gauss_sxy == pytest.approx(p.gauss_sxy * scale) and q.bilateral_sxy == pytest.approx(
            p.bilateral_sxy * scale)
        assert (q.bilateral_srgb, q.gauss_compat, q.bilateral_compat, q.iterations) == (
            p.bilateral_srgb, p.gauss_compat, p.bilateral_compat, p.iterations)
    assert SEGMENTATION_CRF.bilateral_sxy == 67 and PSEUDO_MASK_CRF.bilateral_sxy == 50  # the published values
    off = dataclasses.replace(SEGMENTATION_CRF, reference_size=0)
    assert for_image(off, shape) == off


def test_the_crf_runs_with_the_scaled_kernels(monkeypatch):
    """The kernels pydensecrf receives are the scaled ones where asked (a 100 px image: a fifth of the published
    widths), the published ones by default."""
    from rpc.models import dense_crf

    seen = []
    real = dense_crf.dcrf.DenseCRF2D

    class Spy:
        def __init__(self, *args):
            self.d = real(*args)

        def __getattr__(self, name):
            return getattr(self.d, name)

        def addPairwiseGaussian(self, sxy, compat):  # noqa: N802 (pydensecrf's name)
            seen.append(("gauss", sxy))
            return self.d.addPairwiseGaussian(sxy=sxy, compat=compat)

        def addPairwiseBilateral(self, sxy, srgb, rgbim, compat):  # noqa: N802
            seen.append(("bilateral", sxy))
            return self.d.addPairwiseBilateral(sxy=sxy, srgb=srgb, rgbim=rgbim, compat=compat)

    monkeypatch.setattr(dense_crf.dcrf, "DenseCRF2D", Spy)
    image = np.zeros((100, 60, 3), np.uint8)
    scaled = dataclasses.replace(dense_crf.SEGMENTATION_CRF, reference_size=500.0)
    dense_crf.crf_from_probs(image, np.full((2, 100, 60), 0.5, np.float32), scaled)
    assert seen == [("gauss", pytest.approx(0.2)), ("bilateral", pytest.approx(67 / 5))]
    seen.clear()
    dense_crf.crf_from_probs(image, np.full((2, 100, 60), 0.5, np.float32))  # the default: published widths
    assert seen == [("gauss", 1), ("bilateral", 67)]

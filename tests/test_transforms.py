import numpy as np
import torch

from rpc.data.datasets import ClassificationTrainSet, MultiScaleInferenceSet
from rpc.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    multiscale_flip,
    normalize,
    random_crop,
    resize,
    train_transform,
)


def test_random_crop_pads_small_images_with_validity():
    img = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3) + 1
    out, valid = random_crop(img, 8, np.random.default_rng(0))
    assert out.shape == (8, 8, 3) and valid.sum() == 5 * 7
    ys, xs = np.nonzero(valid)
    np.testing.assert_array_equal(out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], img)
    assert (out[valid == 0] == 0).all()


def test_random_crop_of_large_image_is_a_window():
    img = np.random.default_rng(1).random((20, 30, 3)).astype(np.float32)
    out, valid = random_crop(img, 8, np.random.default_rng(2))
    assert valid.all()
    hits = [(y, x) for y in range(13) for x in range(23) if np.array_equal(img[y : y + 8, x : x + 8], out)]
    assert len(hits) == 1


def test_train_transform_is_reproducible_and_normalised():
    img = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    a, va = train_transform(img, np.random.default_rng(5), (40, 60), 48)
    b, vb = train_transform(img, np.random.default_rng(5), (40, 60), 48)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 48, 48) and va.shape == (48, 48)
    lo, hi = (0 - IMAGENET_MEAN) / IMAGENET_STD, (255 - IMAGENET_MEAN) / IMAGENET_STD
    inside = a[:, va > 0]
    assert (inside >= lo[:, None] - 1e-5).all() and (inside <= hi[:, None] + 1e-5).all()


def test_multiscale_flip_shapes_and_flip():
    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    outs = multiscale_flip(img, (1.0, 0.5, 1.5))
    assert [o.shape for o in outs] == [(2, 3, 30, 40), (2, 3, 15, 20), (2, 3, 45, 60)]
    np.testing.assert_array_equal(outs[0][1], outs[0][0][:, :, ::-1])
    np.testing.assert_allclose(outs[0][0], normalize(img).transpose(2, 0, 1))


def test_datasets_on_synthetic(tiny_synthetic):
    spec, _, index = tiny_synthetic
    ds = ClassificationTrainSet(index, "train_aug", long_side=(64, 128), crop=64, seed=3)
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["label"].shape == (len(spec.classes),)
    assert torch.equal(ds[0]["image"], item["image"])  # same epoch: same crop
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["image"], item["image"])
    inf = MultiScaleInferenceSet(index, index.names("val"), scales=(1.0, 0.5))
    it = inf[0]
    assert it["size"] == (96, 96) and [s.shape for s in it["scales"]] == [(2, 3, 96, 96), (2, 3, 48, 48)]


def test_resize_is_bicubic_as_sipe():
    # a step edge 50 | 200 upscaled 4x: bicubic overshoots on both sides of the edge (ringing), bilinear cannot
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, :4], img[:, 4:] = 50, 200
    out = resize(img, (16, 32)).astype(int)
    row = out[8, :, 0]
    assert row.min() < 50 and row.max() > 200
    assert row[0] == 50 and row[-1] == 200
    from PIL import Image

    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(img).resize((32, 16), Image.BICUBIC)))
    assert resize(img, (4, 8)) is img  # same size: untouched


def test_device_pyramid_equals_the_host_pyramid_on_real_images(voc_index):
    """The device pyramid (PIL's fixed-point bicubic as float64 matrix products) against the loaders' PIL pyramid:
    the same shapes, flips and order, and the same values exactly (a float resize, F.interpolate with antialias,
    differs at 15-22 % of the pixels, by up to 14 grey levels)."""
    import pytest

    from rpc.data.pyramid import device_pyramid

    scales = (1.0, 0.5, 1.5, 2.0)
    names = voc_index.names("train")[:3]
    for name in names:
        image = voc_index.read_image(name)
        device = device_pyramid(torch.from_numpy(np.array(image))[None], scales)
        for h, d in zip(multiscale_flip(image, scales), device, strict=True):
            np.testing.assert_array_equal(d.numpy(), h)
    two = np.stack([voc_index.read_image(names[0])] * 2)
    batch = next(device_pyramid(torch.from_numpy(two), (0.5,)))  # images of one size: image, flip, image, flip
    assert batch.shape[0] == 4 and torch.equal(batch[0], batch[2]) and torch.equal(batch[1], batch[0].flip(-1))
    with pytest.raises(ValueError, match="uint8"):
        next(device_pyramid(torch.zeros(1, 8, 8, 3), (1.0,)))


def test_pil_bicubic_equals_pil_for_any_size():
    """Shrinking by up to 9x, growing by up to 5x, one side only, odd sizes: pixel for pixel PIL's result."""
    from rpc.data.pyramid import pil_bicubic

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    img[10:20, 5:30] = 255  # sharp edges: PIL clips the overshoot between its two passes
    x = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    for size in [(4, 6), (37, 17), (90, 53), (185, 250), (19, 211), (1, 1)]:
        out = pil_bicubic(x, size)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(out, resize(img, size), err_msg=str(size))

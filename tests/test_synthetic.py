"""The synthetic benchmark: deterministic, VOC-format, and carrying the semantic gap it is designed for."""

import hashlib

import numpy as np

from rpc.data.index import read_image
from rpc.data.palette import read_mask
from rpc.data.synthetic import PART_DISC, PART_SUB, SyntheticSpec, generate_image


def _digest(arrays):
    return hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()


def test_deterministic_and_seeded():
    spec = SyntheticSpec()
    a, b = generate_image(spec, 3)[:3], generate_image(spec, 3)[:3]
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(generate_image(SyntheticSpec(seed=1), 3)[:3])
    assert _digest(a) != _digest(generate_image(spec, 4)[:3])


def test_written_dataset_is_voc_format(tiny_synthetic):
    spec, raw, index = tiny_synthetic
    assert index.classes == ("background",) + spec.classes
    assert len(index.names("train_aug")) == 24 and len(index.names("train")) == 12
    assert len(index.names("val")) == 8 and not set(index.names("val")) & set(index.names("train_aug"))
    for name in index.names("val"):
        mask = index.read_mask(name)
        present = sorted(int(v) for v in np.unique(mask) if v)
        # labels parsed from the written XML agree with the written mask
        assert present == [int(i) + 1 for i in np.nonzero(index.label(name))[0]]
        assert index.read_image(name).shape == (96, 96, 3)


def _part_pixels(raw, names):
    """Per part kind: list of (class, (N, 3) pixel colours) for each object part in the written files."""
    out = {PART_DISC: [], PART_SUB: []}
    for name in names:
        img = read_image(raw / "JPEGImages" / f"{name}.jpg").astype(np.float32)
        mask = read_mask(raw / "SegmentationClass" / f"{name}.png")
        parts = read_mask(raw / "SegmentationPart" / f"{name}.png")
        for c in np.unique(mask[mask > 0]):
            for kind in out:
                sel = (mask == c) & (parts == kind)
                # leave out a 2-pixel rim: JPEG blurs across the part boundary
                inner = sel.copy()
                for axis in (0, 1):
                    for shift in (-2, 2):
                        inner &= np.roll(sel, shift, axis=axis)
                if inner.sum() >= 10:
                    out[kind].append((int(c), img[inner]))
    return out


def test_parts_are_separable_and_class_specific(tmp_path):
    from rpc.data.synthetic import generate_dataset

    spec = SyntheticSpec(n_train=60, n_train_eval=30, n_val=0)
    raw = generate_dataset(spec, tmp_path)
    names = [f"syn_{i:05d}" for i in range(60)]
    parts = _part_pixels(raw, names)

    # 1. the two parts are separable pixel by pixel: saturation (max - min channel) splits them
    sat = {k: np.concatenate([np.ptp(p, axis=1) for _, p in v]) for k, v in parts.items()}
    threshold = 110.0
    acc = (np.mean(sat[PART_DISC] > threshold) + np.mean(sat[PART_SUB] <= threshold)) / 2
    assert acc > 0.97, acc

    # 2. both parts are class-specific: nearest class centroid of a part's mean colour, fitted on the first
    #    half of the images, recognises the class on the second half far above chance (1/6)
    results = {}
    for kind, items in parts.items():
        half = len(items) // 2
        feats = np.array([p.mean(0) for _, p in items])
        cls = np.array([c for c, _ in items])
        cents = np.array([feats[:half][cls[:half] == c].mean(0) for c in range(1, 7)])
        pred = np.argmin(((feats[half:, None] - cents[None]) ** 2).sum(-1), axis=1) + 1
        results[kind] = np.mean(pred == cls[half:])
        # and 3. how strong: spread of the class centroids relative to the pixel noise inside a part
        noise = np.mean([p.std(0).mean() for _, p in items])
        spread = np.linalg.norm(cents - cents.mean(0), axis=1).mean()
        results[(kind, "snr")] = spread / noise
    assert results[PART_DISC] > 0.95, results
    assert results[PART_SUB] > 0.8, results
    # the discriminative part is the much stronger cue
    assert results[(PART_DISC, "snr")] > 2 * results[(PART_SUB, "snr")], results


def test_the_tuning_split_shares_no_image_with_train_aug_or_val(tmp_path):
    """The DeepLab recipe is chosen on a tuning split: images of the same generator from another seed, none of
    which is a train_aug or val image of the benchmark (compared by pixels)."""
    import hashlib

    from rpc.data.synthetic import SyntheticSpec, generate_image, tuning_spec

    spec = SyntheticSpec(n_train=40, n_train_eval=10, n_val=20, size=64)
    tune = tuning_spec(spec, n=30)
    assert tune.seed != spec.seed and (tune.size, tune.classes, tune.max_objects) == (spec.size, spec.classes,
                                                                                       spec.max_objects)
    digest = lambda s, i: hashlib.sha256(generate_image(s, i)[0].tobytes()).hexdigest()  # noqa: E731
    benchmark = {digest(spec, i) for i in range(spec.n_train + spec.n_val)}
    tuning = {digest(tune, i) for i in range(tune.n_train, tune.n_train + tune.n_val)}  # its val images
    assert len(tuning) == 30 and not benchmark & tuning

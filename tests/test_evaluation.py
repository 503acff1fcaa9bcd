import json

import numpy as np
import pytest

from rpc.data.palette import write_mask
from rpc.evaluation.confusion import ConfusionMatrix, markdown_table
from rpc.evaluation.masks import evaluate_mask_dir


def _reference_iou(preds, gts, k):
    """Direct computation: per class, intersection and union counted over all pixels."""
    p = np.concatenate([x.ravel() for x in preds])
    g = np.concatenate([x.ravel() for x in gts])
    keep = g != 255
    p, g = p[keep], g[keep]
    out = []
    for c in range(k):
        inter = np.sum((p == c) & (g == c))
        union = np.sum((p == c) | (g == c))
        out.append(inter / union if union else np.nan)
    return np.array(out)


def test_matches_reference_on_random_data():
    rng = np.random.default_rng(0)
    k = 6
    preds = [rng.integers(0, k, (13, 17)) for _ in range(7)]
    gts = [np.where(rng.random((13, 17)) < 0.1, 255, rng.integers(0, k - 1, (13, 17))) for _ in range(7)]
    cm = ConfusionMatrix(k)
    for p, g in zip(preds, gts, strict=False):
        cm.update(p, g)
    ref = _reference_iou(preds, gts, k)
    np.testing.assert_allclose(cm.iou(), ref)
    assert cm.miou() == pytest.approx(np.nanmean(ref))
    # streaming: two halves merged equal the whole, and the state is a fixed K x K matrix
    a, b = ConfusionMatrix(k), ConfusionMatrix(k)
    for i, (p, g) in enumerate(zip(preds, gts, strict=False)):
        (a if i % 2 else b).update(p, g)
    a.merge(b)
    np.testing.assert_array_equal(a.matrix, cm.matrix)
    assert cm.matrix.shape == (k, k)


def test_absent_class_is_nan_and_skipped():
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1]]), np.array([[0, 1]]))
    iou = cm.iou()
    assert iou[0] == 1 and iou[1] == 1 and np.isnan(iou[2]) and cm.miou() == 1.0


def test_rejects_out_of_range_predictions():
    with pytest.raises(ValueError, match="outside"):
        ConfusionMatrix(3).update(np.array([[3]]), np.array([[0]]))


def test_real_voc_gt_vs_gt_and_known_perturbation(voc_index, tmp_path):
    names = voc_index.names("val")
    present = set()
    for n in names:
        gt = voc_index.read_mask(n)
        write_mask(tmp_path / "gt" / f"{n}.png", gt)
        present |= {int(v) for v in np.unique(gt) if v != 255}
    res = evaluate_mask_dir(voc_index, "val", tmp_path / "gt")
    for c, name in enumerate(voc_index.classes):
        v = res["per_class_iou"][name]
        assert (v == 1.0) if c in present else (v is None)
    assert res["miou"] == 1.0

    # perturbation: in one image predict its foreground class as background
    victim = names[0]
    gt = voc_index.read_mask(victim)
    fg = [int(v) for v in np.unique(gt) if v not in (0, 255)]
    c = fg[0]
    pred = np.where(gt == c, 0, gt)
    write_mask(tmp_path / "gt" / f"{victim}.png", pred)
    # expected from counts: class c loses its pixels of this image; background gains them as false positives
    tp_c = fp0 = 0
    tp0 = 0
    for n in names:
        g = voc_index.read_mask(n)
        tp_c += np.sum(g == c) - (np.sum(g == c) if n == victim else 0)
        tp0 += np.sum(g == 0)
    fp0 = np.sum(gt == c)
    total_c = sum(np.sum(voc_index.read_mask(n) == c) for n in names)
    res = evaluate_mask_dir(voc_index, "val", tmp_path / "gt")
    assert res["per_class_iou"][voc_index.classes[c]] == pytest.approx(tp_c / total_c)
    assert res["per_class_iou"]["background"] == pytest.approx(tp0 / (tp0 + fp0))
    json.dumps(res)
    assert "**mIoU**" in markdown_table(res)


def test_uncertain_conventions(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    for n in index.names("val"):
        gt = index.read_mask(n)
        write_mask(tmp_path / f"{n}.png", np.where(gt > 0, 255, gt))  # every object pixel uncertain
    as_bg = evaluate_mask_dir(index, "val", tmp_path, uncertain="background")
    ignored = evaluate_mask_dir(index, "val", tmp_path, uncertain="ignore")
    assert as_bg["per_class_iou"]["background"] < 1.0 and as_bg["miou"] < 0.5
    assert ignored["miou"] == 1.0 and ignored["uncertain_fraction"] > 0


def test_ablation_tables_average_seeds_and_compare_orderings(tmp_path):
    import yaml

    from rpc.evaluation.ablations import write_ablation_tables
    from rpc.evaluation.declared import DeclaredFiles
    from rpc.utils.io import DataError

    spec = {"seeds": [1, 2], "cells": {"a": {}, "b": {"seeds": [1]}, "c": {"seeds": [1, 2, 3]}},
            "tables": [{"title": "T", "rows": [{"label": "A", "cells": ["a"], "paper": 50.0},
                                                {"label": "B", "cells": ["b"], "paper": 60.0}]},
                       {"title": "U", "reference": "A", "rows": [{"label": "A", "cells": ["a"]},
                                                                 {"label": "C", "cells": ["c"]}]}]}  # fmt: skip
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    for run, miou in {"a-s1": 0.40, "a-s2": 0.50, "b-s1": 0.30, "c-s1": 0.45, "c-s2": 0.52, "c-s3": 0.9}.items():
        (tmp_path / run).mkdir()
        res = {"sipe": {"miou": miou}, "irn": {"best_miou": miou + 0.1}}
        (tmp_path / run / "local_maps.json").write_text(json.dumps(res))
    files = DeclaredFiles(sorted(tmp_path.glob("*/local_maps.json")), tmp_path)
    tables = write_ablation_tables(tmp_path / "spec.yaml", files, tmp_path / "t.md", tmp_path / "t.json")
    rows = tables[0]["rows"]
    assert rows[0]["runs"] == ["a-s1", "a-s2"] and rows[1]["runs"] == ["b-s1"]
    assert rows[0]["mean"] == pytest.approx(45.0) and rows[0]["std"] == pytest.approx(7.0711, abs=1e-3)
    assert rows[0]["irn_mean"] == pytest.approx(55.0) and rows[1]["std"] == 0.0
    assert tables[0]["ours_best"] == "A" and tables[0]["paper_best"] == "B"
    md = (tmp_path / "t.md").read_text()
    # 95% interval of 40, 50: 45 +- t_{0.975,1} (12.706) * 7.071 / sqrt(2) = 45 +- 63.5
    assert "| A | 45.0 ± 7.1 | -18.5-108.5 | 40.0, 50.0 |  | 55.0 | nan | 50.0 |" in md and "(differs)" in md
    # C vs A on the shared seeds 1, 2: differences 5 and 2 (seed 3 has no partner)
    versus = tables[1]["rows"][1]["versus_reference"]
    assert versus["diffs"] == pytest.approx([5.0, 2.0]) and versus["verdict"] == "not resolved"
    assert tables[1]["rows"][0]["versus_reference"] is None
    assert "| +3.5 [-15.6, +22.6] (2/2) not resolved |" in md
    bad = {**spec, "tables": [{"title": "V", "reference": "Z", "rows": [{"label": "A", "cells": ["a"]}]}]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(DataError, match="reference 'Z' is not one of its one-cell rows"):
        write_ablation_tables(tmp_path / "bad.yaml", files, tmp_path / "t.md", tmp_path / "t.json")
    (tmp_path / "a-s2" / "local_maps.json").unlink()  # a missing run is an error, not a silent gap
    with pytest.raises(DataError, match="a-s2/local_maps.json: result file missing"):
        write_ablation_tables(tmp_path / "spec.yaml", files, tmp_path / "t.md", tmp_path / "t.json")
    files = DeclaredFiles([tmp_path / "a-s1" / "local_maps.json", tmp_path / "b-s1" / "local_maps.json"], tmp_path)
    with pytest.raises(DataError, match="a-s2/local_maps.json: needed but not among the declared inputs"):
        write_ablation_tables(tmp_path / "spec.yaml", files, tmp_path / "t.md", tmp_path / "t.json")


def test_scoring_in_processes_equals_one_process(tiny_synthetic, tmp_path, monkeypatch):
    """eval-cams / eval-masks --workers: the images' tallies, computed in pieces by worker processes and merged in
    list order, give exactly the one-process scores (the bootstrap over images included), and a map whose class
    is missing is still reported by name from a worker."""
    import rpc.evaluation.local_maps as local_maps
    import rpc.evaluation.masks as masks
    from rpc.data.maps import label_keys, save_cams

    _, _, index = tiny_synthetic
    split = "train"
    rng = np.random.default_rng(3)
    for n in index.names(split):
        gt = index.read_mask(n)
        keys = label_keys(index.label(n))
        stages = rng.random((2, len(keys), *gt.shape)).astype(np.float32)
        save_cams(tmp_path / "cams" / f"{n}.npz", keys, stages.mean(0), stages)
        noisy = np.where(rng.random(gt.shape) < 0.2, rng.integers(0, index.num_classes, gt.shape), gt)
        write_mask(tmp_path / "masks" / f"{n}.png", np.where(rng.random(gt.shape) < 0.05, 255, noisy))
    monkeypatch.setattr(local_maps, "CHUNK", 5)  # 12 images: pieces of 5, 5 and 2
    monkeypatch.setattr(masks, "CHUNK", 5)
    one = local_maps.evaluate_cams(index.root, split, tmp_path / "cams")
    two = local_maps.evaluate_cams(index.root, split, tmp_path / "cams", workers=2)
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert one["images"] == 12 and 0 < one["sipe"]["miou"] < 1 and one["empty_foreground_maps"]["stages"] == [0, 0]
    for uncertain in ("background", "ignore"):
        one = masks.evaluate_mask_dir(index, split, tmp_path / "masks", uncertain)
        two = masks.evaluate_mask_dir(index, split, tmp_path / "masks", uncertain, workers=2)
        assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
        assert 0.5 < one["miou"] < 1 and one["uncertain_fraction"] == pytest.approx(0.05, abs=0.02)
    # a bad map found by a worker: the error names the file
    victim = index.names(split)[-1]
    save_cams(tmp_path / "cams" / f"{victim}.npz", np.array([0]), np.zeros((1, *index.read_mask(victim).shape)))
    with pytest.raises(Exception, match=victim):
        local_maps.evaluate_cams(index.root, split, tmp_path / "cams", workers=2)


def test_merging_confusion_matrices_keeps_image_order():
    rng = np.random.default_rng(1)
    pairs = [(rng.integers(0, 4, (5, 6)), rng.integers(0, 4, (5, 6))) for _ in range(6)]
    whole = ConfusionMatrix(4, per_image=True)
    first, second = ConfusionMatrix(4, per_image=True), ConfusionMatrix(4, per_image=True)
    for i, (p, g) in enumerate(pairs):
        whole.update(p, g)
        (first if i < 4 else second).update(p, g)
    first.merge(second)
    for merged, expected in zip(first.per_image_counts(), whole.per_image_counts(), strict=True):
        np.testing.assert_array_equal(merged, expected)
    with pytest.raises(ValueError, match="per-image"):
        first.merge(ConfusionMatrix(4))
    with pytest.raises(ValueError, match="3-class"):
        first.merge(ConfusionMatrix(3))

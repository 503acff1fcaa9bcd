"""Part-level scores and the multi-seed summary (Table 1/4 with mean +- std and paired differences)."""

import json

import numpy as np
import pytest

from rpc.data.maps import save_cams
from rpc.data.palette import IGNORE_INDEX, read_mask, write_mask
from rpc.evaluation.declared import DeclaredFiles
from rpc.evaluation.parts import PartCounter, evaluate_parts
from rpc.evaluation.summary import paper_reference, write_run_summary, write_summary
from rpc.utils.io import DataError


def test_part_counter_hand_made_example():
    gt = np.array([[0, 0, 1, 1, 1, 1]])
    parts = np.array([[0, 0, 1, 1, 2, 2]])  # 2 background, 2 sub-discriminative, 2 discriminative pixels
    pred = np.array([[0, 1, 1, 0, 1, 2]])  # 1 bg false positive; sub: 1 of 2; disc: 1 of 2 (one wrong class)
    c = PartCounter()
    c.update(pred, gt, parts)
    r = c.summary()
    assert r["bg_false_positive"] == 0.5 and r["sub_recall"] == 0.5 and r["disc_recall"] == 0.5
    c.update(np.array([[IGNORE_INDEX, 0, IGNORE_INDEX, 1, 1, 1]]), gt, parts)  # 255: neither hit nor FP
    r = c.summary()
    assert r["bg_false_positive"] == 0.25 and r["sub_recall"] == 0.5 and r["disc_recall"] == 0.75
    assert r["uncertain"] == {"background": 0.25, "sub": 0.25, "disc": 0.0}


def test_parts_of_maps_and_masks_on_the_synthetic_data(tiny_synthetic, tmp_path):
    _, raw, index = tiny_synthetic
    for name in index.names("val"):
        gt = index.read_mask(name)
        parts = read_mask(raw / "SegmentationPart" / f"{name}.png")
        keys = np.array([0] + [int(i) + 1 for i in np.nonzero(index.label(name))[0]])
        # the map covers only the discriminative parts (as a plain CAM would); the mask is the ground truth
        fg = [((gt == k) & (parts == 2)).astype(np.float32) for k in keys[1:]]
        cams = np.stack([1 - np.max(fg, 0)] + fg)
        save_cams(tmp_path / "maps" / f"{name}.npz", keys, cams, np.stack([cams, cams]))
        write_mask(tmp_path / "masks" / f"{name}.png", gt)
    r = evaluate_parts(index.root, "val", [tmp_path / "maps"], tmp_path / "masks")
    assert r["maps"]["disc_recall"] == 1.0 and r["maps"]["sub_recall"] == 0.0
    assert r["maps"]["bg_false_positive"] == 0.0 and len(r["stage_maps"]) == 2
    assert r["pseudo_masks"]["sub_recall"] == 1.0 and r["pseudo_masks"]["disc_recall"] == 1.0
    assert r["pseudo_masks"]["pixels"]["sub"] > r["pseudo_masks"]["pixels"]["disc"] > 0


def test_parts_need_part_masks(voc_index, tmp_path):
    with pytest.raises(DataError, match="SegmentationPart"):
        evaluate_parts(voc_index.root, "train", None, tmp_path)


def _fake_run(root, name, local, crf, seg, parts=None):
    d = root / name
    (d / "segmentation").mkdir(parents=True)
    sweep = {f"{0.05 * i:.2f}": 0.1 for i in range(20)}
    boot = {"low": local - 0.02, "high": local + 0.02, "std": 0.01 + local / 100}
    (d / "local_maps.json").write_text(json.dumps({"split": "train", "images": 4,
                                                   "sipe": {"miou": local, "bootstrap": boot},
                                                   "irn": {"best_miou": local - 0.05, "best_threshold": 0.3,
                                                           "sweep": sweep, "at_edge": False}}))  # fmt: skip
    (d / "pseudo_masks.json").write_text(json.dumps({"miou": crf, "uncertain_fraction": 0.1}))
    (d / "pseudo_masks_ignore.json").write_text(json.dumps({"miou": crf + 0.05}))
    for f in ("val", "val_crf"):
        (d / "segmentation" / f"{f}.json").write_text(json.dumps({"miou": seg}))
    if parts is not None:
        part = {"disc_recall": parts[0], "sub_recall": parts[1], "bg_false_positive": parts[2],
                "uncertain": {"background": 0.0, "sub": 0.1, "disc": 0.0}}  # fmt: skip
        (d / "parts.json").write_text(json.dumps({"maps": part, "stage_maps": [part, part], "pseudo_masks": part}))


def test_summary_over_seeds_with_paired_differences_and_parts(tmp_path):
    values = {"cam": [0.40, 0.42, 0.38], "sipe": [0.50, 0.44, 0.51], "rpc": [0.55, 0.43, 0.56]}
    for exp, vals in values.items():
        for seed, v in zip((1, 2, 3), vals, strict=True):
            _fake_run(tmp_path, f"{exp}-s{seed}", v, v + 0.1, v - 0.1, parts=(0.9, v, 0.05))
    for seed, upper in zip((1, 2, 3), (0.8, 0.82, 0.78), strict=True):  # the upper bound, one run per seed
        (tmp_path / f"ground_truth-s{seed}" / "segmentation").mkdir(parents=True)
        for f in ("val", "val_crf"):
            (tmp_path / f"ground_truth-s{seed}" / "segmentation" / f"{f}.json").write_text(json.dumps({"miou": upper}))
    seeds = {"rpc": [1, 2, 3], "sipe": [1, 2, 3], "cam": [1, 2, 3], "ground_truth": [1, 2, 3]}
    files = _declared(tmp_path)
    out = write_summary(seeds, files, "synthetic", tmp_path / "s.md", tmp_path / "s.json",
                        plot_path=tmp_path / "p.png")  # fmt: skip
    agg = out["aggregate"]
    assert agg["pairs"]["rpc-sipe"]["local_maps"]["diffs"] == pytest.approx([5.0, -1.0, 5.0])
    assert agg["pairs"]["sipe-cam"]["local_maps"]["diffs"] == pytest.approx([10.0, 2.0, 13.0])
    assert agg["pairs"]["rpc-cam"]["local_maps"]["diffs"] == pytest.approx([15.0, 1.0, 18.0])
    # t interval of 5, -1, 5: mean 3, std sqrt(12), t_{0.975,2} = 4.3027 -> half width 8.61
    assert agg["pairs"]["rpc-sipe"]["local_maps"]["half_width"] == pytest.approx(4.302652729911275 * 2, rel=1e-6)
    assert agg["ordering_holds_on_seeds"]["local_maps"] == 2  # seed 2: RPC 43 < SIPE 44
    md = (tmp_path / "s.md").read_text()
    assert "| rpc | 51.3 ± 7.2 |" in md  # mean 51.33, std 7.23 of 55, 43, 56
    assert "| rpc − sipe | +3.0 [-5.6, +11.6] (2/3) |" in md
    assert "- rpc > sipe (Local.Maps (own bg)): not resolved at 95% (+3.0, 95% CI -5.6..+11.6; better on 2/3" in md
    # sipe - cam: 10, 2, 13 (mean 8.3, std 5.7): the interval still reaches below 0
    assert "- sipe > cam (DeepLab val): not resolved at 95%" in md
    assert "holds on: Local.Maps (own bg) 2/3 seeds" in md
    # bootstrap std 1 + local/100 points: rpc mean of 1.55, 1.43, 1.56
    assert "scored on the same images): rpc 1.5, sipe 1.5, cam 1.4." in md
    assert "| ground_truth (upper bound) | - | - | - | - | 80.0 ± 2.0 |" in md
    # DeepLab val (local - 10) against its pseudo masks (255 ignored: local + 15) and the upper bound of its seed
    deeplab = agg["deeplab"]["rpc"]
    assert deeplab["seg_minus_pseudo"] == pytest.approx([-25.0, -25.0, -25.0])
    assert deeplab["seg_minus_upper"] == pytest.approx([45 - 80, 33 - 82, 46 - 78])
    assert "| rpc | 41.3 ± 7.2 | 66.3 ± 7.2 | -25.0 ± 0.0 | -38.7 ± 9.1 |" in md
    assert "ground_truth" not in agg["deeplab"] and "ground_truth" not in out["parts"]
    assert "| rpc, stage 2 map |" in md and (tmp_path / "p.png").stat().st_size > 1000
    assert out["parts"]["rpc"]["maps"]["sub_recall"] == pytest.approx([55.0, 43.0, 56.0])
    assert "(60.5)" not in md  # the paper's VOC values only for PASCAL VOC itself
    # an experiment with its own seeds: differences only over the seeds both share
    out = write_summary({"rpc": [1, 3], "sipe": [1, 2, 3]}, files, "synthetic", tmp_path / "s.md",
                        tmp_path / "s.json")  # fmt: skip
    assert out["aggregate"]["pairs"]["rpc-sipe"]["local_maps"]["diffs"] == pytest.approx([5.0, 5.0])
    row = write_run_summary("rpc-s1", files, "synthetic", tmp_path / "r.md", tmp_path / "r.json")
    assert row["local_maps"] == pytest.approx(55.0)
    # a declared file that is missing, and a file the summary needs that no rule declared: errors naming them
    (tmp_path / "cam-s2" / "pseudo_masks.json").unlink()
    with pytest.raises(DataError, match="cam-s2/pseudo_masks.json: result file missing"):
        write_summary({"cam": [1, 2]}, files, "synthetic", tmp_path / "s.md", tmp_path / "s.json")
    undeclared = DeclaredFiles([f for f in files._files.values() if f.name != "val_crf.json"], tmp_path)
    with pytest.raises(DataError, match="rpc-s1/segmentation/val_crf.json: needed but not among the declared"):
        write_run_summary("rpc-s1", undeclared, "synthetic", tmp_path / "r.md", tmp_path / "r.json")
    with pytest.raises(DataError, match="not under the results folder"):
        DeclaredFiles([tmp_path / "rpc-s1" / "local_maps.json"], tmp_path / "elsewhere")


def _declared(root):
    """Every JSON file under root, declared (as the summary rule's input lists them)."""
    return DeclaredFiles(sorted(root.glob("*/**/*.json")), root)


def test_paper_values_only_for_pascal_voc_itself(voc_index, tiny_synthetic, tmp_path):
    assert paper_reference(voc_index.root, "voc")["rpc"]["local_maps"] == 60.5
    _, _, own_classes = tiny_synthetic  # a VOC-format folder with its own classes.txt
    assert paper_reference(own_classes.root, "voc") == {}
    assert paper_reference(voc_index.root, "synthetic") == {}

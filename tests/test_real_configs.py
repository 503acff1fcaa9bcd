"""The shipped real-data configs run end to end on genuine VOC and COCO files (../shared/realdata).

`config/voc.yaml` and `config/coco.yaml` as they are, plus a small overlay that shrinks only sizes and iteration
counts: a ResNet-50 RPC classifier with SFA on the real images (random init: nothing can be downloaded), maps at
one scale, the pseudo-mask CRF (2 mean-field iterations), DeepLabv2 ResNet-101 for two iterations, predictions at
half size in 2 shards with the CRF (2 iterations), the run's summary. One method, RPC, runs end to end: the
configs' other experiments differ from it only by their preset, which the dry runs of these configs
(tests/test_workflow.py) and the tiny workflow cover (running all three would triple the time).
The COCO fixture has val2014 images only (43 with annotations): the first 12 serve as both splits, in COCO's layout.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

OVERLAY = {
    "train": {"batch_size": 2, "epochs": 1, "crop": 256, "long_side": [256, 384], "num_workers": 0},
    "model": {"weights": "none"},
    "cams": {"scales": [1.0], "shards": 2, "batch_size": 1},
    "crf": {"iterations": 2},
    "segmentation": {"scales": [0.5], "crf": {"iterations": 2}, "predict_shards": 2, "options": [
        "model.backbone.init_cfg=None", "train_cfg.max_iters=2", "param_scheduler.0.end=2",
        "train_dataloader.batch_size=1", "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
        "default_hooks.checkpoint.interval=1"]},
    "figures": {"count": 1},
}  # fmt: skip


TARGET = "results/rpc-s15/summary.md"  # the RPC run's every stage, scored


def _workdir(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config", "envs"):
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(OVERLAY))
    return tmp_path


COCO_IMAGES = 12  # of the fixture's 43: the same stages and formats at a quarter of the time (was 187 s)


def _coco_root(realdata: Path, root: Path) -> Path:
    """COCO's layout from the fixture's genuine files: the first COCO_IMAGES annotated val2014 images (their
    genuine records, every category kept) serve as both splits."""
    ann = json.loads((realdata / "coco" / "annotations" / "instances_val2014_subset43_with_images.json").read_text())
    images = ann["images"][:COCO_IMAGES]
    ids = {im["id"] for im in images}
    subset = {**ann, "images": images, "annotations": [a for a in ann["annotations"] if a["image_id"] in ids]}
    (root / "annotations").mkdir(parents=True)
    for split in ("train2014", "val2014"):
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(subset))
    (root / "val2014").symlink_to(realdata / "coco" / "val2014")
    (root / "train2014").mkdir()  # the images are found in val2014/
    return root


def _run(work: Path, base: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--config", f"dataset={{kind: {base}, root: {root}}}",
           "--configfile", f"config/{base}.yaml", "overlay.yaml", "--", TARGET]  # fmt: skip
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=2700, env=env)
    if proc.returncode != 0:
        pytest.fail(f"{base}: {proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("base", ["voc", "coco"])
def test_real_config_runs_end_to_end_on_genuine_files(base, realdata, tmp_path):
    work = _workdir(tmp_path / "w")
    if base == "voc":
        root = realdata / "voc" / "VOCdevkit" / "VOC2012"
    else:
        root = _coco_root(realdata, tmp_path / "coco")
    _run(work, base, root)
    assert "rpc" in yaml.safe_load((REPO / "config" / f"{base}.yaml").read_text())["experiments"]
    scores = json.loads((work / "results" / "rpc-s15" / "summary.json").read_text())["scores"]
    for key in ("local_maps", "crf", "seg_val", "seg_val_crf"):
        assert scores[key] is not None and 0 <= scores[key] <= 100, (key, scores)
    # the real settings were used, not the demo's: ResNet-50 classifier with SFA, DeepLabv2 ResNet-101
    log = (work / "logs" / "rpc-s15" / "train_classifier.log").read_text()
    assert '"depth": 50' in log and '"attention": "sfa"' in log
    seg_log = (work / "logs" / "rpc-s15" / "train_segmentation.log").read_text()
    assert "depth=101" in seg_log.replace(" ", "")
    num_classes = 21 if base == "voc" else 81
    assert f"num_classes={num_classes}" in seg_log.replace(" ", "")

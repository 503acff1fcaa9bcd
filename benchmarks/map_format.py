"""The map format's effect on the scores: a folder of maps as they are (any format this project reads) against
the same maps written in the current format (65535 levels per channel, row differences, deflated), scored the
same way: Local.Maps, the IRN sweep's best, and the pseudo masks after the CRF (both conventions for uncertain
pixels); plus bytes per image.

    python -m benchmarks.map_format --dataset results/data/prepared --split train \\
        --maps results/rpc-s15/cams/shard_0 results/rpc-s15/cams/shard_1 --name map_format_rpc-s15
    python -m benchmarks.map_format --genuine-voc --name map_format_voc   (-> benchmarks/out/<name>.json)

``--genuine-voc`` prepares the genuine VOC files of the test fixtures and scores maps made from their masks the
way inference makes maps (a noisy stride-16 grid upsampled to the image; no VOC model is available offline),
stored as float32.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import REALDATA, write_result
from rpc.crf.pseudo import make_pseudo_masks
from rpc.data.index import DatasetIndex
from rpc.data.maps import as_dirs, find_map, load_cams, save_cams
from rpc.evaluation.local_maps import evaluate_cams
from rpc.evaluation.masks import evaluate_mask_dir
from rpc.utils.io import save_npz_atomic


def scores(dataset: Path, split: str, maps: list[Path], work: Path, workers: int) -> dict:
    index = DatasetIndex.load(dataset)
    cams = evaluate_cams(dataset, split, maps)
    make_pseudo_masks(dataset, split, maps, work / "masks", workers=workers, allow_extra_maps=True)
    masks = {c: evaluate_mask_dir(index, split, work / "masks", c)["miou"] for c in ("background", "ignore")}
    files = [find_map(as_dirs(maps), n) for n in index.names(split)]
    return {"local_maps": cams["sipe"]["miou"], "irn_best": cams["irn"]["best_miou"],
            "irn_best_threshold": cams["irn"]["best_threshold"], "pseudo_masks_bg": masks["background"],
            "pseudo_masks_ignore": masks["ignore"],
            "bytes_per_image": sum(f.stat().st_size for f in files) / len(files)}  # fmt: skip


def genuine_voc(work: Path) -> tuple[Path, list[Path]]:
    """The fixture's genuine VOC files prepared, and float32 maps for split ``train`` made as inference makes
    them: each class's ground-truth region averaged onto the stride-16 grid, noise added there, then upsampled
    bilinearly to the image size and max-normalised."""
    import torch
    import torch.nn.functional as F

    from rpc.data.voc import prepare_voc

    index = prepare_voc(REALDATA / "voc" / "VOCdevkit" / "VOC2012", work / "prepared", masks_for=("train", "val"))
    g = torch.Generator().manual_seed(0)
    folder = work / "float_maps"
    folder.mkdir()
    for name in index.names("train"):
        gt = index.read_mask(name)
        keys = np.concatenate([[0], np.flatnonzero(index.label(name)) + 1])
        onehot = torch.from_numpy(np.stack([(gt == k) for k in keys]).astype(np.float32))[None]
        grid = F.adaptive_avg_pool2d(onehot, (-(-gt.shape[0] // 16), -(-gt.shape[1] // 16)))
        grid = grid + 0.4 * torch.rand(grid.shape, generator=g)
        maps = F.interpolate(grid, gt.shape, mode="bilinear", align_corners=False)[0].numpy()
        maps /= maps.max((1, 2), keepdims=True)
        save_npz_atomic(folder / f"{name}.npz", keys=keys.astype(np.int16), cams=maps)  # float32: no rounding
    return index.root, [folder]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path)
    p.add_argument("--split", default="train")
    p.add_argument("--maps", nargs="+", type=Path, help="the maps as they are (shard folders of one run)")
    p.add_argument("--genuine-voc", action="store_true", help="the fixture's genuine VOC files (see above)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--name", required=True, help="benchmarks/out/<name>.json")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset, maps = genuine_voc(tmp) if a.genuine_voc else (a.dataset, a.maps)
        index = DatasetIndex.load(dataset)
        images = len(index.names(a.split))
        stored = tmp / "current_format"
        stored.mkdir()
        for name in index.names(a.split):
            keys, cams, stages = load_cams(find_map(as_dirs(maps), name), stages=True)
            save_cams(stored / f"{name}.npz", keys, cams, stages)
        (tmp / "as_they_are").mkdir()
        (tmp / "current").mkdir()
        before = scores(dataset, a.split, maps, tmp / "as_they_are", a.workers)
        after = scores(dataset, a.split, [stored], tmp / "current", a.workers)
    diff = {k: after[k] - before[k] for k in before if k not in ("irn_best_threshold", "bytes_per_image")}
    write_result(a.name, {"what": "map format: the maps as they are vs the current format (65535 levels, row deltas)",
                          "dataset": str(dataset) if not a.genuine_voc else "genuine VOC fixture files",
                          "split": a.split, "images": images, "as_they_are": before,
                          "current_format": after, "difference": diff})  # fmt: skip


if __name__ == "__main__":
    main()

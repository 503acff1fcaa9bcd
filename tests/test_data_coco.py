import os

import numpy as np
import pytest

from rpc.data.coco import prepare_coco
from rpc.data.index import DatasetIndex
from rpc.utils.io import DataError


@pytest.fixture(scope="module")
def coco_prepared(realdata, tmp_path_factory):
    ann = realdata / "coco" / "annotations" / "instances_val2014_subset43_with_images.json"
    out = tmp_path_factory.mktemp("coco")
    index = prepare_coco({"val2014": ann}, [realdata / "coco" / "val2014"], out, workers=2)
    from pycocotools.coco import COCO

    return index, COCO(str(ann))


def test_classes_contiguous_in_official_order(coco_prepared, realdata):
    index, coco = coco_prepared
    assert index.num_classes == 81
    shipped = [ln.split(" ", 1)[1] for ln in (realdata / "lists" / "coco" / "classes.txt").read_text().splitlines()]
    assert list(index.classes) == shipped
    assert index.classes[1] == "person" and index.classes[80] == "toothbrush"


def test_masks_match_annotations(coco_prepared):
    index, coco = coco_prepared
    names = index.names("val2014")
    assert len(names) == 43
    cat_ids = sorted(coco.getCatIds())
    to_class = {cid: i + 1 for i, cid in enumerate(cat_ids)}
    exact = 0
    for img_id, info in coco.imgs.items():
        name = info["file_name"][:-4]
        mask = index.read_mask(name)
        assert mask.shape == (info["height"], info["width"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id], iscrowd=None))
        annotated = sorted({to_class[a["category_id"]] for a in anns})
        in_mask = sorted(int(v) for v in np.unique(mask) if v != 0)
        assert in_mask == annotated, name
        assert np.nonzero(index.label(name))[0].tolist() == [c - 1 for c in annotated]
        unions = {}
        for a in anns:
            c = to_class[a["category_id"]]
            unions[c] = unions.get(c, False) | (coco.annToMask(a) > 0)
        for c, union in unions.items():
            others = np.zeros_like(union)
            for c2, u2 in unions.items():
                if c2 != c:
                    others |= u2
            count = int((mask == c).sum())
            if not (union & others).any():  # no overlap with another class: the count is exact
                assert count == int(union.sum()), (name, c)
                exact += 1
            else:  # painted over only where another class's instance lies
                assert int((union & ~others).sum()) <= count <= int(union.sum())
        assert ((mask > 0) == np.any(list(unions.values()), axis=0)).all()
    assert exact >= 30  # (36 image-class pairs on this subset)


def test_reload_and_resume(coco_prepared, realdata):
    index, _ = coco_prepared
    again = DatasetIndex.load(index.root)
    assert again.names("val2014") == index.names("val2014")
    png = index.mask_path(index.names("val2014")[0])
    mtime = png.stat().st_mtime_ns
    ann = realdata / "coco" / "annotations" / "instances_val2014_subset43_with_images.json"
    prepare_coco({"val2014": ann}, [realdata / "coco" / "val2014"], index.root)
    assert png.stat().st_mtime_ns == mtime  # finished masks are kept


def test_missing_images_are_reported(realdata, tmp_path):
    ann = realdata / "coco" / "annotations" / "instances_val2014_100.json"  # 100 images, only 43 on disk
    with pytest.raises(DataError, match=r"COCO_val2014_\d+\.jpg not found"):
        prepare_coco({"val2014": ann}, [realdata / "coco" / "val2014"], tmp_path)
    with pytest.raises(DataError, match="instances file not found"):
        prepare_coco({"val2014": tmp_path / "none.json"}, [realdata / "coco" / "val2014"], tmp_path)


def test_the_instances_file_is_parsed_once_per_split_with_workers(realdata, tmp_path, monkeypatch):
    """Forked workers share the parsed annotations: one parse per split, whatever the worker count (each parse
    leaves a marker file, so that a worker's parse would show too)."""
    import rpc.data.coco as coco_module

    original = coco_module._load
    marks = tmp_path / "parses"
    marks.mkdir()

    def counting_load(path):
        (marks / f"{len(list(marks.iterdir()))}-{os.getpid()}").touch()
        return original(path)

    monkeypatch.setattr(coco_module, "_load", counting_load)
    ann = realdata / "coco" / "annotations" / "instances_val2014_subset43_with_images.json"
    index = prepare_coco({"val2014": ann}, [realdata / "coco" / "val2014"], tmp_path / "out", workers=3)
    assert len(list(marks.iterdir())) == 1
    assert len(index.names("val2014")) == 43 and all(index.mask_path(n).is_file() for n in index.names("val2014"))

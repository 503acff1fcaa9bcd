import shutil

import numpy as np
import pytest
from PIL import Image

from rpc.data.index import DatasetIndex, read_image
from rpc.data.palette import read_mask, voc_colormap, write_mask
from rpc.data.voc import VOC_CLASSES, parse_xml_labels, prepare_voc, shipped_voc_file
from rpc.utils.io import DataError, read_list

QUIRK = "2010_003321"  # labelled {dog, person} at image level, but its mask holds only dog (PROVENANCE.md)


def _tsv(path):
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, names = line.partition("\t")
        out[name] = sorted(VOC_CLASSES.index(n) for n in names.split())
    return out


def test_shipped_lists_have_official_sizes():
    sizes = {s: len(read_list(shipped_voc_file(f"{s}.txt"))) for s in ("train_aug", "train", "val")}
    assert sizes == {"train_aug": 10582, "train": 1464, "val": 1449}
    labels = _tsv(shipped_voc_file("image_labels.tsv"))
    names = set(read_list(shipped_voc_file("train_aug.txt"))) | set(read_list(shipped_voc_file("val.txt")))
    assert names <= set(labels) and len(labels) == 12031
    assert set(read_list(shipped_voc_file("train.txt"))) <= set(read_list(shipped_voc_file("train_aug.txt")))


def test_xml_labels_equal_reference(voc_root, realdata):
    ref = _tsv(realdata / "voc" / "image_labels.tsv")
    assert parse_xml_labels(voc_root / "Annotations" / "2007_000032.xml", VOC_CLASSES) == ref["2007_000032"]
    assert ref["2007_000032"] == [1, 15]  # aeroplane, person (duplicates collapsed)
    assert parse_xml_labels(voc_root / "Annotations" / "2007_000027.xml", VOC_CLASSES) == [15]


def test_prepared_real_voc(voc_index, realdata):
    ref = _tsv(realdata / "voc" / "image_labels.tsv")
    assert voc_index.num_classes == 21 and voc_index.classes[15] == "person"
    assert len(voc_index.names("train_aug")) == 11 and len(voc_index.names("val")) == 6
    for name in ref:
        got = sorted(int(i) + 1 for i in np.nonzero(voc_index.label(name))[0])
        if name == QUIRK:
            assert got == [12]  # mask-derived: dog only
        else:
            assert got == ref[name], name
    # official masks are preferred over SBD ones; both read as indices 0..20 and 255
    assert voc_index.mask_path("2007_000032").parent.name == "SegmentationClass"
    assert voc_index.mask_path("2008_002176").parent.name == "SegmentationClassAug"
    m = voc_index.read_mask("2007_000032")
    assert set(np.unique(m)) == {0, 1, 15, 255}
    # round trip through dataset.json
    again = DatasetIndex.load(voc_index.root)
    assert again.classes == voc_index.classes and again.names("train") == voc_index.names("train")


def test_palette_roundtrip_and_colours(tmp_path):
    mask = np.array([[0, 1, 2], [15, 20, 255]], np.uint8)
    write_mask(tmp_path / "m.png", mask)
    img = Image.open(tmp_path / "m.png")
    assert img.mode == "P"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", 21), mask)
    rgb = np.asarray(img.convert("RGB"))
    assert tuple(rgb[0, 1]) == (128, 0, 0) and tuple(rgb[0, 2]) == (0, 128, 0)
    assert tuple(rgb[1, 2]) == (224, 224, 192)  # the VOC boundary colour for 255
    assert tuple(voc_colormap()[15]) == (192, 128, 128)  # person


@pytest.fixture
def fake_voc(tmp_path, voc_root):
    root = tmp_path / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "Annotations"):
        (root / d).mkdir(parents=True)
    for n in ("2007_000032", "2007_000033"):
        shutil.copy(voc_root / "JPEGImages" / f"{n}.jpg", root / "JPEGImages")
        shutil.copy(voc_root / "SegmentationClass" / f"{n}.png", root / "SegmentationClass")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for s in ("train_aug", "train", "val"):
        (root / "ImageSets" / "Segmentation" / f"{s}.txt").write_text("2007_000032\n2007_000033\n")
    return root


def test_error_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_voc(tmp_path / "nope", tmp_path / "out")


def test_error_listed_image_absent(fake_voc, tmp_path):
    (fake_voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n2099_000001\n")
    with pytest.raises(DataError, match=r"val\.txt.*2099_000001\.jpg"):
        prepare_voc(fake_voc, tmp_path / "out")


@pytest.mark.parametrize("fault", ["empty", "random bytes", "truncated"])
def test_preparation_decodes_every_image(fake_voc, tmp_path, fault):
    bad = fake_voc / "JPEGImages" / "2007_000033.jpg"
    data = bad.read_bytes()
    bad.write_bytes({"empty": b"", "random bytes": np.random.default_rng(0).bytes(4000),
                     "truncated": data[: len(data) // 3]}[fault])  # fmt: skip
    with pytest.raises(DataError, match=r"2007_000033\.jpg: unreadable image"):
        prepare_voc(fake_voc, tmp_path / "out")
    assert not (tmp_path / "out" / "dataset.json").exists()
    with pytest.raises(DataError, match="image not found"):
        read_image(fake_voc / "missing.jpg")


def test_preparation_refuses_links_out_of_the_root(fake_voc, tmp_path):
    img = fake_voc / "JPEGImages" / "2007_000033.jpg"
    img.unlink()
    img.symlink_to("/etc/hostname")
    with pytest.raises(DataError, match=r"2007_000033\.jpg: links to /etc/hostname, outside the dataset root"):
        prepare_voc(fake_voc, tmp_path / "out")


def test_preparation_in_workers_records_sizes(fake_voc, tmp_path):
    index = prepare_voc(fake_voc, tmp_path / "out", workers=2)
    assert index.image_size("2007_000032") == (281, 500) == DatasetIndex.load(index.root).sizes["2007_000032"]


@pytest.mark.parametrize(
    "fault, message",
    [
        ("16-bit", r"2007_000033\.png: mask must be a palette or grayscale PNG, found mode I;16"),
        ("rgb", r"2007_000033\.png: mask must be a palette or grayscale PNG, found mode RGB"),
        ("size", r"2007_000033\.png: mask is 7x5 \(WxH\), its image 2007_000033\.jpg is 500x366"),
        ("missing", r"1 image\(s\) of split 'train' have no mask in SegmentationClass, e.g. 2007_000033\.png"),
    ],
)
def test_preparation_checks_every_mask(fake_voc, tmp_path, fault, message):
    mask = fake_voc / "SegmentationClass" / "2007_000033.png"
    if fault == "16-bit":
        Image.fromarray(np.zeros((366, 500), np.uint16)).save(mask)
    elif fault == "rgb":
        Image.fromarray(np.zeros((366, 500, 3), np.uint8)).save(mask)
    elif fault == "size":
        write_mask(mask, np.zeros((5, 7), np.uint8))
    else:
        mask.unlink()
        (fake_voc / "Annotations").rmdir()
    with pytest.raises(DataError, match=message):
        prepare_voc(fake_voc, tmp_path / "out", masks_for=("train", "val"))


def test_preparation_error_is_one_line_and_exit_2(fake_voc, tmp_path, capsys):
    from rpc.cli import main

    (fake_voc / "JPEGImages" / "2007_000033.jpg").write_bytes(b"")
    assert main(["prepare-voc", "--root", str(fake_voc), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "2007_000033.jpg: unreadable image (cannot identify image file)" in err[-1]
    assert err[-1].count("2007_000033.jpg") == 1 and "UnidentifiedImageError" not in err[-1]
    assert "Traceback" not in "\n".join(err)


def _own_classes(root, names):
    (root / "classes.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(names)))


def test_duplicate_class_names_are_refused(fake_voc, tmp_path):
    _own_classes(fake_voc, ["background", "red", "violet", "violet"])
    with pytest.raises(DataError, match=r"classes\.txt:4: class name 'violet' is also class 2: names must be unique"):
        prepare_voc(fake_voc, tmp_path / "out")


def _two_class_xml(path, name):
    path.write_text(f"<annotation><object><name>{name}</name></object></annotation>")


def test_xml_and_mask_labels_must_agree_unless_one_is_chosen(fake_voc, tmp_path):
    """2007_000033's mask holds aeroplane (1); its XML is made to name a cat (8)."""
    _two_class_xml(fake_voc / "Annotations" / "2007_000033.xml", "cat")
    with pytest.raises(DataError, match=r"2007_000033\.xml: names \{cat\} but the mask .*2007_000033\.png holds "
                                        r"\{aeroplane\}; fix one, or choose .*prepare-voc --labels-from: xml \| masks"):
        prepare_voc(fake_voc, tmp_path / "out")
    for source, expect in (("xml", [8]), ("masks", [1])):
        index = prepare_voc(fake_voc, tmp_path / source, labels_from=source)
        assert sorted(int(i) + 1 for i in np.nonzero(index.label("2007_000033"))[0]) == expect


def test_a_folder_that_is_not_voc_needs_classes_txt(fake_voc, tmp_path):
    """Six classes in masks, no XML, no classes.txt, ids that are not VOC's: the 20 VOC names are not assumed."""
    seg = fake_voc / "ImageSets" / "Segmentation"
    for n in ("2007_000032", "2007_000033"):
        for d, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png")):
            (fake_voc / d / f"{n}.{ext}").rename(fake_voc / d / f"shapes_{n}.{ext}")
    for s in ("train_aug", "train", "val"):
        (seg / f"{s}.txt").write_text("shapes_2007_000032\nshapes_2007_000033\n")
    with pytest.raises(DataError, match=r"classes\.txt: not found, and shapes_2007_000032 .* is not a PASCAL VOC "
                                        r"2012 image: a VOC-format folder with its own classes needs a classes\.txt"):
        prepare_voc(fake_voc, tmp_path / "out")
    _own_classes(fake_voc, ["background", *(f"c{i}" for i in range(1, 21))])
    assert prepare_voc(fake_voc, tmp_path / "out").num_classes == 21


def test_list_ids_are_whole_lines(fake_voc, tmp_path):
    (fake_voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n2007_000033 extra\n")
    with pytest.raises(DataError, match=r"val\.txt:2: '2007_000033 extra' is not one image id"):
        prepare_voc(fake_voc, tmp_path / "out")


def test_error_unknown_class_in_xml(fake_voc, tmp_path):
    (fake_voc / "Annotations" / "2007_000033.xml").write_text(
        "<annotation><object><name>unicorn</name></object></annotation>"
    )
    with pytest.raises(DataError, match=r"2007_000033\.xml: unknown class name 'unicorn'"):
        prepare_voc(fake_voc, tmp_path / "out")


def test_error_mask_values_out_of_range(fake_voc, tmp_path):
    write_mask(fake_voc / "SegmentationClass" / "2007_000033.png", np.full((4, 4), 42, np.uint8))
    with pytest.raises(DataError, match=r"2007_000033\.png: mask values \[42\] outside"):
        prepare_voc(fake_voc, tmp_path / "out")


def test_error_labels_missing(fake_voc, tmp_path):
    (fake_voc / "SegmentationClass" / "2007_000033.png").unlink()
    (fake_voc / "classes.txt").write_text("\n".join(f"{i} {c}" for i, c in enumerate(VOC_CLASSES)))
    with pytest.raises(DataError, match="no labels for listed image 2007_000033"):
        prepare_voc(fake_voc, tmp_path / "out")
    # in a prepared dataset, a list entry without a label line is named too
    (fake_voc / "classes.txt").unlink()
    index = prepare_voc(fake_voc, tmp_path / "out2")  # falls back to the shipped VOC labels
    lines = [ln for ln in index.labels_file.read_text().splitlines() if not ln.startswith("2007_000033")]
    index.labels_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="no image-level labels for listed image '2007_000033'"):
        DatasetIndex.load(index.root).label("2007_000033")

"""Maps to and from SIPE's and IRN's .npy dicts: values survive the round trip, files written the way those tools
write them load, and a pickle that would run code is refused."""

import numpy as np
import pytest
import torch

from rpc.cli import main
from rpc.data.foreign_maps import export_maps, import_maps, read_foreign, source_manifest, write_foreign
from rpc.data.maps import label_keys, load_cams, save_cams
from rpc.utils.io import DataError


def _our_maps(folder, index, split, seed=0):
    """Random maps in our format for every image of ``split``: ``{name: (keys, cams)}`` as read back."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in index.names(split):
        h, w = index.read_mask(name).shape
        keys = label_keys(index.label(name))
        save_cams(folder / f"{name}.npz", keys, rng.random((len(keys), h, w)))
        out[name] = load_cams(folder / f"{name}.npz")
    return out


def test_sipe_round_trip_keeps_every_value(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    ours = _our_maps(tmp_path / "ours", index, "train")
    assert export_maps(tmp_path / "ours", tmp_path / "sipe", "sipe")["maps"] == len(ours)
    d = np.load(tmp_path / "sipe" / f"{next(iter(ours))}.npy", allow_pickle=True).item()
    assert set(d) == {"keys", "IS_CAM"} and d["keys"][0] == 0  # what SIPE's eval reads
    import_maps(tmp_path / "sipe", tmp_path / "back", "sipe", dataset=index.root, split="train")
    for name, (keys, cams) in ours.items():
        k2, c2 = load_cams(tmp_path / "back" / f"{name}.npz")
        assert (k2 == keys).all() and (c2 == cams).all()


def test_irn_export_drops_the_background_and_import_adds_the_threshold_plane(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    ours = _our_maps(tmp_path / "ours", index, "train", seed=1)
    export_maps(tmp_path / "ours", tmp_path / "irn", "irn")
    name = next(n for n, (k, _) in ours.items() if len(k) > 1)
    keys, cams = ours[name]
    d = np.load(tmp_path / "irn" / f"{name}.npy", allow_pickle=True).item()
    assert (d["keys"] == keys[1:] - 1).all()  # IRN: class indices without the background
    assert (d["high_res"] == cams[1:]).all() and (d["cam"] == cams[1:, ::4, ::4]).all()
    with pytest.raises(DataError, match="background threshold"):
        read_foreign(tmp_path / "irn" / f"{name}.npy", "irn")
    k2, c2 = read_foreign(tmp_path / "irn" / f"{name}.npy", "irn", bg_threshold=0.15)
    assert (k2 == keys).all() and (c2[0] == np.float32(0.15)).all() and (c2[1:] == cams[1:]).all()


def test_a_map_saved_as_irn_saves_it_loads_with_its_torch_tensor(tmp_path):
    high_res = np.random.default_rng(0).random((2, 16, 20)).astype(np.float32)
    irn_dict = {"keys": np.array([3, 7]), "cam": torch.from_numpy(high_res[:, ::4, ::4].copy()), "high_res": high_res}
    np.save(tmp_path / "a.npy", irn_dict)  # as IRN's make_cam.py writes it (a tensor inside the pickled dict)
    keys, cams = read_foreign(tmp_path / "a.npy", "irn", bg_threshold=0.2)
    assert keys.tolist() == [0, 4, 8] and cams.shape == (3, 16, 20) and (cams[1:] == high_res).all()


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must not run",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    np.save(tmp_path / "evil.npy", {"keys": np.array([0, 1]), "IS_CAM": _RunsCode()}, allow_pickle=True)
    with pytest.raises(DataError, match=r"evil.npy: not a SIPE map file .*refused to load builtins.print"):
        read_foreign(tmp_path / "evil.npy", "sipe")
    assert "this must not run" not in capsys.readouterr().out


def test_import_checks_maps_against_the_dataset_and_names_the_file(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    names = index.names("train")
    src = tmp_path / "sipe"
    src.mkdir()
    for name in names:
        h, w = index.read_mask(name).shape
        keys = label_keys(index.label(name))
        write_foreign(src / f"{name}.npy", "sipe", keys, np.zeros((len(keys), h, w)))
    bad = names[0]
    write_foreign(src / f"{bad}.npy", "sipe", np.array([0, 1, 2, 3]), np.zeros((4, 8, 8)))
    with pytest.raises(DataError, match=f"{bad}.npy: keys"):
        import_maps(src, tmp_path / "out", "sipe", dataset=index.root, split="train")
    (src / f"{bad}.npy").unlink()
    with pytest.raises(DataError, match=f"no map for 1 image.*{bad}.npy"):
        import_maps(src, tmp_path / "out2", "sipe", dataset=index.root, split="train")


def test_export_and_import_from_the_command_line(tiny_synthetic, tmp_path):
    _, _, index = tiny_synthetic
    _our_maps(tmp_path / "ours", index, "train", seed=2)
    out = str(tmp_path / "irn")
    assert main(["export-maps", "--cams", str(tmp_path / "ours"), "--out", out, "--format", "irn"]) == 0
    argv = ["import-maps", "--src", str(tmp_path / "irn"), "--out", str(tmp_path / "back"), "--format", "irn"]
    assert main(argv) == 2  # no threshold: a one-line error
    assert main([*argv, "--bg-threshold", "0.3", "--dataset", str(index.root), "--split", "train"]) == 0
    assert len(list((tmp_path / "back").glob("*.npz"))) == len(index.names("train"))


def test_import_refuses_values_float16_cannot_store_and_names_the_source(tiny_synthetic, tmp_path):
    """A value beyond float16's range would be stored as infinity: refused at import, naming the source .npy."""
    _, _, index = tiny_synthetic
    src = tmp_path / "sipe"
    src.mkdir()
    for name in index.names("train"):
        h, w = index.read_mask(name).shape
        keys = label_keys(index.label(name))
        write_foreign(src / f"{name}.npy", "sipe", keys, np.full((len(keys), h, w), 0.5))
    big = index.names("train")[3]
    keys, cams = read_foreign(src / f"{big}.npy", "sipe")
    cams[-1, 0, 0] = 1e6
    write_foreign(src / f"{big}.npy", "sipe", keys, cams)
    with pytest.raises(DataError, match=rf"sipe/{big}.npy: the cams hold values up to 1e\+06, beyond float16"):
        import_maps(src, tmp_path / "out", "sipe", dataset=index.root, split="train")


def test_the_source_manifest_changes_when_a_map_is_replaced_by_an_older_copy(tmp_path):
    """``cp -p`` keeps the old modification time; the manifest (and so the import's params) still changes."""
    import os
    import shutil
    import time

    for name in ("a", "b"):
        write_foreign(tmp_path / f"{name}.npy", "sipe", np.array([0, 1]), np.zeros((2, 4, 4)) + (name == "b"))
    before = source_manifest(tmp_path)
    assert source_manifest(tmp_path) == before  # stable while nothing changes
    time.sleep(0.01)
    shutil.copy2(tmp_path / "a.npy", tmp_path / "b.npy")  # b replaced by a's older file, times kept
    assert (tmp_path / "b.npy").stat().st_mtime_ns == (tmp_path / "a.npy").stat().st_mtime_ns
    assert source_manifest(tmp_path) != before
    # the hardest case: same name, size, inode and even modification time as before; only the change time differs
    old = (tmp_path / "b.npy").stat()
    after_copy = source_manifest(tmp_path)
    time.sleep(0.01)
    shutil.copyfile(tmp_path / "a.npy", tmp_path / "b.npy")
    os.utime(tmp_path / "b.npy", ns=(old.st_atime_ns, old.st_mtime_ns))
    assert (tmp_path / "b.npy").stat().st_ino == old.st_ino
    assert source_manifest(tmp_path) != after_copy


@pytest.mark.parametrize(
    "keys, values, message",
    [
        ([0, 4.7], 0.5, r"keys \[0\.0, 4\.7\] are not integer class ids"),
        ([0, 2, 2], 0.5, r"keys \[0, 2, 2\] must be distinct class ids >= 0"),
        ([0, 3], -0.25, r"negative values in the cams \(down to -0\.25\)"),
    ],
)
def test_imported_keys_must_be_integral_and_values_non_negative(tmp_path, keys, values, message):
    np.save(tmp_path / "a.npy", {"keys": np.array(keys), "IS_CAM": np.full((len(keys), 4, 5), values, np.float32)})
    with pytest.raises(DataError, match=r"a\.npy: .*" + message) as caught:
        read_foreign(tmp_path / "a.npy", "sipe")
    assert "ValueError" not in str(caught.value)  # the project's own checks read as text


def test_a_failed_import_leaves_nothing_under_the_final_name(tmp_path):
    src = tmp_path / "sipe"
    src.mkdir()
    for i, keys in enumerate(([0, 1], [0, 2.5])):  # the second file is bad
        np.save(src / f"img{i}.npy", {"keys": np.array(keys), "IS_CAM": np.zeros((2, 3, 3), np.float32)})
    with pytest.raises(DataError, match=r"img1\.npy"):
        import_maps(src, tmp_path / "out", "sipe")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["sipe"]
    (src / "img1.npy").unlink()
    assert import_maps(src, tmp_path / "out", "sipe")["maps"] == 1 and (tmp_path / "out" / "img0.npz").is_file()

"""Maps: the RS-CAMs of a trained classifier, and maps exchanged with SIPE's and IRN's own tools."""

from __future__ import annotations

from rpc.cli.common import WORK_HELP, add_command, print_result
from rpc.utils.io import DataError


def _cams_parser(sub) -> None:
    s = add_command(sub, "cams", "multi-scale + flip RS-CAMs for a split (one shard of it)", _cams,
                    "One <name>.npz per image (background and the image's classes, float16 maps at the image's "
                    "size); the shards of a split are independent jobs.")  # fmt: skip
    s.add_argument("--model", required=True, help="the classifier model file (train's --out)")
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--split", required=True, help="image list of the dataset, e.g. train")
    s.add_argument("--out", required=True, help="folder of <name>.npz")
    s.add_argument("--shard", type=int, default=0, help="0-based shard index")
    s.add_argument("--num-shards", type=int, default=1, help="how many shards the split is cut into")
    s.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 1.5, 2.0], help="image scales")
    s.add_argument("--save-stages", action="store_true", help="also store each stage's map")
    s.add_argument("--device", default="auto", help="auto (a GPU where there is one), cpu, cuda or cuda:N")
    s.add_argument("--workers", default="auto", help="loader processes (auto: 0 on CPU, threads-1 up to 4 on GPU)")
    s.add_argument("--amp", default="auto", choices=["auto", "bf16", "none"],
                   help="bf16 autocast + channels-last; auto = where the hardware has native bf16")  # fmt: skip
    s.add_argument("--batch-size", type=int, default=4, help="images of equal size per forward pass")
    s.add_argument("--pyramid", default="auto", choices=["auto", "device", "host"],
                   help="where the scales and flips are built: auto = on a GPU, on the host for a CPU")  # fmt: skip
    s.add_argument("--work", help=WORK_HELP)


def _cams(a):
    from rpc.cams.generate import make_rs_cams

    result = make_rs_cams(
        a.model, a.dataset, a.split, a.out, shard_index=a.shard, num_shards=a.num_shards, scales=tuple(a.scales),
        save_stages=a.save_stages, device=a.device, num_workers=a.workers, amp=a.amp, batch_size=a.batch_size,
        work_dir=a.work, pyramid=a.pyramid,
    )  # fmt: skip
    print_result(result)


def _export_maps_parser(sub) -> None:
    s = add_command(sub, "export-maps", "write maps as the .npy dicts SIPE's or IRN's tools read", _export_maps)
    s.add_argument("--cams", required=True, nargs="+", help="map folder(s), e.g. results/rpc-s15/cams/shard_*")
    s.add_argument("--out", required=True, help="folder for <name>.npy")
    s.add_argument("--format", required=True, choices=["sipe", "irn"], help="whose .npy layout to write")


def _export_maps(a):
    from rpc.data.foreign_maps import export_maps

    print_result(export_maps(a.cams, a.out, a.format))


IRN_NEEDS_THRESHOLD = ("import-maps --format irn needs --bg-threshold (IRN's cam_eval_thres, e.g. 0.15): IRN maps "
                       "have no background channel")  # fmt: skip


def _import_maps_parser(sub) -> None:
    s = add_command(sub, "import-maps", "bring SIPE- or IRN-format .npy maps into this project's format",
                    _import_maps, "IRN's maps have no background channel: --format irn needs --bg-threshold, the "
                    "constant background plane IRN scores them with (its cam_eval_thres).")  # fmt: skip
    s.add_argument("--src", required=True, help="folder of <name>.npy (SIPE: keys + IS_CAM; IRN: keys + high_res)")
    s.add_argument("--out", required=True, help="folder for <name>.npz (usable by pseudo-masks, eval-cams, ...)")
    s.add_argument("--format", required=True, choices=["sipe", "irn"], help="whose .npy layout --src holds")
    s.add_argument(
        "--bg-threshold",
        type=float,
        help="IRN maps (needed there): the background plane's value (IRN's cam_eval_thres, e.g. 0.15)",
    )
    s.add_argument("--dataset", help="prepared dataset: check every map's keys and size against its image")
    s.add_argument("--split", help="with --dataset: expect exactly this split's images")
    s.add_argument("--shard", type=int, default=0, help="0-based shard index (the maps stage's split of the images)")
    s.add_argument("--num-shards", type=int, default=1, help="how many shards the images are cut into")


def _import_maps(a):
    from rpc.data.foreign_maps import import_maps

    if a.format == "irn" and a.bg_threshold is None:  # before any file is read
        raise DataError(IRN_NEEDS_THRESHOLD)
    print_result(import_maps(a.src, a.out, a.format, a.bg_threshold, a.dataset, a.split, a.shard, a.num_shards))


COMMANDS = [_cams_parser, _export_maps_parser, _import_maps_parser]

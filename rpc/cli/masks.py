"""Pseudo masks: the maps labelled by a two-pass confident dense CRF (the segmentation model's training masks)."""

from __future__ import annotations

import math

from rpc.cli.common import WORK_HELP, add_command, add_set_option, print_result
from rpc.utils.io import DataError

CRF_KEYS = ("gauss_sxy, gauss_compat, bilateral_sxy, bilateral_srgb, bilateral_compat, iterations, gt_prob, "
            "reference_size")  # fmt: skip


def _number(text: str):
    """``text`` as an int or a finite float (``5e-2`` included), else the text itself, for the schema to name."""
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if math.isfinite(value) else text
    return text


def crf_params(command: str, items: list[str] | None, base):
    """``--set KEY=VALUE ...`` -> ``base`` (a CRFParams) with those fields replaced, each value typed and bounded
    by the config schema's ``crf`` section (the workflow's ``crf:`` is checked by the same); a bad item is a
    DataError naming the command, the key and what is allowed."""
    import dataclasses

    from rpc.models.dense_crf import CRFParams
    from rpc.utils.config_schema import check_section

    kinds = {f.name: float if f.type in (float, "float") else int for f in dataclasses.fields(CRFParams)}
    values = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or key not in kinds:
            raise DataError(f"{command} --set: CRF parameter {item!r}: expected KEY=VALUE with KEY one of {CRF_KEYS}")
        values[key] = _number(text.strip())
    checked = check_section(values, "crf", f"{command} --set")
    return dataclasses.replace(base, **{k: kinds[k](v) for k, v in checked.items()})  # JSON: 10.0 is an integer


def _pseudo_masks_parser(sub) -> None:
    s = add_command(sub, "pseudo-masks", "two-pass confident dense-CRF labelling of the maps", _pseudo_masks,
                    "One <name>.png per image: 1..C where the CRF of the maps finds a class, 0 where it and a second "
                    "pass with the background weakened both find background, 255 (uncertain, ignored in training) "
                    "elsewhere.")  # fmt: skip
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--split", required=True, help="image list of the dataset, e.g. train_aug")
    s.add_argument("--cams", required=True, nargs="+", help="map folder(s), e.g. the shards of one run")
    s.add_argument("--out", required=True, help="folder of <name>.png pseudo masks (0..C, 255 uncertain)")
    s.add_argument("--workers", type=int, default=1, help="CRF processes")
    s.add_argument("--shard", type=int, default=0, help="0-based shard index")
    s.add_argument("--num-shards", type=int, default=1, help="how many shards the split is cut into")
    add_set_option(s, "--param", help=f"CRF parameters, e.g. bilateral_sxy=50; keys: {CRF_KEYS}")
    s.add_argument("--allow-extra-maps", action="store_true", help="maps may cover more images than the split")
    s.add_argument("--work", help=WORK_HELP)


def _pseudo_masks(a):
    from rpc.crf.pseudo import make_pseudo_masks
    from rpc.models.dense_crf import PSEUDO_MASK_CRF

    result = make_pseudo_masks(
        a.dataset, a.split, a.cams, a.out, workers=a.workers, shard_index=a.shard, num_shards=a.num_shards,
        params=crf_params("pseudo-masks", a.set, PSEUDO_MASK_CRF), allow_extra_maps=a.allow_extra_maps,
        work_dir=a.work,
    )  # fmt: skip
    print_result(result)


COMMANDS = [_pseudo_masks_parser]

"""Evaluation: the scores of the maps, the pseudo masks and the predictions, the figures and ablation tables."""

from __future__ import annotations

from rpc.cli.common import add_command


def _eval_cams_parser(sub) -> None:
    s = add_command(sub, "eval-cams", "Local.Maps mIoU (own background and IRN threshold sweep)", _eval_cams,
                    "Scores the maps against the split's ground truth twice: with the maps' own background channel, "
                    "and with a constant background swept over thresholds as IRN does.")  # fmt: skip
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--split", required=True, help="image list of the dataset, e.g. train")
    s.add_argument("--cams", required=True, nargs="+", help="map folder(s), e.g. the shards of one run")
    s.add_argument("--json", required=True, help="JSON file for the scores")
    s.add_argument("--md", help="also a Markdown table here")
    s.add_argument("--title", help="the Markdown table's title (default: Local.Maps (<split>))")
    s.add_argument("--workers", type=int, default=1, help="processes reading and scoring the maps")


def _eval_cams(a):
    from rpc.evaluation.local_maps import evaluate_cams, markdown
    from rpc.utils.io import write_json_atomic, write_text_atomic

    result = evaluate_cams(a.dataset, a.split, a.cams, workers=a.workers)
    write_json_atomic(a.json, result)
    if a.md:
        write_text_atomic(a.md, markdown(result, a.title or f"Local.Maps ({a.split})"))
    print(
        f"Local.Maps mIoU {100 * result['sipe']['miou']:.2f} (own background), "
        f"{100 * result['irn']['best_miou']:.2f} (IRN t={result['irn']['best_threshold']:.2f})"
    )


def _eval_masks_parser(sub) -> None:
    s = add_command(sub, "eval-masks", "mIoU of a folder of label PNGs against the ground truth", _eval_masks,
                    "Pseudo masks or predictions alike; prints the mIoU.")  # fmt: skip
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--split", required=True, help="image list of the dataset, e.g. val")
    s.add_argument("--pred", required=True, help="folder of <name>.png predictions")
    s.add_argument("--uncertain", choices=["background", "ignore"], default="background",
                   help="what a predicted 255 (uncertain) counts as: background, or not scored")  # fmt: skip
    s.add_argument("--json", required=True, help="JSON file for the scores")
    s.add_argument("--md", help="also a Markdown table here")
    s.add_argument("--title", help="the Markdown table's title (default: <pred> (<split>))")
    s.add_argument("--workers", type=int, default=1, help="processes reading and scoring the masks")


def _eval_masks(a):
    from rpc.data.index import DatasetIndex
    from rpc.evaluation.masks import evaluate_mask_dir, write_report

    index = DatasetIndex.load(a.dataset)
    result = evaluate_mask_dir(index, a.split, a.pred, uncertain=a.uncertain, workers=a.workers)
    write_report(result, a.json, a.md, title=a.title or f"{a.pred} ({a.split})")
    print(f"mIoU {100 * result['miou']:.2f} on {result['images']} images ({a.split}, 255 as {a.uncertain})")


def _eval_parts_parser(sub) -> None:
    s = add_command(sub, "eval-parts", "part-level recall of maps / pseudo masks (synthetic benchmark)", _eval_parts,
                    "How much of each object's discriminative and sub-discriminative parts the maps and the pseudo "
                    "masks cover, and how much background they take.")  # fmt: skip
    s.add_argument("--dataset", required=True, help="prepared synthetic dataset folder (its part masks)")
    s.add_argument("--split", required=True, help="image list of the dataset, e.g. train")
    s.add_argument("--cams", nargs="*", help="map folder(s), e.g. the shards of one run")
    s.add_argument("--masks", help="pseudo-mask folder")
    s.add_argument("--json", required=True, help="JSON file for the scores")


def _eval_parts(a):
    from rpc.evaluation.parts import evaluate_parts
    from rpc.utils.io import write_json_atomic

    result = evaluate_parts(a.dataset, a.split, a.cams, a.masks)
    write_json_atomic(a.json, result)
    for kind in ("maps", "pseudo_masks"):
        if result[kind]:
            r = result[kind]
            print(
                f"{kind}: discriminative recall {100 * r['disc_recall']:.1f}, sub-discriminative recall "
                f"{100 * r['sub_recall']:.1f}, background false positives {100 * r['bg_false_positive']:.1f}"
            )


def _figures_parser(sub) -> None:
    s = add_command(sub, "figures", "one PNG row per image: image, stage maps, RS-CAM, masks, ground truth",
                    _figures)  # fmt: skip
    s.add_argument("--dataset", required=True, help="prepared dataset folder")
    s.add_argument("--split", default="train", help="image list the images are taken from")
    s.add_argument("--names", nargs="*", help="images to show (default: the first --count of the split)")
    s.add_argument("--count", type=int, default=6, help="how many images without --names")
    s.add_argument("--cams", nargs="*", help="map folder(s)")
    s.add_argument("--masks", nargs="*", metavar="TITLE=DIR", help="mask columns, e.g. pseudo=results/x/masks")
    s.add_argument("--no-ground-truth", action="store_true", help="leave out the ground-truth column")
    s.add_argument("--out", required=True, help="folder for the PNGs")


def _figures(a):
    from rpc.data.index import DatasetIndex
    from rpc.evaluation.figures import make_figures

    names = a.names or DatasetIndex.load(a.dataset).names(a.split)[: a.count]
    masks = dict(item.split("=", 1) for item in a.masks or [])
    paths = make_figures(a.dataset, names, a.out, a.cams, masks, ground_truth=not a.no_ground_truth)
    print(f"{len(paths)} figures in {a.out}")


def _ablation_tables_parser(sub) -> None:
    s = add_command(sub, "ablation-tables", "the paper's ablation tables from the cells' local_maps.json",
                    _ablation_tables, "Our Local.Maps scores beside the paper's, one table per ablation of "
                    "--spec.")  # fmt: skip
    s.add_argument("--spec", default="config/ablations.yaml", help="the ablation cells and tables")
    s.add_argument("--results", default="results", help="folder holding the <run>/ result folders")
    s.add_argument("--inputs", nargs="+", required=True, help="the <results>/<run>/local_maps.json files to read")
    s.add_argument("--md", required=True, help="Markdown file for the tables")
    s.add_argument("--json", required=True, help="JSON file for the tables")


def _ablation_tables(a):
    from rpc.evaluation.ablations import write_ablation_tables
    from rpc.evaluation.declared import DeclaredFiles

    for t in write_ablation_tables(a.spec, DeclaredFiles(a.inputs, a.results), a.md, a.json):
        print(f"{t['title']}: best ours {t['ours_best']!r}, paper {t['paper_best']!r}")


COMMANDS = [_eval_cams_parser, _eval_masks_parser, _eval_parts_parser, _figures_parser, _ablation_tables_parser]

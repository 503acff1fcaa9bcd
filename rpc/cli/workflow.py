"""Workflow internals: the commands the Snakemake workflow runs around the stages (summaries, report pages,
shard merging) and its maintenance (a stale lock, finished work folders, comparing two runs' results)."""

from __future__ import annotations

from rpc.cli.common import add_command, print_result
from rpc.utils.io import DataError


def _summary_parser(sub) -> None:
    s = add_command(sub, "summary", "Table 1/4 over seeds, paired differences, part-level scores, every run",
                    _summary, "Give --experiments (with --seeds or their own seeds), or --runs for one run's own "
                    "summary.")  # fmt: skip
    s.add_argument("--experiments", nargs="+", help="NAME or NAME=SEED,SEED; runs are <experiment>-s<seed>")
    s.add_argument("--seeds", nargs="+", type=int, help="seeds of the experiments named without their own")
    s.add_argument("--extra", nargs="*", help="runs without seeds, e.g. ground_truth (the upper bound)")
    s.add_argument("--runs", nargs="+", help="instead: one run's own summary")
    s.add_argument("--dataset", help="prepared dataset (the paper's values are shown only for VOC / COCO themselves)")
    s.add_argument("--plot", help="PNG bar plot of the part-level scores")
    s.add_argument("--results", default="results", help="folder holding the <run>/ result folders")
    s.add_argument(
        "--inputs",
        nargs="+",
        required=True,
        help="the score files to read (<results>/<run>/<file>; the rule's declared input)",
    )
    s.add_argument("--dataset-kind", default="synthetic", help="voc | coco | synthetic (picks the paper's values)")
    s.add_argument("--md", required=True, help="Markdown file for the tables")
    s.add_argument("--json", required=True, help="JSON file for the tables")


def _summary(a):
    from rpc.evaluation.declared import DeclaredFiles
    from rpc.evaluation.summary import write_run_summary, write_summary

    files = DeclaredFiles(a.inputs, a.results)
    if a.runs:
        for run in a.runs:
            write_run_summary(run, files, a.dataset_kind, a.md, a.json)
        return
    if not a.experiments:
        raise DataError("summary needs --experiments (or --runs for one run's summary)")
    seeds = {}
    for item in a.experiments:  # NAME (the --seeds) or NAME=SEED,SEED,...
        name, sep, own = item.partition("=")
        seeds[name] = [int(x) for x in own.split(",")] if sep else list(a.seeds or [])
        if not seeds[name]:
            raise DataError(f"summary: no seeds for experiment {name!r} (give --seeds or {name}=15,16)")
    write_summary(seeds, files, a.dataset_kind, a.md, a.json, a.extra or [], a.dataset, a.plot)


def _report_pages_parser(sub) -> None:
    s = add_command(sub, "report-pages", "the report's HTML tables and plots (curves, per-class IoU, IRN sweep)",
                    _report_pages)  # fmt: skip
    s.add_argument("--results", default="results", help="the results folder")
    s.add_argument("--runs", nargs="*", default=[], help="run folders under --results, e.g. rpc-s15")
    s.add_argument("--md", nargs="*", default=[], metavar="MD=HTML", help="Markdown tables to render, as MD=HTML pairs")
    s.add_argument("--curves", help="PNG: training curves")
    s.add_argument("--local-maps", help="PNG: per-class Local.Maps IoU and the IRN sweep")
    s.add_argument("--segmentation", help="PNG: DeepLab's per-class IoU on val and its confusion matrices")


def _report_pages(a):
    from pathlib import Path

    from rpc.evaluation.report_pages import markdown_to_html, plot_curves, plot_local_maps, plot_segmentation
    from rpc.utils.io import write_text_atomic

    for pair in a.md:
        md, sep, out = pair.partition("=")
        if not sep:
            raise DataError(f"--md {pair!r}: expected MD=HTML")
        text = Path(md).read_text()
        title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), Path(md).stem)
        write_text_atomic(out, markdown_to_html(text, title))
    if a.curves:
        plot_curves(a.results, a.runs, a.curves)
    if a.local_maps:
        plot_local_maps(a.results, a.runs, a.local_maps)
    if a.segmentation:
        plot_segmentation(a.results, a.runs, a.segmentation)


def _merge_dirs_parser(sub) -> None:
    s = add_command(sub, "merge-dirs", "gather shard folders into one (hard links; copies across devices)",
                    _merge_dirs)  # fmt: skip
    s.add_argument("--inputs", nargs="+", required=True, help="the shard folders")
    s.add_argument("--out", required=True, help="the merged folder")


def _merge_dirs(a):
    from rpc.utils.merge import merge_dirs

    n = merge_dirs(a.inputs, a.out)
    print(f"{n} files in {a.out}")


def _unlock_stale_parser(sub) -> None:
    s = add_command(sub, "unlock-stale", "remove a Snakemake lock left by a killed run (none if one still runs)",
                    _unlock_stale)  # fmt: skip
    s.add_argument("--dir", default=".", help="the workflow's working folder")


def _unlock_stale(a):
    from rpc.utils.snakemake_lock import unlock_if_stale

    print(f"{a.dir}: {unlock_if_stale(a.dir)}")


def _compare_results_parser(sub) -> None:
    s = add_command(sub, "compare-results", "are two results folders the same (every file; JSON without timings)?",
                    _compare_results, "Prints the comparison as JSON; exit status 1 where the folders "
                    "differ.")  # fmt: skip
    s.add_argument("a", help="one results folder")
    s.add_argument("b", help="the other results folder")


def _compare_results(a):
    from rpc.utils.digests import compare_outputs

    result = compare_outputs(a.a, a.b)
    print_result(result, indent=1)
    if result["differ"] or result["only_a"] or result["only_b"]:
        raise SystemExit(1)


def _clean_work_parser(sub) -> None:
    s = add_command(sub, "clean-work", "remove the work folders of finished trainings (unfinished ones kept)",
                    _clean_work)  # fmt: skip
    s.add_argument("--work", default="work", help="the workflow's work folder")
    s.add_argument("--dry-run", action="store_true", help="only list what would be removed")


def _clean_work(a):
    from rpc.utils.workdir import clean_finished

    removed = clean_finished(a.work, dry_run=a.dry_run)
    for folder, size in removed:
        print(f"{'would remove' if a.dry_run else 'removed'} {folder} ({size / 2**20:.1f} MiB)")
    print(f"{len(removed)} finished work folder(s), {sum(s for _, s in removed) / 2**20:.1f} MiB; unfinished kept")


COMMANDS = [_summary_parser, _report_pages_parser, _merge_dirs_parser, _unlock_stale_parser, _compare_results_parser,
            _clean_work_parser]  # fmt: skip

"""``python -m rpc <command> ...``: the pipeline's command line, one sub-command per stage.

Parsing only; the work is in the stages, imported inside the handlers. Each module holds one part of the
pipeline, every command's parser beside its handler; :data:`GROUPS` lists them in pipeline order, as
``--help`` shows them.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import textwrap

from rpc import __version__
from rpc.cli import classifier, data, evaluation, maps, masks, progress, segmentation, workflow
from rpc.cli.common import Unfinished, print_result
from rpc.utils.io import DataError

__all__ = ["GROUPS", "build_parser", "main", "print_result", "Unfinished"]

#: The sub-commands' groups in pipeline order, as ``rpc --help`` lists them; the workflow's own last.
GROUPS = [
    ("data", data.COMMANDS),
    ("classifier", classifier.COMMANDS),
    ("maps", maps.COMMANDS),
    ("pseudo masks", masks.COMMANDS),
    ("segmentation", segmentation.COMMANDS),
    ("evaluation", evaluation.COMMANDS),
    ("watching a run", progress.COMMANDS),
    ("workflow internals", workflow.COMMANDS),
]

DESCRIPTION = (
    "RPC (Region-Specific Prototype Customization) for weakly supervised semantic segmentation: from images "
    "with image-level labels only, train a classifier, turn its localisation maps (RS-CAMs) into pseudo masks "
    "and train a DeepLabv2 segmentation model on them; score every step. The Snakemake workflow runs these "
    "commands in order (snakemake --cores N); each also runs on its own."
)


def _command_list(groups: list[tuple[str, list[tuple[str, str]]]], width: int) -> str:
    """The grouped ``name  one-line help`` list of the top-level ``--help``, wrapped to ``width`` columns."""
    name_width = max(len(name) for _, commands in groups for name, _ in commands) + 2
    blocks = []
    for title, commands in groups:
        lines = [f"{title}:"]
        for name, help in commands:
            lines.append(textwrap.fill(help, width, initial_indent=f"  {name:<{name_width}}",
                                       subsequent_indent=" " * (name_width + 2)))  # fmt: skip
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def build_parser() -> argparse.ArgumentParser:
    width = max(60, min(shutil.get_terminal_size().columns, 120) - 2)
    p = argparse.ArgumentParser(prog="rpc", formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="`rpc COMMAND --help` shows a command's options.")  # fmt: skip
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # no help= for the sub-commands: argparse would list them in one block; the grouped list is in the description
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of the commands above")
    groups = []
    for title, commands in GROUPS:
        before = set(sub.choices)
        for add in commands:
            add(sub)
        groups.append((title, [(name, parser.summary) for name, parser in sub.choices.items() if name not in before]))
    p.description = textwrap.fill(DESCRIPTION, width) + "\n\n" + _command_list(groups, width)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the stages' status lines (work folders, resumes, precision decisions), time-stamped, on stderr: stdout keeps
    # only the command's result (one JSON line for the model stages), which scripts read
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")  # fmt: skip
    if not sys.stderr.isatty():  # a log file: a progress line every 30 s, not ten a second
        os.environ.setdefault("TQDM_MININTERVAL", "30")
    try:
        args.func(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Unfinished as exc:
        print(f"unfinished: {exc}", file=sys.stderr)
        return 3
    return 0

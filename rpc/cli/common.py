"""What every sub-command module shares: the one-line JSON result, the exit statuses' exceptions, the help
formatter and the options several commands take (``--set``, ``--work``, ``--tensorboard``)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def print_result(result, indent: int | None = None) -> None:
    """A command's result as JSON on stdout, written and flushed in one piece: under torchrun the ranks share
    one stdout, and a line written in two parts can be split by another rank's log."""
    sys.stdout.write(json.dumps(result, indent=indent) + "\n")
    sys.stdout.flush()


class Unfinished(RuntimeError):
    """A stage stopped on purpose before its output was complete (exit status 3)."""


WORK_HELP = ("work folder for the finished images until the whole output is done (resume point of a killed "
             "run); without it they are written to the output folder directly")  # fmt: skip


def _meaningful(default) -> bool:
    """A default worth showing in ``--help``: not None (a required option, or "not given"), not False (a switch
    that is off), not SUPPRESS, not an empty list or string."""
    if default is None or default is False or default is argparse.SUPPRESS:
        return False
    return not (isinstance(default, (list, tuple, str)) and len(default) == 0)


class HelpFormatter(argparse.HelpFormatter):
    """``(default: ...)`` after an option's help only where the default means something (ArgumentDefaultsHelp-
    Formatter also writes ``(default: None)`` after required options and ``(default: False)`` after switches);
    list defaults as they are typed on the command line (``1.0 0.5``, not ``[1.0, 0.5]``)."""

    def _get_help_string(self, action) -> str:
        help = action.help or ""
        if "%(default)" in help or not _meaningful(action.default):
            return help
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return help
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(str(x) for x in default)
        return f"{help} (default: {str(default).replace('%', '%%')})"


def add_command(sub, name: str, help: str, func, details: str = "") -> argparse.ArgumentParser:
    """A sub-command ``name`` run by ``func(args)``. ``help`` is its line in ``rpc --help`` (the caller writes
    the grouped list: no argparse list, which has no groups) and begins its own ``--help`` page's description;
    ``details`` follow it there."""
    description = help[:1].upper() + help[1:] if help.split()[0].islower() else help  # "mIoU ..." stays
    description += "" if description.endswith((".", "?")) else "."
    parser = sub.add_parser(name, description=f"{description} {details}".strip(), formatter_class=HelpFormatter)
    parser.set_defaults(func=func)
    parser.summary = help  # read by rpc.cli.build_parser for the top-level list
    return parser


def add_set_option(s, *aliases: str, metavar: str = "KEY=VALUE", help: str) -> None:
    """The one override syntax: ``--set KEY=VALUE ...`` (``dest="set"``), with a command's older spellings as
    aliases of the same option; repeated, the values add up."""
    s.add_argument("--set", *aliases, dest="set", nargs="*", action="extend", metavar=metavar,
                   help=help + (f" ({', '.join(aliases)}: the same option)" if aliases else ""))  # fmt: skip


def tensorboard_flag(s) -> None:
    """The trainers' optional TensorBoard logging; the workflow turns it on with RPC_TENSORBOARD=1."""
    s.add_argument("--tensorboard", action="store_true", default=os.environ.get("RPC_TENSORBOARD", "") not in ("", "0"),
                   help="also log to TensorBoard under --work (needs the tensorboard package; default on when "
                        "RPC_TENSORBOARD=1, as the workflow's `tensorboard: true` sets)")  # fmt: skip

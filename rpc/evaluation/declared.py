"""The score files a summary reads, taken from what its rule declared as input.

The summary and the ablation tables read only files handed to them (the Snakemake rule's ``{input}``), never
files found by walking the results folder: a file renamed in one rule but not in the summary then stops the
summary with an error naming it, instead of turning into "-" or a stale number.

Each declared file is ``<root>/<run>/<name>`` (``name`` may hold sub-folders, e.g. ``segmentation/val.json``).
"""

from __future__ import annotations

import os
from pathlib import Path

from rpc.utils.io import DataError


class DeclaredFiles:
    """``files`` (paths under ``root``) looked up by run and file name."""

    def __init__(self, files: list[str | os.PathLike], root: str | os.PathLike):
        self.root = Path(root)
        self._files: dict[tuple[str, str], Path] = {}
        for f in files:
            path = Path(f)
            try:
                rel = path.relative_to(self.root)
            except ValueError:
                raise DataError(f"{path}: declared input is not under the results folder {self.root}") from None
            if len(rel.parts) < 2:
                raise DataError(f"{path}: declared input is not <results>/<run>/<file>")
            self._files[(rel.parts[0], Path(*rel.parts[1:]).as_posix())] = path

    def has(self, run: str, name: str) -> bool:
        return (run, name) in self._files

    def path(self, run: str, name: str) -> Path:
        """The declared ``<root>/<run>/<name>``; an error if it was not declared or does not exist."""
        path = self._files.get((run, name))
        if path is None:
            raise DataError(f"{self.root / run / name}: needed but not among the declared inputs "
                            f"(the rule's input must list every file the summary reads)")  # fmt: skip
        if not path.is_file():
            raise DataError(f"{path}: result file missing (the summary reads every score of every run)")
        return path

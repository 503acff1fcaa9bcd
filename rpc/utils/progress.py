"""The bookkeeping the per-image stages (maps, pseudo masks, predictions) share: which images of the shard are
still to do, a progress bar, the wall clock and the result line the stage prints
(``{"images", "skipped", "wall_s", "images_per_s", ...}``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from tqdm import tqdm


class ImageProgress:
    """``todo``: the ``names`` for which ``done(name)`` is false, in their order. Used as a context manager around
    the work: the clock runs and the bar shows inside it; :meth:`result` reads them afterwards."""

    def __init__(self, names: list[str], done: Callable[[str], bool], desc: str):
        self.names = list(names)
        self.todo = [n for n in self.names if not done(n)]
        self.desc = desc
        self.wall_s = 0.0

    def __enter__(self) -> ImageProgress:
        self._bar = tqdm(total=len(self.todo), desc=self.desc, dynamic_ncols=True)
        self._t0 = time.perf_counter()
        return self

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._t0
        self._bar.close()

    def result(self, **extra) -> dict:
        """The stage's result line: images done now, images skipped (done before), wall seconds, images per
        second (NaN when nothing was to do) and ``extra``."""
        return {"images": len(self.todo), "skipped": len(self.names) - len(self.todo), "wall_s": self.wall_s,
                "images_per_s": len(self.todo) / self.wall_s if self.todo else float("nan"), **extra}  # fmt: skip

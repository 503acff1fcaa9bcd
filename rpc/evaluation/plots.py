"""Matplotlib for the plots of the summary and the report: headless, written atomically and reproducibly."""

from __future__ import annotations

import os


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int) -> None:
    """PNG, atomically, without the matplotlib version in its metadata (equal figures give equal bytes); the
    figure is closed."""
    from rpc.utils.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight")  # legends outside
    pyplot().close(fig)

"""Optional TensorBoard logging of the trainers (``--tensorboard``; the workflow's ``tensorboard: true``).

The classifier writes its logged losses and learning rate to ``<work>/tensorboard/``; DeepLab adds mmengine's
``TensorboardVisBackend`` beside its ``LocalVisBackend`` (``<work>/<timestamp>/vis_data/``). Watch a run with
``tensorboard --logdir work/``. Logging changes no number: it is not part of any resume settings or rerun trigger.
Needs the ``tensorboard`` package (``pip install tensorboard``, or the project's ``tensorboard`` extra)."""

from __future__ import annotations

import os
from pathlib import Path


def require_tensorboard() -> None:
    """A clear error, before any training starts, when the package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            "TensorBoard logging was asked for (--tensorboard / config `tensorboard: true`) but the `tensorboard` "
            "package is not installed: `pip install tensorboard`, or turn the option off"
        ) from exc


class ScalarWriter:
    """Scalars per step into TensorBoard event files under ``log_dir`` (a resumed run appends a new file)."""

    def __init__(self, log_dir: str | os.PathLike):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, step: int, scalars: dict, prefix: str = "") -> None:
        for key, value in scalars.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                self.writer.add_scalar(f"{prefix}{key}", value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def add_tensorboard_backend(cfg) -> None:
    """An mmengine config's visualizer also writes TensorBoard events (the local JSON scalars stay: the declared
    ``train_log.json`` is made from them)."""
    require_tensorboard()
    vis = dict(cfg.get("visualizer") or dict(type="Visualizer"))  # what the Runner builds when none is given
    backends = list(vis.get("vis_backends") or [dict(type="LocalVisBackend")])
    if not any(b.get("type") == "TensorboardVisBackend" for b in backends):
        backends.append(dict(type="TensorboardVisBackend"))
    vis["vis_backends"] = backends
    cfg.visualizer = vis

"""An mmengine hook that stops DeepLab training at the first non-finite loss (mmengine 0.10 has none).

Without it a diverged run trains on for its whole schedule and writes a model of NaNs that later stages read as
if it were a result. The stop raises before the next checkpoint, so the work folder keeps the last good one.
"""

from __future__ import annotations

import math

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

import torch  # noqa: E402
from mmengine.dist import all_reduce, get_world_size  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmseg.registry import HOOKS  # noqa: E402


class NonFiniteLoss(RuntimeError):
    pass


def get_device_of(x) -> torch.device:
    return x.device if isinstance(x, torch.Tensor) else torch.device("cpu")


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """After every training iteration: raise ``NonFiniteLoss`` if the total loss is NaN or infinite (on any rank:
    under DDP the ranks agree through one all-reduce of a 0/1 flag)."""

    priority = "VERY_HIGH"  # before the checkpoint hook of the same iteration

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loss = (outputs or {}).get("loss")
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss or 0.0)
        if get_world_size() > 1:  # every rank stops together, or the others wait in the next all-reduce
            flag = torch.tensor([0.0 if math.isfinite(value) else 1.0], device=get_device_of(loss))
            all_reduce(flag)
            value = value if flag.item() == 0 else math.nan
        if not math.isfinite(value):
            raise NonFiniteLoss(
                f"non-finite DeepLab loss ({value}) at iteration {runner.iter + 1}; the last good checkpoint stays "
                f"in {runner.work_dir}; lower the learning rate (optim_wrapper.optimizer.lr) or check the masks"
            )


@HOOKS.register_module()
class ExportedCheckpointHook(Hook):
    """Makes an exported folder (``python -m rpc export-mmseg``) portable: a Runner built from its ``config.py``
    with no ``load_from`` of its own loads ``<the config's folder>/<filename>``, wherever the folder was moved and
    whatever the working directory. ``load_from`` given by the caller (mmseg's ``tools/test.py`` passes its
    checkpoint argument) wins. Runs before the Runner loads weights (``before_run`` precedes ``load_or_resume``)."""

    priority = "VERY_HIGH"

    def __init__(self, filename: str = "checkpoint.pth"):
        self.filename = filename

    def before_run(self, runner) -> None:
        import os

        config_file = getattr(runner.cfg, "filename", None)
        if runner._load_from is None and config_file:
            runner._load_from = os.path.join(os.path.dirname(os.path.abspath(config_file)), self.filename)

"""Make mmsegmentation 1.2.2 usable with mmcv-lite 2.1.0 and torch >= 2.6. Import this before mmseg.

1. ``mmcv.ops`` stand-in. mmcv-lite ships ``mmcv/ops/*.py`` without the compiled ``mmcv._ext``, so
   ``import mmcv.ops`` fails, and mmseg imports ``point_sample`` and ``sigmoid_focal_loss`` from it at module
   level (``mmseg/models/utils/point_sample.py``, ``mmseg/models/losses/focal_loss.py``, ...). When the compiled
   ops are absent, a small module is registered as ``mmcv.ops`` with ``point_sample`` (pure torch, the same
   contract as mmcv's) and a ``sigmoid_focal_loss`` that raises a clear error if a config ever uses it. Nothing
   else is provided; DeepLabv2 needs no compiled op. With full mmcv installed, nothing is replaced.

2. Weights-only checkpoint loading. mmengine saves ``message_hub`` / ``meta`` entries holding a few non-tensor
   objects, and torch >= 2.6 loads with ``weights_only=True`` by default, so ``Runner.resume`` fails. The exact
   globals found in mmengine's checkpoints are allowed with ``torch.serialization.add_safe_globals`` (with a
   narrow stand-in for the one ``getattr`` they use); weights-only loading stays on.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import types
import warnings

import torch
import torch.nn.functional as F

_DONE = False


def _point_sample(input: torch.Tensor, points: torch.Tensor, align_corners: bool = False, **kwargs) -> torch.Tensor:
    """``input (N, C, H, W)``, ``points (N, P, 2)`` or ``(N, Hp, Wp, 2)`` in [0, 1] (x, y) -> features at the
    points, ``(N, C, P)`` or ``(N, C, Hp, Wp)``, by bilinear ``grid_sample`` (mmcv's contract)."""
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    out = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if add_dim else out


def _sigmoid_focal_loss(*args, **kwargs):
    raise RuntimeError(
        "sigmoid_focal_loss needs the compiled mmcv ops, which mmcv-lite lacks; install full mmcv "
        "(mmcv>=2.0.0rc4,<2.2.0) or use another loss"
    )


def _missing_op(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    # ModuleNotFoundError (not AttributeError): mmseg guards its optional heads with
    # ``try: from mmcv.ops import X except ModuleNotFoundError``, exactly as when mmcv is not compiled
    raise ModuleNotFoundError(f"mmcv.ops.{name} needs the compiled mmcv ops (mmcv-lite has none)", name="mmcv._ext")


def _install_ops_stand_in() -> bool:
    """Register the ``mmcv.ops`` stand-in if the compiled ops cannot be imported. Returns whether it did."""
    try:
        importlib.import_module("mmcv.ops")
        return False
    except ModuleNotFoundError as exc:
        if exc.name != "mmcv._ext":
            raise
    import mmcv

    ops = types.ModuleType("mmcv.ops")
    ops.__doc__ = "rpc stand-in for the compiled mmcv ops (see rpc.segmentation.compat)"
    ops.point_sample = _point_sample
    ops.sigmoid_focal_loss = _sigmoid_focal_loss
    ops.__getattr__ = _missing_op
    sys.modules["mmcv.ops"] = ops
    mmcv.ops = ops
    return True


def _allow_mmengine_checkpoint_classes() -> None:
    """Allow exactly the globals found in mmengine 0.10 Runner checkpoints (``get_unsafe_globals_in_checkpoint``
    on one: numpy arrays/scalars/dtypes in the message hub, ``HistoryBuffer``, and ``getattr(HistoryBuffer,
    'min')``-style references to its statistics methods). ``getattr`` itself is NOT allowed: a narrow stand-in
    is registered under its name that resolves only HistoryBuffer's registered statistics methods."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray

    def history_buffer_statistic(owner, name: str):
        # the built-in statistics are registered lazily (first HistoryBuffer()), custom ones by register_statistics
        allowed = {"min", "max", "current", "mean", *HistoryBuffer._statistics_methods}
        if owner is not HistoryBuffer or name not in allowed:
            raise pickle.UnpicklingError(f"refusing getattr({owner!r}, {name!r}) while loading an mmengine checkpoint")
        return getattr(HistoryBuffer, name)

    # the dtype classes are built (BUILD), not imported by name: float64 for logged scalars, int64 for counts
    dtype_classes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32)]
    globals_ = [HistoryBuffer, np.dtype, np.ndarray, *dtype_classes, (history_buffer_statistic, "builtins.getattr")]
    globals_ += [(fn, f"{fn.__module__}.{fn.__name__}") for fn in (multiarray._reconstruct, multiarray.scalar)]
    torch.serialization.add_safe_globals(globals_)


def ensure_mmseg() -> bool:
    """Idempotent set-up; returns True if the ops stand-in is in use."""
    global _DONE, _STAND_IN
    if not _DONE:
        _STAND_IN = _install_ops_stand_in()
        if _STAND_IN:  # mmcv.cnn warns once about the deformable attention op we do not use
            warnings.filterwarnings("ignore", message="Fail to import ``MultiScaleDeformableAttention``")
        _allow_mmengine_checkpoint_classes()
        _DONE = True
    return _STAND_IN


_STAND_IN = False

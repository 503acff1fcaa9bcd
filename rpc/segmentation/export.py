"""A trained DeepLab as mmseg's own tools expect it: an mmengine checkpoint (``{"meta", "state_dict"}``) and a
``.py`` config, so that ``mmseg.apis.init_model`` / ``inference_model`` and mmseg's test loop
(``Runner.from_cfg(cfg).test()``, what mmseg's ``tools/test.py`` runs) load it.

The config imports this package's registering modules (``custom_imports``: the DeepLabv2 head, the dataset, the
hooks the training config names) and carries a test loop over the dataset it was trained on (``--dataset`` /
``--split`` choose another; a dataset of another class count than the model's is refused): ``test_dataloader``
(the whole image, ground-truth masks), ``test_evaluator`` (mIoU) and ``test_cfg``. With mmcv-lite (no compiled
ops), run ``import rpc.segmentation.compat; rpc.segmentation.compat.ensure_mmseg()`` before importing ``mmseg``
yourself: mmseg imports ``mmcv.ops`` before any ``custom_imports`` are read.

``config.py`` is Python that whoever loads it runs (``Config.fromfile`` executes it), written from the model
file's stored config, which comes from someone else. Besides the stored config's own checks
(``rpc.segmentation.stored_config``), the text is checked before anything is written (:func:`check_config_text`):
it holds only assignments of literal data to plain names (``dict(...)`` being the one call), no ``{{`` (mmengine
substitutes those before parsing), and it says exactly what the stored config says. Both files are then
published together: written under temporary names and renamed into place, so a failed export leaves nothing
under the final names.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import json
import math
import os
from pathlib import Path

import torch

from rpc.segmentation.compat import ensure_mmseg

ensure_mmseg()

from rpc.data.index import DatasetIndex  # noqa: E402
from rpc.segmentation.predict import build_segmenter, read_segmenter  # noqa: E402
from rpc.segmentation.stored_config import OWN_REGISTERING_MODULES, SCALARS  # noqa: E402
from rpc.utils.io import DataError, atomic_dir, atomic_path  # noqa: E402


def export_mmseg(model_file: str | os.PathLike, out_dir: str | os.PathLike, dataset: str | os.PathLike | None = None,
                 split: str = "val") -> dict:  # fmt: skip
    """``out_dir/config.py`` and ``out_dir/checkpoint.pth`` from a ``train_segmentation`` model file; the test loop
    runs on ``split`` of ``dataset`` (default: the prepared dataset the model was trained on; checked when given,
    and when the default one is there)."""
    ckpt, stored, classes = read_segmenter(model_file)  # every check before the model is built
    head_classes = stored["model"].get("decode_head", {}).get("num_classes")
    if head_classes != len(classes):
        raise DataError(f"{model_file}: {len(classes)} class names, but a decode head of {head_classes} classes; "
                        "not a model file written by `python -m rpc seg-train`")  # fmt: skip
    given = dataset is not None
    dataset = dataset or stored.get("train_dataloader", {}).get("dataset", {}).get("dataset_dir")
    if not dataset:
        raise DataError(f"{model_file}: the model file names no training dataset; give --dataset")
    if given or Path(dataset).is_dir():
        check_test_dataset(model_file, classes, dataset, split)
    model, cfg = build_segmenter(ckpt, stored)
    meta = json.loads(ckpt.get("meta") or "{}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: not a folder; --out names the folder for config.py and checkpoint.pth")
    cfg.custom_imports = dict(imports=list(OWN_REGISTERING_MODULES), allow_failed_imports=False)
    cfg.model.backbone.init_cfg = None  # the weights are in the checkpoint
    cfg.dataset_meta = dict(classes=list(classes))
    # inference_model's pipeline and the test loop's: the whole image, as seg-predict at scale 1
    cfg.test_pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"), dict(type="PackSegInputs")]
    cfg.test_dataloader = dict(
        batch_size=1, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
        dataset=dict(type="PreparedSegDataset", dataset_dir=str(Path(dataset).resolve()), split=split, mask_dir=None,
                     pipeline=cfg.test_pipeline),
    )  # fmt: skip
    cfg.test_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
    cfg.test_cfg = dict(type="TestLoop")
    # portable: the data by absolute paths; the weights found beside config.py wherever the folder is moved
    # (ExportedCheckpointHook: a Runner without its own load_from loads <config's folder>/checkpoint.pth); logs
    # under the working directory, as mmseg's tools do; one data_preprocessor, the model's
    train_data = cfg.get("train_dataloader", {}).get("dataset", {})
    if train_data.get("dataset_dir"):
        train_data["dataset_dir"] = str(Path(train_data["dataset_dir"]).resolve())
    cfg.resume, cfg.load_from = False, None
    cfg.custom_hooks = [h for h in cfg.get("custom_hooks", []) if h.get("type") != "ExportedCheckpointHook"]
    cfg.custom_hooks.append(dict(type="ExportedCheckpointHook", filename="checkpoint.pth"))
    cfg.work_dir, cfg.launcher = f"work_dirs/{out_dir.resolve().name}", "none"
    if "data_preprocessor" in cfg.model:
        cfg.data_preprocessor = cfg.model.data_preprocessor
    try:
        text = cfg.pretty_text
    except SyntaxError as exc:  # mmengine's formatter could not parse what it wrote
        raise DataError(f"{model_file}: the stored config does not give a Python config.py ({exc.msg})") from exc
    if _plain(check_config_text(text, model_file)) != _plain(cfg.to_dict()):
        raise DataError(f"{model_file}: the exported config.py would not say what the stored config says (a key "
                        "or value that mmengine does not write back as itself); nothing written")  # fmt: skip
    state = {"meta": {"dataset_meta": {"classes": list(classes)}, "iterations": meta.get("iterations")},
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}  # fmt: skip
    fresh = not out_dir.exists()
    # a new folder appears whole; in an existing one both files are renamed into place, the checkpoint first
    with atomic_dir(out_dir) if fresh else contextlib.nullcontext(out_dir) as folder:
        with atomic_path(folder / "config.py") as config_tmp, atomic_path(folder / "checkpoint.pth") as ckpt_tmp:
            with open(ckpt_tmp, "wb") as f:
                torch.save(state, f)
            config_tmp.write_bytes(text.encode("utf-8"))
    return {"config": str(out_dir / "config.py"), "checkpoint": str(out_dir / "checkpoint.pth")}


def check_test_dataset(model_file, classes, dataset, split: str) -> None:
    """The test loop's dataset is a prepared dataset of the model's class count, with the split ``split``."""
    index = DatasetIndex.load(dataset)
    if index.num_classes != len(classes):
        raise DataError(f"{model_file}: a model of {len(classes)} classes, but the dataset {index.root} has "
                        f"{index.num_classes}; give --dataset a dataset of the model's classes")  # fmt: skip
    index.names(split)  # an unknown split, or a list that does not read, is named now


def check_config_text(text: str, source) -> dict:
    """The settings ``text`` (an exported ``config.py``) assigns, if it is data only: every statement assigns a
    literal to a plain name that is not a builtin's, a literal being a string, a number, True / False / None, a
    list, tuple or dict display of literals, or ``dict(...)`` of keyword literals or of one dict display (what
    mmengine's ``pretty_text`` writes). No ``{{`` anywhere: ``Config.fromfile`` substitutes those before it parses
    the file. Anything else is a ``DataError`` naming ``source`` and the line."""
    if "{{" in text:
        line = text[: text.index("{{")].count("\n") + 1
        raise DataError(f"{source}: the exported config.py would hold '{{{{' (line {line}), which mmengine "
                        "replaces before reading the file; nothing written")  # fmt: skip
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise DataError(f"{source}: the exported config.py would not be Python (line {exc.lineno}: {exc.msg}); "
                        "nothing written") from exc  # fmt: skip
    settings = {}
    for stmt in tree.body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
        if not isinstance(target, ast.Name) or target.id in vars(builtins):
            raise DataError(f"{source}: line {stmt.lineno} of the exported config.py would not assign data to a "
                            f"setting ({_excerpt(text, stmt)}); nothing written")  # fmt: skip
        try:
            settings[target.id] = _literal(stmt.value)
        except _NotData as exc:
            node = exc.args[0]
            raise DataError(f"{source}: line {node.lineno} of the exported config.py would run code, not hold data "
                            f"({_excerpt(text, node)}); nothing written") from None  # fmt: skip
    return settings


class _NotData(Exception):
    """``args[0]``: the syntax node that is not a literal."""


def _literal(node: ast.AST):
    """The value of a literal node (:func:`check_config_text`); ``_NotData(node)`` for anything else."""
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id == "dict":
            if not node.args and all(k.arg is not None for k in node.keywords):
                return {k.arg: _literal(k.value) for k in node.keywords}
            if not node.keywords and len(node.args) == 1 and isinstance(node.args[0], ast.Dict):
                return _literal(node.args[0])
        raise _NotData(node)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):  # ``**other``
            raise _NotData(node)
        keys = [_literal(k) for k in node.keys]
        if not all(isinstance(k, str) for k in keys):
            raise _NotData(node)
        return dict(zip(keys, (_literal(v) for v in node.values), strict=True))
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(e) for e in node.elts]  # a starred item is no literal
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Constant | ast.UnaryOp):
        try:
            value = ast.literal_eval(node)
        except ValueError:
            raise _NotData(node) from None
        if isinstance(value, SCALARS) and not (isinstance(value, float) and not math.isfinite(value)):
            return value
    raise _NotData(node)


def _excerpt(text: str, node: ast.AST) -> str:
    segment = " ".join((ast.get_source_segment(text, node) or type(node).__name__).split())
    return repr(segment if len(segment) <= 80 else segment[:77] + "...")


def _plain(value):
    """``value`` with tuples as lists: the shape both a Python config and its JSON copy give."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

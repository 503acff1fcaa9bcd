"""Turning a YAML file, a preset and ``key=value`` overrides into ``ModelConfig`` and ``TrainConfig``."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import yaml

from rpc.engine.train import TrainConfig
from rpc.models.rpc import PRESETS, ModelConfig
from rpc.utils.io import DataError


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """``["model.depth=18", "train.epochs=2"]`` -> ``{"model": {"depth": 18}, "train": {"epochs": 2}}``
    (values parsed as YAML)."""
    out: dict[str, dict] = {"model": {}, "train": {}}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in out:
            raise DataError(f"override {item!r} must look like model.<key>=<value> or train.<key>=<value>")
        out[section][name] = yaml.safe_load(value)
    return out


def parse_key_values(items: list[str]) -> dict:
    """``["epochs=8", "lr=0.1"]`` -> ``{"epochs": 8, "lr": 0.1}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DataError(f"setting {item!r} must look like <key>=<value>")
        out[key] = yaml.safe_load(value)
    return out


def check_type(value, hint, where: str):
    """``value`` (parsed from YAML) converted to the annotation ``hint`` (int, float, bool, str, ``X | None``,
    ``tuple[int, ...]``, ``tuple[int, int]``), or a :class:`DataError` naming ``where``."""
    if hint is type(None):
        if value is None:
            return None
        raise DataError(f"{where}: expected null, got {value!r}")
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for option in args:
            try:
                return check_type(value, option, where)
            except DataError:
                pass
        raise DataError(f"{where}: {value!r} is not one of {' | '.join(a.__name__ for a in args)}")
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise DataError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise DataError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        raise DataError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def build_dataclass(cls, values: dict, where: str):
    """``cls(**values)`` with every value checked against the field's type; unknown keys, values of the wrong type
    and values the class rejects are a :class:`DataError` naming the key."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise DataError(f"{where}: unknown key(s) {unknown}; known: {sorted(hints)}")
    checked = {k: check_type(v, hints[k], f"{where}: {k}") for k, v in values.items()}
    try:
        return cls(**checked)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None


def build_configs(preset: str, config_file: str | None, overrides: list[str]) -> tuple[ModelConfig, TrainConfig]:
    """Precedence: preset < YAML file sections ``model:``/``train:`` < ``--set`` overrides."""
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    sections: dict[str, dict] = {"model": {}, "train": {}}
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise DataError(f"{path}: config file not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        for key in loaded:
            if key not in sections:
                raise DataError(f"{path}: unknown section {key!r} (expected model, train)")
            sections[key].update(loaded[key] or {})
    for key, values in parse_overrides(overrides).items():
        sections[key].update(values)
    model = build_dataclass(ModelConfig, {**PRESETS[preset], **sections["model"]}, "model config")
    train = build_dataclass(TrainConfig, sections["train"], "train config")
    return model, train

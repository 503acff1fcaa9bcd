"""Turning a YAML file, a preset and ``key=value`` overrides into ``ModelConfig`` and ``TrainConfig`` (and the
pretraining's ``key=value`` settings into ``PretrainConfig``), checked by the workflow's config schema."""

from __future__ import annotations

import typing
from pathlib import Path

import yaml

from rpc.engine.train import TrainConfig
from rpc.models.rpc import PRESETS, ModelConfig
from rpc.utils.config_schema import check_section
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


def build(cls, values: dict, section: str, where: str):
    """``cls(**values)`` with the values typed and checked by the config schema's ``section`` (the workflow checks
    its config with the same schema: rpc/resources/schemas/config.schema.yaml); unknown keys, values of the wrong
    type and values the class rejects are a :class:`DataError` naming the key."""
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}  # presets hold tuples
    checked = check_section(values, section, where)
    floats = {name for name, hint in typing.get_type_hints(cls).items() if hint is float}
    checked = {k: float(v) if k in floats and type(v) is int else v for k, v in checked.items()}  # JSON: 1 is a number
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
    model = build(ModelConfig, {**PRESETS[preset], **sections["model"]}, "model", "model config")
    train = build(TrainConfig, sections["train"], "train", "train config")
    return model, train

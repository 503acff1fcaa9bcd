"""Turning a YAML file, a preset and ``key=value`` overrides into ``ModelConfig`` and ``TrainConfig``."""

from __future__ import annotations

import dataclasses
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
            raise ValueError(f"override {item!r} must look like model.<key>=<value> or train.<key>=<value>")
        out[section][name] = yaml.safe_load(value)
    return out


def parse_key_values(items: list[str]) -> dict:
    """``["epochs=8", "lr=0.1"]`` -> ``{"epochs": 8, "lr": 0.1}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"setting {item!r} must look like <key>=<value>")
        out[key] = yaml.safe_load(value)
    return out


def build_dataclass(cls, values: dict, where: str):
    """``cls(**values)`` with unknown keys named in the error."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


def build_configs(preset: str, config_file: str | None, overrides: list[str]) -> tuple[ModelConfig, TrainConfig]:
    """Precedence: preset < YAML file sections ``model:``/``train:`` < ``--set`` overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
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

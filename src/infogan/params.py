"""Reading params.yaml: an experiment's effective config is ``defaults <- experiments[name]``
merged key by key, then ``-S key=value`` overrides, then validated (``infogan.config``)."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config import SECTIONS, ConfigError, InfoGANConfig, ParamsFile, PipelineConfig


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _format_validation_error(err: ValidationError, prefix: str) -> str:
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"] if p not in ("function-after",))
        key = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(top level)"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see params.yaml for the allowed keys)"
        elif item["type"] == "literal_error":
            msg = f"{msg} (got {item.get('input')!r})"
        elif "input" in item and item["type"] not in ("missing",):
            msg = f"{msg} (got {item['input']!r})"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


class _Loader(yaml.SafeLoader):
    """YAML as params files mean it: a repeated key is an error, and 1e-3 is a number."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one mapping")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` -> (['train', 'epochs'], 3); values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        return path, load_yaml(raw)
    except (yaml.YAMLError, ConfigError) as exc:
        raise ConfigError(f"override {text!r}: the value of {key.strip()} is not valid YAML "
                          f"({str(exc).splitlines()[0]})") from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``raw`` with ``key.path=value`` overrides set (values parsed as YAML, as ``dvc exp run -S`` does)."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section of params.yaml")
        node[path[-1]] = value
    return raw


def read_params(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def experiment_names(path: str | Path = "params.yaml", enabled_only: bool = False) -> list[str]:
    raw = read_params(path)
    exps = raw.get("experiments") or {}
    return [n for n, o in exps.items() if not enabled_only or (o or {}).get("enabled", True)]


def config_from_dict(raw: dict[str, Any], experiment: str | None = None,
                     overrides: list[str] | None = None, source: str = "params") -> InfoGANConfig:
    """Validate a params mapping; ``overrides`` apply to the experiment's effective config."""
    try:
        params = ParamsFile.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source} is invalid:\n{_format_validation_error(err, '')}") from None
    effective = {s: getattr(params, s) for s in SECTIONS}
    prefix = ""
    if experiment is not None:
        try:  # the defaults must be valid on their own, even where every experiment overrides a key
            InfoGANConfig.model_validate(effective)
        except ValidationError as err:
            raise ConfigError(f"{source} is invalid:\ndefaults (top-level sections):\n"
                              f"{_format_validation_error(err, '')}") from None
        if experiment not in params.experiments:
            raise ConfigError(f"unknown experiment {experiment!r} in {source}; "
                              f"defined: {sorted(params.experiments) or 'none'}")
        override = dict(params.experiments[experiment] or {})
        override.pop("enabled", None)
        effective = _deep_merge(effective, override)
        prefix = f"experiments.{experiment} (merged with defaults): "
    effective = apply_overrides(effective, overrides or [])
    try:
        return InfoGANConfig.model_validate(effective)
    except ValidationError as err:
        raise ConfigError(f"{source} is invalid:\n{prefix}\n{_format_validation_error(err, '')}"
                          if prefix else f"{source} is invalid:\n{_format_validation_error(err, '')}") from None


def load_pipeline_config(path: str | Path = "params.yaml") -> PipelineConfig:
    try:
        return ParamsFile.model_validate(read_params(path)).pipeline
    except ValidationError as err:
        raise ConfigError(f"{path} is invalid:\n{_format_validation_error(err, '')}") from None


def load_config(path: str | Path = "params.yaml", experiment: str | None = None,
                overrides: list[str] | None = None) -> InfoGANConfig:
    return config_from_dict(read_params(path), experiment, overrides, source=str(path))

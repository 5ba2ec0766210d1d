"""docs/configuration.md, written from the schema's field descriptions (``infogan.config``),
the registered objective terms and the attribute sets: ``python -m infogan config-docs``."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .attributes import attribute_sets
from .config import SECTIONS, InfoGANConfig, PipelineConfig
from .io import atomic_write_text
from .objective import registered_terms

DOC = Path("docs/configuration.md")


def _default(field) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{value!r}`".replace("None", "null").replace("True", "true").replace("False", "false").replace("'", '"')


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, f"{prefix}{name}.")
            continue
        rows.append(f"| `{prefix}{name}` | {_default(field)} | {field.description or ''} |")
    return rows


def render() -> str:
    out = ["# Configuration", "",
           "Every key of `params.yaml`, with its default and meaning. Top-level sections are the defaults;",
           "`experiments.<name>` overrides them key by key. Unknown keys are errors.",
           "This file is written by `python -m infogan config-docs` from the schema (`src/infogan/config.py`);",
           "a test fails when it is stale.", ""]
    for section in SECTIONS:
        out += [f"## `{section}`", "", "| key | default | meaning |", "| --- | --- | --- |"]
        out += _rows(InfoGANConfig.model_fields[section].annotation, f"{section}.") + [""]
    out += ["## `pipeline` (cross-experiment stages)", "", "| key | default | meaning |", "| --- | --- | --- |"]
    out += _rows(PipelineConfig, "pipeline.") + [""]
    out += ["## Objective terms (`train.objective.<term>`)", "",
            "A term joins D's step (`D`, which also trains Q through the shared body) or G and Q's step (`G`).",
            "It is off while its weight is 0, before its `from_epoch`, and when its code's lambda is 0.", ""]
    for name, cls in registered_terms().items():
        doc = textwrap.wrap(" ".join((cls.__doc__ or cls.__module__).split()), 100)
        out += [f"### `{name}` ({cls.phase} phase, {cls.code_kind} code; `{cls.__module__}`)", "", *doc, "",
                "| key | default | meaning |", "| --- | --- | --- |"]
        out += _rows(cls.Config, f"train.objective.{name}.") + [""]
    out += ["## Attribute sets (`evaluate.attributes`)", ""]
    for name, aset in attribute_sets().items():
        text = f"- `{name}` (`{aset.measure.__module__}`): {' '.join((aset.measure.__doc__ or '').split())}"
        out += textwrap.wrap(text, 100, subsequent_indent="  ")
    return "\n".join(out) + "\n"


def write(path: str | Path = DOC, check: bool = False) -> bool:
    """Write the doc; with ``check``, only report whether the file on disk is current."""
    path, text = Path(path), render()
    current = path.is_file() and path.read_text() == text
    if not check and not current:
        atomic_write_text(path, text)
    return current

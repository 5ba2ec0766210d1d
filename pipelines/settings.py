"""The flows' parameters, validated before any work starts.

Parameter overrides (``train.seed=1``, ``experiments.mnist.train.epochs=3``,
``pipeline.select.metric=nmi``) are params.yaml paths, exactly what ``dvc exp run -S`` takes.
They are checked with infogan's own pydantic models (``infogan.config``: the whole file,
then every experiment's merged config), so a typo or an out-of-range value fails with the
same message ``python -m infogan validate`` gives, and nothing has run or been written.
Sweep axes (seeds, lambdas) become such overrides and are checked the same way, so their
ranges are TrainConfig's.
"""
from __future__ import annotations

import io
import itertools
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from infogan.config import SECTIONS, ConfigError, ParamsFile
from infogan.params import apply_overrides, config_from_dict, parse_override, read_params

PARAMS_FILE = "params.yaml"
DVC_FILE = "dvc.yaml"


# ---- overrides ---------------------------------------------------------------------------------

def validate_params(raw: dict[str, Any], experiments: list[str] | None = None, source: str = PARAMS_FILE) -> ParamsFile:
    """The whole file and each named experiment's merged config, through infogan's models."""
    config_from_dict(raw, None, source=source)  # the file itself (ParamsFile) and the defaults
    params = ParamsFile.model_validate(raw)
    for name in experiments if experiments is not None else list(params.experiments):
        config_from_dict(raw, name, source=source)
    return params


def shadowed(raw: dict[str, Any], overrides: list[str], experiments: list[str]) -> list[str]:
    """Warnings for top-level overrides that an experiment's own entry hides (it wins when merged)."""
    notes = []
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] not in SECTIONS:
            continue
        for name in experiments:
            node: Any = (raw.get("experiments") or {}).get(name) or {}
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                notes.append(f"{text} does not reach experiment {name!r}: experiments.{name}.{'.'.join(path)} "
                             f"= {node!r} overrides it (set experiments.{name}.{'.'.join(path)} instead)")
    return notes


def write_overrides(params_path: str | Path, overrides: list[str]) -> list[str]:
    """Set ``overrides`` in params.yaml, keeping its comments and layout (ruamel round trip, as
    ``dvc exp run -S`` does), written to a temp file and renamed over it (never half written).
    Returns the overrides that changed a value; the file is untouched when none did."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    params_path = Path(params_path)
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    rt.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    data = rt.load(params_path.read_text())
    changed = []
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            if node.get(part) is None:
                node[part] = CommentedMap()
            node = node[part]
        if path[-1] in node and node[path[-1]] == value:
            continue
        node[path[-1]] = value
        changed.append(text)
    if not changed:
        return []
    buffer = io.StringIO()
    rt.dump(data, buffer)
    fd, tmp = tempfile.mkstemp(prefix=f".{params_path.name}.", suffix=".tmp", dir=params_path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, params_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return changed


# ---- stages --------------------------------------------------------------------------------------

def stage_plan(root: Path, experiments: list[str]) -> list[str]:
    """dvc.yaml's stages in run order: each ``foreach: ${experiments}`` stage chain per experiment
    (prepare@e, train@e, ...), then the cross-experiment stages (select, package)."""
    stages = (yaml.safe_load((root / DVC_FILE).read_text()) or {}).get("stages") or {}
    per_experiment, shared = [], []
    for name, spec in stages.items():
        if isinstance(spec, dict) and "foreach" in spec:
            if str(spec["foreach"]).replace(" ", "") != "${experiments}":
                raise ConfigError(f"{DVC_FILE}: stage {name!r} loops over {spec['foreach']!r}; the pipelines "
                                  f"expect foreach: ${{experiments}}")
            per_experiment.append(name)
        else:
            shared.append(name)
    return [f"{stage}@{exp}" for exp in experiments for stage in per_experiment] + shared


# ---- requests ------------------------------------------------------------------------------------

class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Path(".")

    @model_validator(mode="after")
    def _is_project(self):
        for name in (DVC_FILE, PARAMS_FILE):
            if not (self.root / name).is_file():
                raise ValueError(f"{self.root.resolve()} is not the project folder: no {name} there (pass --root)")
        return self

    @property
    def params_path(self) -> Path:
        return self.root / PARAMS_FILE

    def raw_params(self) -> dict[str, Any]:
        return read_params(self.params_path)


Retries = Annotated[int, Field(ge=0, le=10)]
Delay = Annotated[float, Field(ge=0, le=3600)]


class TrainRequest(_Request):
    """``train_pipeline``: which experiments, which overrides, how to retry."""

    experiments: list[str] | None = None      # None: every experiment in params.yaml (as `dvc repro`)
    overrides: list[str] = Field(default_factory=list)
    force: bool = False                       # `dvc repro -s -f`: rerun even unchanged stages
    retries: Retries = 2
    retry_delay_s: Delay = 10.0
    # `train@<e>` stages as runs of this work-pool deployment ("<flow>/<deployment>"), in
    # train_root (the project folder as the worker sees it; default: root).
    train_deployment: Annotated[str, Field(pattern=r"^[^/\s]+/[^/\s]+$")] | None = None
    train_root: str | None = None
    train_start_timeout_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = 600.0

    @model_validator(mode="after")
    def _params_valid(self):
        raw = apply_overrides(self.raw_params(), self.overrides)
        params = validate_params(raw, source=f"{PARAMS_FILE} with overrides {self.overrides}" if self.overrides
                                 else PARAMS_FILE)
        unknown = [e for e in self.experiments or [] if e not in params.experiments]
        if unknown:
            raise ConfigError(f"unknown experiment(s) {unknown}; defined in {PARAMS_FILE}: {sorted(params.experiments)}")
        if not self.selected(raw):
            raise ConfigError(f"{PARAMS_FILE} defines no experiments")
        stage_plan(self.root, self.selected(raw))
        return self

    def selected(self, raw: dict[str, Any] | None = None) -> list[str]:
        raw = raw if raw is not None else apply_overrides(self.raw_params(), self.overrides)
        return list(self.experiments) if self.experiments else list(raw.get("experiments") or {})

    def plan(self) -> list[str]:
        return stage_plan(self.root, self.selected())


class StageRequest(_Request):
    """``train_stage`` (the work-pool deployment's flow): one stage of dvc.yaml."""

    stage: str
    force: bool = False
    retries: Retries = 2
    retry_delay_s: Delay = 10.0

    @model_validator(mode="after")
    def _stage_known(self):
        raw = self.raw_params()
        validate_params(raw)
        plan = stage_plan(self.root, list(raw.get("experiments") or {}))
        if self.stage not in plan:
            raise ConfigError(f"unknown stage {self.stage!r}; {DVC_FILE} with {PARAMS_FILE} has: {', '.join(plan)}")
        return self


SweepValue = Annotated[float, Field(allow_inf_nan=False)]


class SweepRequest(_Request):
    """``sweep``: the grid (each point one DVC experiment), fixed overrides, concurrency."""

    seeds: list[int] = Field(default_factory=list)
    lambda_cat: list[SweepValue] = Field(default_factory=list)
    lambda_cont: list[SweepValue] = Field(default_factory=list)
    overrides: list[str] = Field(default_factory=list)    # the same for every point
    jobs: Annotated[int, Field(ge=1, le=4)] = 1           # experiments at a time
    prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")] | None = None
    retries: Retries = 1
    retry_delay_s: Delay = 10.0

    @model_validator(mode="after")
    def _grid_valid(self):
        if not (self.seeds or self.lambda_cat or self.lambda_cont):
            raise ValueError("empty grid: give seeds and/or lambda_cat / lambda_cont values")
        for axis in ("seeds", "lambda_cat", "lambda_cont"):
            values = getattr(self, axis)
            if len(set(values)) != len(values):
                raise ValueError(f"{axis} repeats a value: {values}")
        raw = self.raw_params()
        for _, overrides in self.points("check"):
            validate_params(apply_overrides(raw, overrides), source=f"{PARAMS_FILE} with {overrides}")
        missing = [key for key in ("user.name", "user.email")
                   if subprocess.run(["git", "config", key], cwd=self.root, capture_output=True).returncode != 0]
        if missing:
            raise ValueError(f"`dvc exp run` commits each experiment and needs git {' and '.join(missing)}: "
                             f"git config {missing[0]} ...")
        return self

    def points(self, prefix: str) -> list[tuple[str, list[str]]]:
        """(experiment name, overrides) per grid point, in a stable order."""
        axes = [("s", "train.seed", self.seeds), ("lc", "train.lambda_cat", self.lambda_cat),
                ("lo", "train.lambda_cont", self.lambda_cont)]
        axes = [a for a in axes if a[2]]
        out = []
        for combo in itertools.product(*(a[2] for a in axes)):
            parts, overrides = [], list(self.overrides)
            for (short, key, _), value in zip(axes, combo):
                parts.append(short + re.sub(r"[^0-9a-z]", "p", f"{value:g}" if isinstance(value, float) else str(value)))
                overrides.append(f"{key}={value}")
            out.append((f"{prefix}-{'-'.join(parts)}", overrides))
        return out


class PromoteRequest(_Request):
    """``promote``: how much better the new model must be; ``force`` skips the comparison (the
    pipeline must still be complete)."""

    min_improvement: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    force: bool = False

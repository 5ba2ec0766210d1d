"""Which generator the service uses: ``models/promoted.json``, moved only to a better model.

``package`` saves a new store version on every run (it becomes ``infogan-generator:latest``),
so "latest" cannot mean "approved". The promote flow writes a pointer file instead::

    {"tag": "infogan-generator:<version>", "metric": "accuracy", "mode": "max", "value": 0.93,
     "experiment": "mnist", "previous": {"tag": ..., "value": ...} | null, "decided_at": "<UTC ISO>"}

and the service resolves its model as INFOGAN_MODEL_TAG > models/promoted.json > :latest.
The candidate's figures come from models/package.json and models/selected/selection.json
(checked against each other); the promoted model's from its metadata in the BentoML store
(``bentoml.models.get(tag).info.metadata``), looked up in a child process so it reads the same
store (BENTOML_HOME) the package stage wrote to, whatever this process imported before.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from .dvcrun import environ

POINTER = "models/promoted.json"
PACKAGE_RECORD = "models/package.json"
SELECTION = "models/selected/selection.json"


class PromotionError(RuntimeError):
    """The candidate cannot be judged (missing, stale or inconsistent records)."""


@dataclass(frozen=True)
class Candidate:
    tag: str
    metric: str
    mode: str
    value: float
    experiment: str | None
    checkpoint_sha256: str | None


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    mode: str
    new_tag: str
    new_value: float
    current_tag: str | None
    current_value: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise PromotionError(f"{path} not found: {what}")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise PromotionError(f"{path} is not valid JSON ({exc})") from None


def candidate(root: Path) -> Candidate:
    """The newly packaged model, with package.json and selection.json agreeing on what it is."""
    record = read_json(root / PACKAGE_RECORD, "run the pipeline (train_pipeline / `dvc repro`) first")
    selection = read_json(root / SELECTION, "run the pipeline (train_pipeline / `dvc repro`) first")
    meta, winner = record.get("metadata") or {}, selection.get("winner") or {}
    if meta.get("checkpoint_sha256") != winner.get("checkpoint_sha256") or \
            meta.get("selection_metric") != selection.get("metric"):
        raise PromotionError(f"{PACKAGE_RECORD} does not describe the generator in {SELECTION} (stale package: "
                             f"rerun the package stage)")
    value = meta.get("selection_value")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise PromotionError(f"{PACKAGE_RECORD}: selection_value {value!r} is not a number")
    return Candidate(tag=record["tag"], metric=selection["metric"], mode=selection.get("mode", "max"),
                     value=float(value), experiment=winner.get("experiment"),
                     checkpoint_sha256=winner.get("checkpoint_sha256"))


def read_pointer(root: Path) -> dict | None:
    path = root / POINTER
    if not path.exists():
        return None
    pointer = read_json(path, "")
    if not isinstance(pointer, dict) or not isinstance(pointer.get("tag"), str):
        raise PromotionError(f"{path} names no tag; fix or delete it (the service cannot start from it either)")
    return pointer


_STORE_LOOKUP = """
import json, sys
import bentoml
out = {}
for tag in sys.argv[1:]:
    try:
        info = bentoml.models.get(tag).info
        out[tag] = {"tag": str(info.tag), "metadata": dict(info.metadata), "labels": dict(info.labels)}
    except bentoml.exceptions.NotFound:
        out[tag] = None
print("STORE-JSON " + json.dumps(out, default=str))
"""


def store_models(root: Path, *tags: str) -> dict[str, dict | None]:
    """Each tag's store entry (tag, metadata, labels) or None where the store has no such model."""
    proc = subprocess.run([sys.executable, "-c", _STORE_LOOKUP, *tags], cwd=root, env=environ(root),
                          capture_output=True, text=True, timeout=300)
    for line in proc.stdout.splitlines():
        if line.startswith("STORE-JSON "):
            return json.loads(line[len("STORE-JSON "):])
    raise PromotionError(f"BentoML store lookup failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def value_on(metadata: dict, metric: str) -> float | None:
    """A stored model's figure on ``metric``: its selection value if it was selected on that
    metric, else the headline figure of that name in its metadata (None if it has neither)."""
    if metadata.get("selection_metric") == metric:
        value = metadata.get("selection_value")
    else:
        value = metadata.get(metric.replace(".", "_"), metadata.get(metric))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def decide(new: Candidate, current_tag: str | None, current_meta: dict | None, min_improvement: float = 0.0,
           force: bool = False) -> Decision:
    base = dict(metric=new.metric, mode=new.mode, new_tag=new.tag, new_value=new.value, current_tag=current_tag)
    if current_tag is None:
        return Decision(True, "no model promoted yet", current_value=None, **base)
    if current_tag == new.tag:
        cur = value_on(current_meta or {}, new.metric)
        return Decision(False, "already promoted", current_value=cur, **base)
    if current_meta is None:
        return Decision(True, f"the promoted model {current_tag} is no longer in the BentoML store",
                        current_value=None, **base)
    cur = value_on(current_meta, new.metric)
    if force:
        return Decision(True, "forced", current_value=cur, **base)
    if cur is None:
        return Decision(False, f"the promoted model has no {new.metric!r} figure to compare with (use force to "
                               f"promote anyway)", current_value=None, **base)
    gain = new.value - cur if new.mode == "max" else cur - new.value
    if gain > min_improvement:
        return Decision(True, f"better on {new.metric} by {gain:.6g} (> {min_improvement:g})", current_value=cur,
                        **base)
    word = "worse" if gain < 0 else "not better"
    return Decision(False, f"{word} on {new.metric}: {new.value:.6g} vs {cur:.6g} ({new.mode}; must gain more "
                           f"than {min_improvement:g})", current_value=cur, **base)


def write_pointer(root: Path, new: Candidate, decision: Decision) -> dict:
    """models/promoted.json, written to a temp file and renamed over (never half written)."""
    pointer = {"tag": new.tag, "metric": new.metric, "mode": new.mode, "value": new.value,
               "experiment": new.experiment, "checkpoint_sha256": new.checkpoint_sha256,
               "previous": ({"tag": decision.current_tag, "value": decision.current_value}
                            if decision.current_tag else None),
               "reason": decision.reason,
               "decided_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = root / POINTER
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(pointer, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return pointer

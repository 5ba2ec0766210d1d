"""The ``select`` stage: rank the trained generators on one metric and hand the winner on.

It reads each experiment's metrics JSON (which names the checkpoint it scored and its
SHA-256), checks the checkpoint on disk is still that file, and writes the winning
generator alone (constructor args, latent spec, weights) plus a selection record. The
``package`` stage and anything else downstream need only this folder.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .config import ConfigError, SelectConfig
from .best_alias import mark_best
from .checkpoint import generator_blob, load_checkpoint
from .io import atomic_torch_save, atomic_write_json, file_sha256

GENERATOR_FILE = "generator.pt"
SELECTION_FILE = "selection.json"


def metric_value(metrics: dict, dotted: str):
    node = metrics
    for part in dotted.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def rank(candidates: dict[str, dict], sc: SelectConfig) -> list[dict]:
    """Candidates (experiment -> metrics JSON) ordered best first on ``sc.metric``."""
    rows = []
    for experiment, metrics in candidates.items():
        value = metric_value(metrics, sc.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        rows.append({"experiment": experiment, "value": float(value), "checkpoint": metrics["checkpoint"],
                     "checkpoint_sha256": metrics["checkpoint_sha256"], "epoch": metrics.get("epoch")})
    rows.sort(key=lambda r: r["value"], reverse=sc.mode == "max")
    return rows


def select(sc: SelectConfig, metrics_files: dict[str, Path], out_dir: str | Path) -> dict:
    """``metrics_files``: experiment -> its evaluation metrics JSON."""
    names = sc.experiments or sorted(metrics_files)
    missing = [n for n in names if not Path(metrics_files.get(n, "")).is_file()]
    if missing:
        raise FileNotFoundError(f"no metrics for experiment(s) {missing}: run `python -m infogan evaluate -e "
                                f"{missing[0]}` (or `dvc repro`) first")
    candidates = {n: json.loads(Path(metrics_files[n]).read_text()) for n in names}
    ranking = rank(candidates, sc)
    if not ranking:
        raise ConfigError(f"pipeline.select.metric {sc.metric!r} is not a number in the metrics of "
                          f"{names}; pick a key of metrics/<experiment>.json (dotted for nested keys)")
    best = ranking[0]
    checkpoint = Path(best["checkpoint"])
    if not checkpoint.is_file() or file_sha256(checkpoint) != best["checkpoint_sha256"]:
        raise ConfigError(f"{checkpoint} is not the checkpoint its metrics scored (missing or changed since); "
                          f"re-run `python -m infogan evaluate -e {best['experiment']}`")
    out_dir = Path(out_dir)
    blob = generator_blob(load_checkpoint(checkpoint))
    blob["experiment"] = best["experiment"]
    atomic_torch_save(blob, out_dir / GENERATOR_FILE)
    record = {"metric": sc.metric, "mode": sc.mode, "winner": best, "ranking": ranking,
              "metrics": candidates[best["experiment"]], "generator": str(out_dir / GENERATOR_FILE),
              "generator_sha256": file_sha256(out_dir / GENERATOR_FILE)}
    atomic_write_json(out_dir / SELECTION_FILE, record)
    # W&B: move the model artifact's `best` alias to the winner (no-op when untracked; never raises).
    mark_best(checkpoint.parent, metric=sc.metric, value=best["value"], experiment=best["experiment"])
    return record

"""The ``best`` alias: point the model artifact collection's ``best`` at the selected run."""
from __future__ import annotations

import json
from pathlib import Path

from .config import WandbConfig
from .tracking import RUN_RECORD, RunLogger, _say, resolve_mode

BEST_ALIAS = "best"


def mark_best(run_dir_or_id: str | Path, metric: str | None = None, value: float | None = None,
              experiment: str | None = None, wc: WandbConfig | None = None) -> dict | None:
    """Point the ``best`` alias of the model artifact collection at this run's checkpoint.

    ``run_dir_or_id``: a training run folder (holding ``wandb_run.json`` and ``checkpoint.pt``)
    or a W&B run id (online only: its last logged model artifact gets the alias).
    Online, the version the experiment's alias names gets ``best`` through the W&B API (after
    checking it holds this checkpoint). Offline (or if that fails), a short ``select`` job run
    logs the same checkpoint file again with the alias: W&B checksums artifact contents, so
    this adds ``best`` to the existing version instead of making a new one; it takes effect at
    ``wandb sync``, and W&B also moves ``latest`` onto that version (log_artifact always adds
    it). An alias names one version of a collection, so ``best`` leaves the previous winner.
    Returns what was done, or None when tracking is off or the run was never tracked. Never
    raises.
    """
    try:
        return _mark_best(run_dir_or_id, metric, value, experiment, wc)
    except Exception as exc:  # noqa: BLE001 - selection must not fail because of tracking
        _say(f"could not mark the best model in W&B ({exc!r})")
        return None


def _mark_best(run_dir_or_id, metric, value, experiment, wc) -> dict | None:
    path = Path(run_dir_or_id)
    record = None
    if (path / RUN_RECORD).is_file():
        record = json.loads((path / RUN_RECORD).read_text())
    wc = wc or WandbConfig(project=(record or {}).get("project") or WandbConfig().project,
                           entity=(record or {}).get("entity"),
                           model_artifact=(record or {}).get("model_artifact") or WandbConfig().model_artifact)
    mode, why = resolve_mode(wc)
    if mode == "disabled":
        return None
    if record is None:
        if path.exists():
            _say(f"{path} has no {RUN_RECORD} (trained without W&B tracking); no `best` alias set")
            return None
        return _mark_best_by_id(str(run_dir_or_id), wc, mode)
    if not record.get("model_artifact") or not (path / "checkpoint.pt").is_file():
        _say(f"run {record.get('id')} logged no model artifact; no `best` alias set")
        return None
    experiment = experiment or record.get("group") or path.name
    if mode == "online":
        try:
            return _mark_best_online(path / "checkpoint.pt", record, experiment, wc)
        except Exception as exc:  # noqa: BLE001 - fall back to re-logging the checkpoint
            _say(f"could not move `{BEST_ALIAS}` through the W&B API ({exc!r}); re-logging the checkpoint instead")
    logger = RunLogger(path, None, experiment, job_type="select", wc=wc)
    with logger.start():
        if logger.run is None:
            return None
        logger.run.config.update({"select": {"metric": metric, "value": value, "train_run_id": record["id"]}},
                                 allow_val_change=True)
        art = logger._wandb.Artifact(record["model_artifact"], type="model")
        art.add_file(str(path / "checkpoint.pt"), name="checkpoint.pt")
        logger.run.log_artifact(art, aliases=[BEST_ALIAS])
        if metric is not None and value is not None:
            logger.run.summary.update({"select/metric": metric, "select/value": value})
        done = {"mode": logger.mode, "select_run_id": logger.run.id, "train_run_id": record["id"],
                "artifact": f"{record['model_artifact']}:{BEST_ALIAS}", "experiment": experiment}
    _say(f"`{BEST_ALIAS}` -> {record['model_artifact']} of {experiment} (train run {record['id']}; {logger.mode}"
         + (", applied when synced" if logger.mode == "offline" else "") + ")")
    return done


def _md5_b64(path: Path) -> str:
    import base64
    import hashlib

    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode()


def _mark_best_online(checkpoint: Path, record: dict, experiment: str, wc: WandbConfig) -> dict:
    """Add `best` to the version the experiment's alias names, if it holds this very checkpoint
    (moving an alias through the API leaves `latest` where it is)."""
    import wandb

    api = wandb.Api(timeout=int(wc.init_timeout_s))
    path = "/".join(p for p in (wc.entity, wc.project, f"{record['model_artifact']}:{experiment}") if p)
    art = api.artifact(path, type="model")
    entry = art.manifest.entries.get("checkpoint.pt")
    if entry is None or entry.digest != _md5_b64(checkpoint):
        raise ValueError(f"{path} does not hold {checkpoint} (not uploaded yet, or retrained since)")
    if BEST_ALIAS not in art.aliases:
        art.aliases.append(BEST_ALIAS)
        art.save()
    _say(f"`{BEST_ALIAS}` -> {art.name} ({experiment}, train run {record['id']})")
    return {"mode": "online", "train_run_id": record["id"], "artifact": art.name, "experiment": experiment}


def _mark_best_by_id(run_id: str, wc: WandbConfig, mode: str) -> dict | None:
    if mode != "online":
        _say(f"marking `{BEST_ALIAS}` by run id needs online mode (got {mode}); pass the run folder instead")
        return None
    import wandb

    api = wandb.Api(timeout=wc.init_timeout_s)
    path = "/".join(p for p in (wc.entity, wc.project, run_id) if p)
    models = [a for a in api.run(path).logged_artifacts() if a.type == "model"]
    if not models:
        _say(f"run {path} logged no model artifact; no `{BEST_ALIAS}` alias set")
        return None
    art = models[-1]
    if BEST_ALIAS not in art.aliases:
        art.aliases.append(BEST_ALIAS)
        art.save()
    return {"mode": mode, "train_run_id": run_id, "artifact": f"{art.name}", "experiment": None}

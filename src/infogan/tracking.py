"""Experiment tracking: the one writer of the logs DVC plots and the one sender to W&B.

``RunLogger`` writes a training run's ``logs/steps.tsv`` (per logged step: losses, L_I against
H(c), each objective term) and ``logs/epochs.json`` (per epoch) and sends the very same numbers
to Weights & Biases, so the DVC plots and the W&B charts cannot disagree. It also sends what
evaluation and traversal produce, and the checkpoint as a ``model`` artifact.

- mode: ``infogan.tracking_mode``. Offline runs land in ``$WANDB_DIR/wandb/offline-run-*`` and
  upload with ``wandb sync``; an online run that cannot start falls back to offline: tracking
  never fails a stage. ``disabled`` writes only the DVC logs and never imports wandb.
- one run per job (train, evaluate, traverse, select), grouped by experiment, tagged with the
  git revision and DVC_EXP_NAME. A resumed training continues its W&B run (its id is kept in
  ``runs/<experiment>/wandb_run.json``).
"""
from __future__ import annotations

import csv
import json
import math
import os
import secrets
import string
import sys
import time
from pathlib import Path
from typing import Any

from .config import InfoGANConfig, WandbConfig
from .io import atomic_path, atomic_write_json, git_revision
from .tracking_mode import api_key_configured, resolve_mode  # noqa: F401 - part of this API

# The first columns of logs/steps.tsv; the objective's term names follow them.
STEP_COLUMNS = ["step", "epoch", "images", "loss_d", "loss_g", "info_cat_nll", "info_cont_nll",
                "mi_cat", "h_cat", "mi_cont", "h_cont"]
STEPS_FILE = Path("logs") / "steps.tsv"
EPOCHS_FILE = Path("logs") / "epochs.json"
RUN_RECORD = "wandb_run.json"  # the training run's W&B id (resume continues it), mode, folder, model artifact


def _say(message: str) -> None:
    print(f"[tracking] {message}", file=sys.stderr, flush=True)


def new_run_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def run_context(experiment: str, job_type: str) -> dict[str, Any]:
    """Provenance every W&B run carries: git revision, DVC experiment (set by `dvc exp run`)."""
    return {"experiment": experiment, "job_type": job_type, "git_revision": git_revision(),
            "dvc_exp_name": os.environ.get("DVC_EXP_NAME") or None,
            "dvc_exp_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV") or None}


def _tags(context: dict[str, Any], extra: list[str]) -> list[str]:
    tags = [f"job:{context['job_type']}"]
    rev = context["git_revision"]
    if rev and rev != "unknown":
        tags.append(f"git:{rev[:12]}" + ("-dirty" if rev.endswith("-dirty") else ""))
    if context["dvc_exp_name"]:
        tags.append(f"dvc-exp:{context['dvc_exp_name']}")
    return [t[:64] for t in tags + list(extra)]


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(value, f"{prefix}/{key}", out)
    elif isinstance(node, (list, tuple)) and node and all(isinstance(v, dict) for v in node):
        for i, value in enumerate(node):
            _flatten(value, f"{prefix}/{i}", out)
    elif isinstance(node, bool) or node is None:
        return out
    elif isinstance(node, (int, float)):
        if not (isinstance(node, float) and math.isnan(node)):
            out[prefix] = node
    elif isinstance(node, str):
        out[prefix] = node
    return out


class RunLogger:
    """One job's tracking. For ``job_type="train"`` it also owns the run folder's DVC logs.

    Use ``start()`` (or ``with``), the ``log_*`` methods, then ``finish()``. Every W&B call is
    guarded: a tracking failure is reported once and switches W&B off for the rest of the job,
    it never stops training or evaluation.
    """

    def __init__(self, run_dir: str | Path, cfg: InfoGANConfig | None, experiment: str | None = None,
                 job_type: str = "train", wc: WandbConfig | None = None):
        """``cfg``: the validated config (sent as the W&B run config; its ``tracking.wandb``
        applies unless ``wc`` is given). Jobs without one (select) pass ``cfg=None, wc=...``."""
        self.run_dir, self.cfg = Path(run_dir), cfg
        self.wc = wc or (cfg.tracking.wandb if cfg is not None else WandbConfig())
        self.experiment = experiment or self.run_dir.name
        self.job_type = job_type
        self.run = None
        self.mode = "disabled"
        self.init_seconds = 0.0
        self._wandb = None
        self.columns = list(STEP_COLUMNS)

    # -------------------------------------------------------------- files (train only)
    @property
    def steps_path(self) -> Path:
        return self.run_dir / STEPS_FILE

    @property
    def epochs_path(self) -> Path:
        return self.run_dir / EPOCHS_FILE

    @property
    def record_path(self) -> Path:
        return self.run_dir / RUN_RECORD

    def _reset_files(self) -> None:
        self.epochs_path.unlink(missing_ok=True)
        with atomic_path(self.steps_path) as tmp, open(tmp, "w", newline="") as fh:
            csv.writer(fh, delimiter="\t").writerow(self.columns)

    def _prune_files(self, epoch: int) -> None:
        """After a resume, drop rows of the epoch that was interrupted (and any torn last line)."""
        if not self.steps_path.exists():
            self._reset_files()
            return
        with open(self.steps_path, newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
        kept = [self.columns]
        for row in rows[1:] if rows and rows[0] == self.columns else []:
            try:
                if len(row) == len(self.columns) and int(row[1]) <= epoch:
                    kept.append(row)
            except ValueError:
                continue
        with atomic_path(self.steps_path) as tmp, open(tmp, "w", newline="") as fh:
            csv.writer(fh, delimiter="\t").writerows(kept)

    def read_record(self) -> dict | None:
        try:
            return json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return None

    # -------------------------------------------------------------- start / finish
    def start(self, resume: bool = False, epoch: int = 0, columns: list[str] | None = None,
              history: list[dict] | None = None) -> "RunLogger":
        """``resume``: a training that loaded its checkpoint (at ``epoch``): keep its logs up to
        that epoch and continue its W&B run. Otherwise a training starts its logs afresh.
        ``columns``: those of steps.tsv (default STEP_COLUMNS)."""
        self.columns = list(columns or STEP_COLUMNS)
        if self.job_type == "train":
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.steps_path.parent.mkdir(parents=True, exist_ok=True)
            if resume:
                self._prune_files(epoch)
                if history is not None:  # a kill after epochs.json but before the checkpoint: back to it
                    atomic_write_json(self.epochs_path, history)
            else:
                self._reset_files()
        self.mode, why = resolve_mode(self.wc)
        if self.mode == "disabled":
            if self.job_type == "train" and not resume:
                self.record_path.unlink(missing_ok=True)  # a later resume must not continue an older run
            return self
        record = self.read_record() if self.job_type == "train" and resume else None
        same_place = record and record.get("project") == self.wc.project and record.get("entity") == self.wc.entity
        run_id = record["id"] if same_place and record.get("id") else new_run_id()
        t0 = time.perf_counter()
        try:
            self._init(run_id, self.mode)
        except Exception as exc:  # noqa: BLE001 - no network, bad key, ...: never fail the job
            if self.mode != "online":
                self._give_up(f"could not start a W&B {self.mode} run ({exc!r})")
                return self
            _say(f"online W&B run failed to start ({exc!r}); falling back to offline")
            self.mode = "offline"
            self._wandb.teardown()  # the failed run still holds its id in wandb's service process
            try:
                self._init(run_id, "offline")
            except Exception as exc2:  # noqa: BLE001
                self._give_up(f"could not start an offline W&B run either ({exc2!r})")
                return self
        self.init_seconds = time.perf_counter() - t0
        where = self.run.url if self.mode == "online" else str(Path(self.run.dir).parent)
        _say(f"W&B {self.mode} run {self.run.id} ({self.job_type}, group {self.experiment}; {why}; "
             f"init {self.init_seconds:.1f} s): {where}")
        if self.job_type == "train":
            self._write_record({"id": self.run.id, "project": self.wc.project, "entity": self.wc.entity,
                                "mode": self.mode, "group": self.experiment,
                                "folder": str(Path(self.run.dir).parent), "url": self.run.url
                                if self.mode == "online" else None})
        return self

    def _init(self, run_id: str, mode: str) -> None:
        import wandb

        self._wandb = wandb
        context = run_context(self.experiment, self.job_type)
        if self.job_type != "train":
            record = self.read_record() or {}
            context["train_run_id"] = record.get("id")
        config = (self.cfg.model_dump(mode="json") if self.cfg is not None else {}) | {"run": context}
        name = f"{self.experiment}-{self.job_type}"
        if context["dvc_exp_name"]:
            name += f"@{context['dvc_exp_name']}"
        settings = wandb.Settings(init_timeout=self.wc.init_timeout_s, silent=True)
        # WANDB_DIR read now, not at wandb's first import (its settings are a process singleton).
        self.run = wandb.init(dir=os.environ.get("WANDB_DIR") or None,
                              project=self.wc.project, entity=self.wc.entity, group=self.experiment,
                              job_type=self.job_type, name=name, tags=_tags(context, self.wc.tags),
                              config=config, id=run_id, resume="allow", mode=mode, allow_val_change=True,
                              reinit="create_new", save_code=False, settings=settings)
        if self.job_type == "train":
            self.run.define_metric("train/step")
            self.run.define_metric("train/*", step_metric="train/step")
            self.run.define_metric("epoch/epoch")
            self.run.define_metric("epoch/*", step_metric="epoch/epoch")
            self.run.define_metric("progress/*", step_metric="epoch/epoch")

    def _write_record(self, fields: dict) -> None:
        """Fields about run ``fields['id']``; what the file held about another run is dropped."""
        old = self.read_record() or {}
        atomic_write_json(self.record_path, (old if old.get("id") == fields["id"] else {}) | fields)

    def _give_up(self, message: str) -> None:
        _say(f"{message}; W&B tracking is off for this {self.job_type} job (the DVC logs are unaffected)")
        if self.run is not None:
            try:
                self.run.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass
        self.run = None
        self.mode = "disabled"

    def _send(self, what: str, fn, *args, **kwargs) -> None:
        if self.run is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            self._give_up(f"sending {what} failed ({exc!r})")

    def finish(self, failed: bool = False) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            try:
                run.finish(exit_code=1 if failed else 0)
            except Exception as exc:  # noqa: BLE001
                _say(f"finishing the W&B run failed ({exc!r})")

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(failed=exc_type is not None)

    # -------------------------------------------------------------- training
    def log_steps(self, rows: list[dict]) -> None:
        """Append rows (by ``columns``; a missing value stays empty) to steps.tsv; send them."""
        if not rows:
            return
        with open(self.steps_path, "a", newline="") as fh:
            csv.DictWriter(fh, self.columns, restval="", delimiter="\t").writerows(rows)

        def send():
            for row in rows:
                self.run.log({f"train/{k}": v for k, v in row.items() if v is not None})
        self._send("step metrics", send)

    def log_epoch(self, record: dict, history: list[dict], grid: str | Path | None = None) -> None:
        """Write epochs.json (the whole history) and send this epoch's metrics and grid."""
        atomic_write_json(self.epochs_path, history)

        def send():
            data = {k: v for k, v in _flatten(record, "epoch", {}).items() if isinstance(v, (int, float))}
            if grid is not None and self.wc.log_images:
                data["progress/grid"] = self._wandb.Image(str(grid), caption=f"epoch {record['epoch']}")
            self.run.log(data)
        self._send("epoch metrics", send)

    def log_model(self, checkpoint: str | Path, metadata: dict | None = None) -> None:
        """The checkpoint as a version of the ``model`` artifact collection, aliased with the
        experiment and its epoch (``latest`` is W&B's own)."""
        if self.run is None or not self.wc.log_model:
            return
        meta = dict(metadata or {})
        epoch = meta.get("epoch")
        aliases = [self.experiment] + ([f"{self.experiment}-epoch{epoch}"] if epoch is not None else [])

        def send():
            art = self._wandb.Artifact(self.wc.model_artifact, type="model",
                                       metadata=meta | {"experiment": self.experiment})
            art.add_file(str(checkpoint), name="checkpoint.pt")
            self.run.log_artifact(art, aliases=aliases)
            self.run.summary["model_artifact"] = f"{self.wc.model_artifact}:{self.experiment}"
        self._send("the model artifact", send)
        if self.run is not None:
            self._write_record({"id": self.run.id, "model_artifact": self.wc.model_artifact,
                                "model_aliases": aliases, "model_epoch": epoch})

    # -------------------------------------------------------------- evaluation / traversal
    def log_evaluation(self, result: dict) -> None:
        """Every number of the metrics JSON under ``eval/``, the code correlations also as a table."""
        def send():
            flat = _flatten({k: v for k, v in result.items() if k not in ("checkpoint", "checkpoint_sha256")},
                            "eval", {})
            flat = {k: v for k, v in flat.items() if "/mapping/" not in k}  # value -> label maps: noise
            numbers = {k: v for k, v in flat.items() if not isinstance(v, str)}
            words = {k: v for k, v in flat.items() if isinstance(v, str)}
            table = self._wandb.Table(columns=["code", "attribute", "r"])
            for code, attrs in (result.get("continuous") or {}).items():
                for attribute, r in attrs.items():
                    table.add_data(code, attribute, r)
            self.run.log(numbers | ({"eval/continuous_table": table} if result.get("continuous") else {}))
            self.run.summary.update(words | {"eval/checkpoint_sha256": result.get("checkpoint_sha256")})
        self._send("evaluation metrics", send)

    def log_traversals(self, manifest: dict, out_dir: str | Path) -> None:
        """Per code: the grid (``traverse/<code>``), its GIF over training snapshots
        (``traverse/<code>_over_epochs``), and one table row per (code, value) whose image is
        that value's column of the grid (every noise row at that value)."""
        if self.run is None or not self.wc.log_images:
            return
        out_dir = Path(out_dir)

        def send():
            from PIL import Image

            wandb = self._wandb
            table = wandb.Table(columns=["code", "value", "image"])
            data: dict[str, Any] = {}
            for entry in manifest["files"]:
                path = out_dir / entry["file"]
                if entry["kind"] == "grid":
                    data[f"traverse/{entry['code']}"] = wandb.Image(str(path), caption=entry["code"])
                    values = entry["columns"]
                    with Image.open(path) as grid:
                        grid.load()
                    pad = 2
                    cell = (grid.width - pad) // len(values) - pad
                    for j, value in enumerate(values):
                        x = pad + j * (cell + pad)
                        table.add_data(entry["code"], value, wandb.Image(grid.crop((x, 0, x + cell, grid.height))))
                elif path.suffix == ".gif":
                    data[f"traverse/{entry['code']}_over_epochs"] = wandb.Video(str(path), format="gif")
            data["traverse/table"] = table
            self.run.log(data)
        self._send("traversals", send)

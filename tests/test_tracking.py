"""W&B tracking (infogan.tracking) on real short trainings, offline: what the runs hold is read
back from the offline run folders (``run-<id>.wandb`` record log, ``files/media``)."""
from __future__ import annotations

import base64
import csv
import hashlib
import json
import struct
import time
from pathlib import Path

import pytest
import yaml

from infogan import cli, tracking
from infogan.config import WandbConfig

BLOCK, HEADER = 32768, 7  # the .wandb file: a LevelDB-style log of protobuf Records in 32 KiB blocks


def read_records(path: Path) -> list:
    """Every Record of a ``.wandb`` file (wandb 0.31 ships no reader; the proto classes remain)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, parts, records = HEADER, b"", []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0:  # zero padding at a block's end
            pos += left
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:  # full
            records.append(chunk)
        elif kind == 2:  # first
            parts = chunk
        elif kind == 3:  # middle
            parts += chunk
        elif kind == 4:  # last
            records.append(parts + chunk)
    return [pb.Record.FromString(r) for r in records]


class OfflineRun:
    """What one offline run folder holds."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.records = complete_records(folder)
        run = next(r.run for r in self.records if r.WhichOneof("record_type") == "run")
        self.id, self.group, self.job_type, self.tags = run.run_id, run.run_group, run.job_type, list(run.tags)
        self.config: dict = {}
        for r in self.records:
            if r.WhichOneof("record_type") == "config":
                for item in r.config.update:
                    self.config[item.key] = json.loads(item.value_json)
            elif r.WhichOneof("record_type") == "run":
                for item in r.run.config.update:
                    self.config[item.key] = json.loads(item.value_json)
        self.history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in r.history.item}
                        for r in self.records if r.WhichOneof("record_type") == "history"]
        self.artifacts = [r.artifact for r in self.records if r.WhichOneof("record_type") == "artifact"]

    def media(self, kind: str) -> list[Path]:
        return sorted(p for p in (self.folder / "files" / "media" / kind).rglob("*") if p.is_file())

    def rows_with(self, key: str) -> list[dict]:
        return [h for h in self.history if key in h]


def complete_records(folder: Path, timeout: float = 120.0) -> list:
    """The records of a finished offline run. wandb-core writes the ``.wandb`` log from its own
    service process and can still be writing after ``run.finish()`` returns (seen on a busy
    2-core CI machine: the file held only its header), so wait for the closing ``exit`` record."""
    deadline = time.monotonic() + timeout
    while True:
        files = list(folder.glob("run-*.wandb"))
        try:
            records = read_records(files[0]) if files else []
        except Exception:  # caught mid-write: a short header or a half-written record
            records = []
        if records and records[-1].WhichOneof("record_type") == "exit":
            return records
        if time.monotonic() > deadline:
            kinds = [r.WhichOneof("record_type") for r in records]
            raise AssertionError(f"{folder}: no exit record after {timeout:.0f} s; records: {kinds}")
        time.sleep(0.5)


def offline_runs(wandb_root: Path) -> list[OfflineRun]:
    return [OfflineRun(f) for f in sorted((wandb_root / "wandb").glob("offline-run-*"))]


def md5_b64(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def model_artifacts(run: OfflineRun) -> list:
    return [a for a in run.artifacts if a.type == "model"]


@pytest.fixture
def offline(wandb_in_tmp, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    return wandb_in_tmp


SMALL = ["train.log_every=1"]  # with 128 training images: 2 steps per epoch, each one logged


def use_subset(project: Path, train: int = 128, test: int = 200) -> None:
    """Every command reads params.yaml, so the subset goes there, not into prepare's overrides."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"].update(train_subset=train, test_subset=test)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_offline_runs_hold_what_the_dvc_logs_hold(tiny_project, offline):
    use_subset(tiny_project)
    cli.prepare()
    purity = ["train.objective.role_purity.weight=1", "train.objective.role_purity.from_epoch=2"]  # from epoch 2 on
    cli.train(experiment="mnist", stop_after_epochs=1, overrides=SMALL + purity)
    record = json.loads((tiny_project / "runs/mnist/wandb_run.json").read_text())
    cli.train(experiment="mnist", resume=True, overrides=SMALL + purity)  # continues the same W&B run
    assert json.loads((tiny_project / "runs/mnist/wandb_run.json").read_text())["id"] == record["id"]
    cli.evaluate(experiment="mnist", out="metrics/mnist.json", overrides=["evaluate.fid=false"])
    cli.traverse(experiment="mnist")
    cli.select()  # moves `best`

    runs = offline_runs(offline)
    by_job = {}
    for run in runs:
        by_job.setdefault(run.job_type, []).append(run)
    assert sorted(by_job) == ["evaluate", "select", "train", "traverse"]
    train = by_job["train"]
    assert len(train) == 2 and {r.id for r in train} == {record["id"]}  # one run, resumed once
    assert all(r.group == "mnist" for r in runs)
    assert record["folder"] == str(train[0].folder)

    # The full validated config and provenance.
    config = train[0].config
    assert config["train"]["lambda_cat"] == 1.0 and config["latent"]["categorical"] == [10]
    assert config["tracking"]["wandb"]["project"] == "infogan-pipeline"
    assert config["run"]["experiment"] == "mnist" and config["run"]["git_revision"]
    assert "job:train" in train[0].tags

    # Per-step rows: exactly the rows of steps.tsv (one writer), across the resume.
    with open(tiny_project / "runs/mnist/logs/steps.tsv") as fh:
        tsv = list(csv.DictReader(fh, delimiter="\t"))
    sent = [h for run in train for h in run.rows_with("train/step")]
    assert len(sent) == len(tsv) == 4  # 2 steps per epoch, each logged, 2 epochs
    for row, h in zip(tsv, sent):
        for col in ("step", "loss_d", "loss_g", "mi_cat", "h_cat", "info_cont_nll", "real_info", "digit_roles"):
            assert float(row[col]) == pytest.approx(h[f"train/{col}"]), col
    epochs = json.loads((tiny_project / "runs/mnist/logs/epochs.json").read_text())
    sent_epochs = [h for run in train for h in run.rows_with("epoch/accuracy")]
    assert [h["epoch/epoch"] for h in sent_epochs] == [1, 2]
    assert [h["epoch/accuracy"] for h in sent_epochs] == [e["accuracy"] for e in epochs]
    assert [h["epoch/nmi"] for h in sent_epochs] == [e["nmi"] for e in epochs]
    assert [row["role_purity"] != "" for row in tsv] == [False, False, True, True]  # a term's column: empty until on
    assert "role_purity" not in epochs[0] and set(epochs[1]["role_purity"]) == {
        "slant_code_log_width", "slant_code_log_width_sharp", "width_code_angle"}
    assert sent_epochs[1]["epoch/role_purity/width_code_angle"] == epochs[1]["role_purity"]["width_code_angle"]

    # One progress grid per snapshot epoch (1 and 2), as images of the run.
    assert sum(len(r.media("images")) for r in train) == 2
    assert all(any(k.startswith("progress/grid/") for k in h) for run in train for h in run.rows_with("epoch/epoch"))

    # The checkpoint as a `model` artifact; the final one is the file on disk.
    final = model_artifacts(train[1])
    assert len(final) == 1 and final[0].name == "infogan-model"
    assert set(final[0].aliases) >= {"mnist", "mnist-epoch2"}
    entries = {e.path: e.digest for e in final[0].manifest.contents}
    assert entries == {"checkpoint.pt": md5_b64(tiny_project / "runs/mnist/checkpoint.pt")}

    # Evaluate: the metrics JSON's numbers, with the continuous-code correlations.
    metrics = json.loads((tiny_project / "metrics/mnist.json").read_text())
    (ev,) = by_job["evaluate"]
    logged = ev.rows_with("eval/accuracy")[0]
    assert logged["eval/accuracy"] == metrics["accuracy"] and logged["eval/nmi"] == metrics["nmi"]
    assert logged["eval/continuous/cont0/rotation"] == pytest.approx(metrics["continuous"]["cont0"]["rotation"])
    assert ev.config["run"]["train_run_id"] == record["id"]

    # Traverse: a (code, value, image) table with a row per code value, grids and GIFs.
    (tr,) = by_job["traverse"]
    (table_file,) = tr.media("table")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["code", "value", "image"]
    assert len(table["data"]) == 10 + 4 + 4  # cat0: 10 values; cont0, cont1: continuous_steps 4
    assert len(tr.media("videos")) == 3  # one GIF over the snapshots per code

    # Select: `best` goes to the same artifact contents (W&B adds the alias to that version).
    (sel,) = by_job["select"]
    (best,) = model_artifacts(sel)
    assert "best" in best.aliases and best.name == "infogan-model"
    assert {e.path: e.digest for e in best.manifest.contents} == entries


def test_disabled_writes_only_the_dvc_logs(tiny_project, wandb_in_tmp, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    use_subset(tiny_project)
    cli.prepare()
    cli.train(experiment="mnist", overrides=["tracking.wandb.mode=disabled", "train.epochs=1", *SMALL])
    run = tiny_project / "runs/mnist"
    assert (run / "logs/steps.tsv").read_text().count("\n") == 3  # header + 2 logged rows
    assert json.loads((run / "logs/epochs.json").read_text())[0]["epoch"] == 1
    assert not (run / "wandb_run.json").exists()
    assert not (wandb_in_tmp / "wandb").exists() and not (tiny_project / "wandb").exists()


def test_tracking_that_cannot_start_at_all_never_fails_the_stage(tiny_project, wandb_in_tmp, monkeypatch):
    """W&B refuses the run it is asked to continue (a run id it does not accept): the resumed
    training goes on without W&B and writes its DVC logs."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    use_subset(tiny_project)
    cli.prepare()
    cli.train(experiment="mnist", overrides=["train.epochs=1", *SMALL])
    record_file = tiny_project / "runs/mnist/wandb_run.json"
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps(record | {"id": "no/such:run"}))
    summary = cli.train(experiment="mnist", resume=True, overrides=["train.epochs=2", *SMALL])
    assert summary["epochs"] == 2
    assert [e["epoch"] for e in json.loads((tiny_project / "runs/mnist/logs/epochs.json").read_text())] == [1, 2]
    assert len(offline_runs(wandb_in_tmp)) == 1  # the first training's run only


def test_auto_without_a_key_starts_offline_at_once(tmp_path, wandb_in_tmp, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("WANDB_MODE", "WANDB_API_KEY", "NETRC", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    wc = WandbConfig(mode="auto")
    assert tracking.resolve_mode(wc) == ("offline", "auto: no API key configured")

    from infogan.config import InfoGANConfig

    t0 = time.perf_counter()
    with tracking.RunLogger(tmp_path / "runs/x", InfoGANConfig(), job_type="evaluate").start() as logger:
        assert logger.mode == "offline" and logger.run is not None
        logger.log_evaluation({"accuracy": 0.5, "continuous": {"cont0": {"rotation": 0.9}}})
    elapsed = time.perf_counter() - t0
    assert logger.init_seconds < 20 and elapsed < 30, (logger.init_seconds, elapsed)
    (run,) = offline_runs(wandb_in_tmp)
    assert run.rows_with("eval/accuracy")[0]["eval/accuracy"] == 0.5

    # A netrc entry for the W&B host, or WANDB_API_KEY, makes `auto` online; WANDB_MODE wins.
    (home / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert tracking.resolve_mode(wc)[0] == "online"
    (home / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert tracking.resolve_mode(wc)[0] == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.resolve_mode(wc)[0] == "disabled"


def test_online_that_cannot_start_falls_back_to_offline(tmp_path, wandb_in_tmp, monkeypatch):
    """For real: a W&B server address where nothing listens, and a key that looks right."""
    from infogan.config import InfoGANConfig, WandbConfig
    from tests.conftest import free_port

    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_MODE", "online")
    cfg = InfoGANConfig().model_copy(update={"tracking": InfoGANConfig().tracking.model_copy(
        update={"wandb": WandbConfig(mode="online", init_timeout_s=10)})})
    t0 = time.perf_counter()
    with tracking.RunLogger(tmp_path / "runs/x", cfg, job_type="evaluate").start() as logger:
        assert logger.mode == "offline" and logger.run is not None
        logger.log_evaluation({"accuracy": 0.25})
    assert time.perf_counter() - t0 < 10 + 30  # the init timeout, then the offline run's own start
    (run,) = offline_runs(wandb_in_tmp)
    assert run.rows_with("eval/accuracy")[0]["eval/accuracy"] == 0.25

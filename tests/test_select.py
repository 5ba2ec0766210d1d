"""The select stage: the best generator by the configured metric and direction, and only the
checkpoint its metrics scored."""
from __future__ import annotations

import json

import pytest
import torch

from infogan.config import ConfigError, SelectConfig
from infogan.io import file_sha256
from infogan.nets import build_models
from infogan.params import config_from_dict
from infogan.select import select


def _experiment(tmp_path, name: str, accuracy: float, fid: float) -> dict:
    cfg = config_from_dict({})
    g, d = build_models(cfg)
    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    ckpt = run / "checkpoint.pt"
    torch.save({"format": 1, "generator_args": g.ctor_args, "latent": g.ctor_args["latent"],
                "generator": g.state_dict(), "epoch": 5, "images_seen": 1}, ckpt)
    metrics = {"checkpoint": str(ckpt), "checkpoint_sha256": file_sha256(ckpt), "epoch": 5,
               "accuracy": accuracy, "image_quality": {"fid": fid}}
    path = tmp_path / "metrics" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(metrics))
    return {"path": path, "checkpoint": ckpt}


@pytest.fixture
def two(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return {"a": _experiment(tmp_path, "a", 0.90, 12.0), "b": _experiment(tmp_path, "b", 0.95, 20.0)}


def test_the_winner_follows_the_metric_and_its_direction(tmp_path, two):
    files = {k: v["path"] for k, v in two.items()}
    assert select(SelectConfig(metric="accuracy", mode="max"), files, tmp_path / "s1")["winner"]["experiment"] == "b"
    assert select(SelectConfig(metric="accuracy", mode="min"), files, tmp_path / "s2")["winner"]["experiment"] == "a"
    record = select(SelectConfig(metric="image_quality.fid", mode="min"), files, tmp_path / "s3")
    assert record["winner"]["experiment"] == "a" and [r["experiment"] for r in record["ranking"]] == ["a", "b"]
    blob = torch.load(tmp_path / "s3" / "generator.pt", weights_only=True)
    assert blob["experiment"] == "a" and "discriminator" not in blob


def test_a_checkpoint_changed_since_it_was_scored_is_refused(tmp_path, two):
    files = {k: v["path"] for k, v in two.items()}
    with open(two["b"]["checkpoint"], "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ConfigError, match="is not the checkpoint its metrics scored"):
        select(SelectConfig(metric="accuracy", mode="max"), files, tmp_path / "out")
    assert not (tmp_path / "out" / "generator.pt").exists()

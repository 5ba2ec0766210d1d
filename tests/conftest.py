"""Shared fixtures: the real datasets in ../shared/datasets and a shrunken params profile."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INFOGAN_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


def shared_dataset(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"real data not found at {folder} (set INFOGAN_SHARED_DATASETS)")
    return folder


def tiny_params(**section_overrides) -> dict:
    """The project's params.yaml shrunk to seconds: a few hundred real images, tiny eval."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update({"local_dirs": [str(SHARED / "{dataset_dir}")], "download": False,
                           "train_subset": 512, "test_subset": 500})
    params["train"].update({"epochs": 2, "batch_size": 64, "log_every": 4, "progress_bar": False,
                            "snapshot_epochs": [1, 2], "device": "cpu"})
    params["evaluate"].update({"n_samples": 200, "traversal_rows": 8, "traversal_steps": 5,
                               "prdc_samples": 200, "feature_net_epochs": 1, "batch_size": 100})
    params["traverse"].update({"rows": 3, "continuous_steps": 4})
    for section, values in section_overrides.items():
        params.setdefault(section, {}).update(values)
    return params


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """A working folder holding a tiny params.yaml; the CLI's relative paths land here."""
    shared_dataset("mnist")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    monkeypatch.chdir(tmp_path)
    return tmp_path

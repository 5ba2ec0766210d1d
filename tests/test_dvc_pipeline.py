"""The real `dvc repro` on a tiny profile: stages run once, then only what a change touches."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
import torch
import yaml

from tests.conftest import make_dvc_project, tool_environ


def dvc(root, *args: str) -> str:
    proc = subprocess.run(["dvc", *args], cwd=root, env=tool_environ(root), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def edit_params(root, section: str, key: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_dvc_project(tmp_path_factory.mktemp("dvc") / "project")


def test_repro_runs_every_stage_then_nothing(project):
    first = ran(dvc(project, "repro"))
    assert first == {"prepare@mnist", "train@mnist", "evaluate@mnist", "traverse@mnist", "select", "package"}
    metrics = json.loads((project / "metrics/mnist.json").read_text())
    for key in ("accuracy", "nmi", "mi_cat", "h_cat", "continuous", "checkpoint_sha256"):
        assert key in metrics
    package = json.loads((project / "models/package.json").read_text())
    assert package["tag"].startswith("infogan-generator:")
    assert (project / "models/infogan-generator.bentomodel").stat().st_size > 100_000
    assert (project / "traversals/mnist/manifest.json").is_file()
    shown = dvc(project, "metrics", "show")
    for column in ("accuracy", "nmi", "mi_cat", "h_cat", "continuous.cont0.rotation"):
        assert column in shown
    # `dvc plots show` (README): every plot of this experiment renders; only fashion_mnist's,
    # which this project does not train, are missing.
    plotted = json.loads(dvc(project, "plots", "show", "--json"))
    assert {"losses", "information", "accuracy"} <= set(plotted["data"])
    assert any("traversals/mnist/images" in name for name in plotted["data"]), list(plotted["data"])
    assert all("fashion_mnist" in str(e.get("source", e.get("name"))) for e in plotted.get("errors", [])), \
        plotted["errors"]
    assert ran(dvc(project, "repro")) == set()


def test_traverse_param_reruns_only_traverse(project):
    edit_params(project, "traverse", "continuous_steps", 5)
    assert ran(dvc(project, "repro")) == {"traverse@mnist"}
    manifest = json.loads((project / "traversals/mnist/manifest.json").read_text())
    cont = [f for f in manifest["files"] if f["code"] == "cont0" and f["kind"] == "grid"][0]
    assert len(cont["columns"]) == 5


@pytest.mark.slow  # resuming is also covered, faster, by tests/test_train_pipeline.py
def test_more_epochs_resumes_training_and_reruns_downstream(project):
    steps_before = (project / "runs/mnist/logs/steps.tsv").read_text()
    edit_params(project, "train", "epochs", 2)
    assert ran(dvc(project, "repro")) == {"train@mnist", "evaluate@mnist", "traverse@mnist", "select", "package"}
    ckpt = torch.load(project / "runs/mnist/checkpoint.pt", weights_only=True, map_location="cpu")
    assert ckpt["epoch"] == 2
    # Resumed, not restarted: epoch 1's logged steps are kept as they were.
    assert (project / "runs/mnist/logs/steps.tsv").read_text().startswith(steps_before)
    assert json.loads((project / "metrics/mnist.json").read_text())["epoch"] == 2

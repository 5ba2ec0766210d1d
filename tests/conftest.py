"""Shared fixtures: the real datasets in ../shared/datasets and a shrunken params profile."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
import yaml

from bench.service_process import free_port, running_service  # noqa: F401 - free_port: shared by the tests

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INFOGAN_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


def shared_dataset(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        message = f"real data not found at {folder} (set INFOGAN_SHARED_DATASETS)"
        if os.environ.get("INFOGAN_REQUIRE_DATA") or os.environ.get("CI"):
            pytest.fail(message + "; CI needs it: a data-dependent test must not pass by skipping")
        pytest.skip(message)
    return folder


def tiny_params(**section_overrides) -> dict:
    """The project's params.yaml shrunk to seconds: a few hundred real images, tiny eval."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update({"local_dirs": [str(SHARED / "{dataset_dir}")], "download": False,
                           "train_subset": 256, "test_subset": 500})
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


@pytest.fixture(autouse=True)
def wandb_in_tmp(tmp_path_factory, monkeypatch):
    """W&B never writes outside a tmp folder nor looks for a key in the user's home; tracking
    is off (WANDB_MODE=disabled wins over params) unless a test turns it on (tests/test_tracking.py)."""
    root = tmp_path_factory.mktemp("wandb")
    for key, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"),
                     ("WANDB_CONFIG_DIR", "config")):
        monkeypatch.setenv(key, str(root / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return root


def tool_environ(root: Path) -> dict:
    """os.environ for subprocesses: the venv's tools first on PATH, every tool's state in ``root``."""
    import sys

    from infogan.env import tool_env

    env = dict(os.environ)
    env.update(tool_env(root))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("WANDB_API_KEY", None)
    env["WANDB_MODE"] = "offline"
    return env


def make_dvc_project(root: Path, epochs: int = 1, experiments: tuple[str, ...] = ("mnist",),
                     select_metric: str | None = None) -> Path:
    """A real git + DVC project in ``root``: the repo's dvc.yaml and src/, a tiny params.yaml."""
    import shutil
    import subprocess

    shared_dataset("mnist")
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = tiny_params(train={"epochs": epochs})
    params["experiments"] = {name: params["experiments"][name] for name in experiments}
    params["pipeline"]["select"]["experiments"] = [experiments[0]]
    if select_metric is not None:
        params["pipeline"]["select"]["metric"] = select_metric
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The tools' state folders stay out of git, as in the real project.
    (root / ".gitignore").write_text("".join(f"{p}\n" for p in (
        ".dvc_site_cache/", ".bentoml/", ".prefect/", "wandb/", ".wandb_cache/", ".wandb_data/",
        ".wandb_config/", "models/selected/", "models/promoted.json", "__pycache__/")))
    env = tool_environ(root)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.invalid"],
                ["git", "config", "user.name", "ci"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.analytics", "false"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "tiny project"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return root


# ---- the BentoML service: a tiny packaged model and one `bentoml serve` per test session --------
# (tests/test_service.py and tests/test_explorer.py share them.)
SERVICE = "service.service:InfoGANGenerator"
READY_TIMEOUT_S = 180

# The pipeline's own commands, in one process: prepare, train one short epoch, evaluate,
# select, package (which saves into $BENTOML_HOME and exports the .bentomodel).
PIPELINE = """
from infogan import cli
for argv in (["prepare", "-e", "mnist"], ["train", "-e", "mnist"],
             ["evaluate", "-e", "mnist", "--out", "metrics/mnist.json"], ["select"], ["package"]):
    assert cli.main(argv) == 0, argv
"""


def service_env(bentoml_home: Path, **extra: str) -> dict:
    import sys

    from infogan.env import tool_env

    env = dict(os.environ)
    env.update(tool_env(bentoml_home.parent))
    env.update({"BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1"})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("INFOGAN_MODEL_TAG", None)
    env.update(extra)
    return env


def bentoml_cli(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "bentoml", *args]


@pytest.fixture(scope="session")
def packaged_model(tmp_path_factory):
    """A real (tiny) generator in a tmp BentoML store, made once per test session."""
    import subprocess
    import sys

    if os.environ.get("INFOGAN_TEST_PROJECT"):  # a real project's packaged model (docs/serving.md)
        project = Path(os.environ["INFOGAN_TEST_PROJECT"]).resolve()
        record = json.loads((project / "models" / "package.json").read_text())
        home = Path(record["bentoml_home"] or project / ".bentoml")
        return {"home": home, "tag": record["tag"], "project": project, "metadata": record["metadata"]}
    shared_dataset("mnist")
    project = tmp_path_factory.mktemp("service_project")
    params = tiny_params()
    params["data"]["train_subset"] = 256
    params["train"].update({"epochs": 1, "snapshot_epochs": [], "eval_each_epoch": False})
    params["experiments"] = {"mnist": {"data": {"dataset": "mnist"}}}
    params["pipeline"] = {"select": {"experiments": ["mnist"]}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    home = project / "bentoml"
    proc = subprocess.run([sys.executable, "-c", PIPELINE], cwd=project, env=service_env(home),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    models = list((home / "models" / "infogan-generator").glob("*/model.yaml"))
    assert len(models) == 1, models
    tag = "infogan-generator:" + models[0].parent.name
    return {"home": home, "tag": tag, "project": project,
            "metadata": yaml.safe_load(models[0].read_text())["metadata"]}


@contextlib.contextmanager
def serving(bentoml_home: Path, log: Path, **env: str):
    """``bentoml serve`` of the store at ``bentoml_home`` on a free local port, ready; stopped
    (whole process group) afterwards."""
    try:
        with running_service(None, service_env(bentoml_home, **env), READY_TIMEOUT_S, log_path=log) as service:
            yield {"url": service.url, "cold_start_s": service.cold_start_s, "log": log}
    except SystemExit as exc:  # not ready: a failed test or fixture, with the server's log
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def server(packaged_model, tmp_path_factory):
    with serving(packaged_model["home"], tmp_path_factory.mktemp("serve") / "serve.log") as running:
        yield {**running, **packaged_model}

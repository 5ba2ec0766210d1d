"""Deployments: the scheduled ``retrain-and-promote/weekly`` served by ``flow.serve``, and the
``train-stage`` deployment of the GPU work pool (``deploy_train_stage``, ``pipelines.workpool``).

``python -m pipelines serve`` registers the deployment (cron, default parameters) with the
Prefect server named by PREFECT_API_URL, or, when that is unset, with a local server on
127.0.0.1:4200 that it starts itself if none answers there; it then polls for scheduled or
manually triggered runs and executes each in a child process, one at a time.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import workpool

FLOW_NAME = "retrain-and-promote"
DEPLOYMENT = "weekly"
DEFAULT_CRON = "0 3 * * 1"          # Mondays 03:00
DEFAULT_TIMEZONE = "UTC"
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 4200
CODE_ROOT = Path(__file__).resolve().parents[1]


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def start_local_server(root: Path, port: int = LOCAL_PORT, wait_s: float = 180.0) -> tuple[str, subprocess.Popen]:
    """``prefect server start --host 127.0.0.1 --port <port>`` (state in $PREFECT_HOME, log in
    .prefect/server.log); returns its API URL once /health answers."""
    api_url = f"http://{LOCAL_HOST}:{port}/api"
    log_path = Path(os.environ.get("PREFECT_HOME", root / ".prefect")) / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", LOCAL_HOST,
                                 "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    start = time.monotonic()
    while time.monotonic() - start < wait_s:
        if healthy(api_url):
            return api_url, proc
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"the local Prefect server did not come up (exit {proc.poll()}); see {log_path}")


def serve(root: Path, name: str = DEPLOYMENT, cron: str = DEFAULT_CRON, timezone: str = DEFAULT_TIMEZONE,
          parameters: dict | None = None) -> None:
    """Register ``retrain-and-promote/<name>`` on ``cron`` and run its flow runs (blocks)."""
    from prefect.flows import EntrypointType
    from prefect.schedules import Cron

    from .flows import retrain_and_promote

    params = {"root": str(root.resolve())} | (parameters or {})
    # Runs execute in child processes that import `pipelines.flows` by module path, from here.
    os.chdir(CODE_ROOT)
    retrain_and_promote.serve(
        name=name, schedules=[Cron(cron, timezone=timezone)], parameters=params, tags=["infogan"],
        description=f"Retrain the InfoGAN DVC pipeline in {params['root']} and promote the generator if better",
        limit=1, entrypoint_type=EntrypointType.MODULE_PATH)


def deploy_train_stage(pool: str = workpool.DEFAULT_POOL, name: str = workpool.DEFAULT_DEPLOYMENT,
                       code_root: Path = workpool.CODE_ROOT) -> str:
    """Register ``train-stage/<name>`` in ``pool``. Its runs execute ``pipelines.flows`` from
    ``code_root`` (this checkout, on the machine that runs the worker), with the worker's Python."""
    from prefect.flows import EntrypointType

    from .flows import train_stage

    workpool.ensure_pool(pool)
    train_stage.deploy(
        name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False, ignore_warnings=True,
        entrypoint_type=EntrypointType.MODULE_PATH, job_variables={"working_dir": str(code_root)},
        tags=["infogan", "train"],
        description="`dvc repro -s train@<experiment>` in the project folder, on this pool's (GPU) worker")
    return f"{workpool.FLOW_NAME}/{name}"

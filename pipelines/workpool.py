"""Training on a GPU worker: the ``train-stage`` deployment in a Prefect process work pool.

On the GPU machine (a checkout of this project with its venv, the same Prefect server):

    python -m pipelines deploy-train --pool infogan-gpu      # creates the pool if missing, registers train-stage/gpu
                                                              # (pipelines.deploy.deploy_train_stage)
    prefect worker start --pool infogan-gpu                   # polls the pool; runs each flow run in a child process

Anywhere else, ``python -m pipelines train --train-deployment train-stage/gpu`` runs the light
stages (prepare, evaluate, traverse, select, package) in its own process and sends each
``train@<experiment>`` stage to that deployment, waiting for it. Both machines work on the
same project folder (a shared mount; ``--train-root`` when the GPU machine mounts it at
another path): the worker's ``dvc repro -s train@<e>`` writes the checkpoint and dvc.lock
entry that the local stages then read, and the local side checks that it sees them.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

CODE_ROOT = Path(__file__).resolve().parents[1]
FLOW_NAME = "train-stage"
DEFAULT_POOL = "infogan-gpu"
DEFAULT_DEPLOYMENT = "gpu"
POLL_S = 2.0


class RemoteStageError(RuntimeError):
    """A stage sent to the work pool did not complete (never picked up, failed, or its outputs
    are not visible here). Not retried by the caller: the worker's flow retries its own stage."""

    transient = False


def ensure_pool(pool: str) -> bool:
    """Create the process work pool ``pool`` unless it exists; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                                   base_job_template=ProcessWorker.get_default_base_job_template()))
            return True
    if existing.type != "process":
        raise ValueError(f"work pool {pool!r} exists with type {existing.type!r}; the train stage needs a "
                         f"'process' pool (or pick another --pool)")
    return False


def check_deployment(deployment: str) -> str:
    """The work pool of ``deployment``; a clear error when the server does not know it."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            target = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            raise RemoteStageError(
                f"deployment {deployment!r} is not registered on the Prefect server {client.api_url}; on the GPU "
                f"machine run `python -m pipelines deploy-train` (then `prefect worker start --pool <pool>`)") from None
    if not target.work_pool_name:
        raise RemoteStageError(f"deployment {deployment!r} has no work pool (a `serve` deployment?); register the "
                               f"train stage with `python -m pipelines deploy-train`")
    return target.work_pool_name


def online_workers(pool: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus

    with get_client(sync_client=True) as client:
        return len(client.read_workers_for_work_pool(
            pool, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))))


def run_remote_stage(deployment: str, pool: str, worker_root: str, stage: str, force: bool,
                     start_timeout_s: float, log=print) -> dict:
    """Create a run of ``deployment`` (in work pool ``pool``, see check_deployment) for ``stage``,
    linked to the calling flow run, and wait for it. A run no worker picks up within
    ``start_timeout_s`` is cancelled and reported."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled

    if not online_workers(pool):
        log(f"no worker is online in pool {pool!r} yet; the run waits up to {start_timeout_s:.0f} s for one "
            f"(start it with `prefect worker start --pool {pool}`)")
    started = time.monotonic()
    run = run_deployment(deployment, parameters={"root": worker_root, "stage": stage, "force": force},
                         timeout=0, as_subflow=True, tags=["infogan", stage])
    log(f"{stage}: flow run {run.name} ({run.id}) of {deployment} in pool {pool!r}")
    picked_up = None
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run.id)
            state = run.state
            if picked_up is None and state is not None and state.type not in (StateType.SCHEDULED, StateType.PENDING):
                picked_up = time.monotonic() - started
                log(f"{stage}: picked up after {picked_up:.1f} s")
            if state is not None and state.is_final():
                break
            if picked_up is None and time.monotonic() - started > start_timeout_s:
                client.set_flow_run_state(run.id, Cancelled(message="no worker picked it up"), force=True)
                raise RemoteStageError(
                    f"stage {stage}: no worker of pool {pool!r} picked up flow run {run.name} within "
                    f"{start_timeout_s:.0f} s; it was cancelled. Start one on the GPU machine: "
                    f"`prefect worker start --pool {pool}`")
            time.sleep(POLL_S)
    seconds = time.monotonic() - started
    if not state.is_completed():
        raise RemoteStageError(f"stage {stage} on pool {pool!r} ended {state.type.value} "
                               f"(flow run {run.name}, {run.id}): {state.message or 'no message'}")
    return {"flow_run_id": str(run.id), "flow_run_name": run.name, "pool": pool, "seconds": round(seconds, 3),
            "queued_s": round(picked_up or 0.0, 3), "run_s": round(run.total_run_time.total_seconds(), 3)}


def where_am_i() -> dict:
    """The host and the device training picks here (``train.device: auto``)."""
    from infogan.checkpoint import select_device

    device = select_device("auto")
    name = device.type
    if device.type == "cuda":
        import torch

        name = f"cuda ({torch.cuda.get_device_name(device)}, {torch.cuda.device_count()} GPU(s))"
    return {"host": socket.gethostname(), "device": name}

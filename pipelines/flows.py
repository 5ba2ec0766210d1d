"""Prefect flows over the DVC pipeline (see the package docstring and README "Orchestration").

Every flow takes ``root`` (the project folder: dvc.yaml, params.yaml) and validates its other
parameters with ``pipelines.settings`` (infogan's pydantic models) before anything runs.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run as task_run_info

from . import dvcrun, promotion, workpool
from .results import collect_results, comparison_rows, experiment_metrics, metrics_markdown, num
from .settings import PromoteRequest, StageRequest, SweepRequest, TrainRequest, shadowed, write_overrides

METRICS_ARTIFACT = "train-pipeline-metrics"
SWEEP_ARTIFACT = "sweep-comparison"
PROMOTION_ARTIFACT = "promotion-decision"


def _retryable(task, task_run, state) -> bool:
    """Retry policy of the stage tasks: transient failures only (a stage command that rejected its
    inputs fails the same way every time; see dvcrun.StageFailed.transient)."""
    exc = getattr(state, "data", None)
    if not isinstance(exc, BaseException):
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - no readable exception: let the retry policy decide
            return True
    return bool(getattr(exc, "transient", True))


def _logged(logger):
    return lambda line: logger.info(line)


# ---- tasks ---------------------------------------------------------------------------------------

@task(name="dvc-stage", task_run_name="{stage}", retries=2, retry_delay_seconds=10, retry_condition_fn=_retryable,
      cache_policy=NO_CACHE)
def run_stage(root: str, stage: str, force: bool = False) -> dict:
    """``dvc repro -s <stage>``: DVC skips it when its deps, params and outs are unchanged."""
    logger = get_run_logger()
    attempt = task_run_info.run_count or 1
    if dvcrun.injected_failures(stage, attempt):
        raise dvcrun.InjectedFailure(f"injected transient failure of {stage} (attempt {attempt}; "
                                     f"INFOGAN_PIPELINES_FAULTS)")
    cmd = ["dvc", "repro", "-s", *(["-f"] if force else []), stage]
    logger.info("$ %s", " ".join(cmd))
    result = dvcrun.stream(cmd, root, _logged(logger))
    if result.returncode != 0:
        raise dvcrun.StageFailed(f"stage {stage}", result.returncode, result.lines)
    outcome = dvcrun.stage_outcome(stage, result)
    logger.info("stage %s %s in %.1f s (attempt %d)", stage, outcome, result.seconds, attempt)
    return {"stage": stage, "status": outcome, "seconds": round(result.seconds, 3), "attempt": attempt}


@task(name="remote-dvc-stage", task_run_name="{stage} (work pool)", retries=0, cache_policy=NO_CACHE)
def run_remote_stage(root: str, deployment: str, pool: str, worker_root: str, stage: str, force: bool,
                     start_timeout_s: float) -> dict:
    """``stage`` as a run of ``deployment`` on its work pool's worker, waited for; then the local
    side must see the outputs (same project folder), or the following stages would retrain."""
    logger = get_run_logger()
    remote = workpool.run_remote_stage(deployment, pool, worker_root, stage, force, start_timeout_s,
                                       log=logger.info)
    pending = dvcrun.status(root, stage)
    if pending:
        raise workpool.RemoteStageError(
            f"stage {stage} completed on pool {remote['pool']!r} but {root} does not show its outputs "
            f"(dvc status: {json.dumps(pending)[:300]}): the worker must run in this same project folder "
            f"(a shared mount; pass --train-root with its path on the worker)")
    logger.info("stage %s ran on pool %r in %.1f s (queued %.1f s)", stage, remote["pool"], remote["seconds"],
                remote["queued_s"])
    return {"stage": stage, "status": "remote", "seconds": remote["seconds"], "attempt": 1, "remote": remote}


@task(name="dvc-exp-run", task_run_name="{name}", retries=1, retry_delay_seconds=10, retry_condition_fn=_retryable,
      cache_policy=NO_CACHE)
def run_experiment(root: str, name: str, overrides: list[str]) -> dict:
    """One grid point: ``dvc exp run --temp -n <name> -S ...`` (its own temp copy of the
    workspace, so the workspace and other points are untouched); its metrics read back from
    the experiment's commit."""
    logger = get_run_logger()
    attempt = task_run_info.run_count or 1
    if dvcrun.injected_failures(name, attempt):
        raise dvcrun.InjectedFailure(f"injected transient failure of {name} (attempt {attempt})")
    cmd = ["dvc", "exp", "run", "--temp", "-n", name, *[a for o in overrides for a in ("-S", o)]]
    logger.info("$ %s", " ".join(cmd))
    result = dvcrun.stream(cmd, root, _logged(logger))
    if result.returncode != 0:
        raise dvcrun.StageFailed(f"experiment {name}", result.returncode, result.lines)
    return {"name": name, "overrides": overrides, "seconds": round(result.seconds, 3), "attempt": attempt,
            "metrics": experiment_metrics(Path(root), name)}


@task(name="check-pipeline-complete", cache_policy=NO_CACHE)
def check_pipeline_complete(root: str) -> None:
    """Refuse to promote unless `package` and everything upstream of it is up to date (a failed
    or interrupted stage leaves DVC reporting changes)."""
    changed = dvcrun.status(root, "package")
    if changed:
        raise promotion.PromotionError("the pipeline is not complete, nothing promoted; `dvc status` reports "
                                       f"changes in {sorted(changed)} (rerun train_pipeline / `dvc repro`)")


@task(name="promotion-decision", cache_policy=NO_CACHE)
def decide_promotion(root: str, min_improvement: float, force: bool) -> dict:
    logger = get_run_logger()
    project = Path(root)
    new = promotion.candidate(project)
    pointer = promotion.read_pointer(project)
    current_tag = pointer["tag"] if pointer else None
    stored = promotion.store_models(project, *filter(None, {new.tag, current_tag}))
    if stored.get(new.tag) is None:
        raise promotion.PromotionError(f"{new.tag} (models/package.json) is not in the BentoML store at "
                                       f"{dvcrun.environ(root).get('BENTOML_HOME')}")
    current = stored.get(current_tag) if current_tag else None
    decision = promotion.decide(new, current_tag, current["metadata"] if current else None,
                                min_improvement=min_improvement, force=force)
    cur = "none" if decision.current_value is None else f"{decision.current_value:.6g}"
    logger.info("promotion on %s (%s): new %s = %.6g, promoted %s = %s -> %s (%s)", new.metric, new.mode, new.tag,
                new.value, current_tag or "(none)", cur, "PROMOTE" if decision.promote else "KEEP", decision.reason)
    result = decision.as_dict()
    if decision.promote:
        result["pointer"] = promotion.write_pointer(project, new, decision)
        logger.info("wrote %s -> %s", promotion.POINTER, new.tag)
    return result


# ---- flows ---------------------------------------------------------------------------------------

@flow(name="train-pipeline", log_prints=True)
def train_pipeline(root: str = ".", experiments: list[str] | None = None, overrides: list[str] | None = None,
                   force: bool = False, retries: int = 2, retry_delay_s: float = 10.0,
                   train_deployment: str | None = None, train_root: str | None = None,
                   train_start_timeout_s: float = 600.0) -> dict:
    """Run the DVC pipeline stage by stage (one task per `dvc repro -s <stage>`) for
    ``experiments`` (default: all in params.yaml) after setting ``overrides`` in params.yaml;
    returns the metrics and output paths and publishes them as a markdown artifact. With
    ``train_deployment`` (e.g. ``train-stage/gpu``) each ``train@<e>`` stage runs as a run of
    that deployment on its work pool's worker (see pipelines.workpool); the rest stay here."""
    started = time.perf_counter()
    logger = get_run_logger()
    req = TrainRequest(root=Path(root), experiments=experiments, overrides=overrides or [], force=force,
                       retries=retries, retry_delay_s=retry_delay_s, train_deployment=train_deployment,
                       train_root=train_root, train_start_timeout_s=train_start_timeout_s)
    selected = req.selected()
    for note in shadowed(req.raw_params(), req.overrides, selected):
        logger.warning(note)
    pool = None
    if req.train_deployment:  # before anything is written or run
        pool = workpool.check_deployment(req.train_deployment)
        logger.info("train stages go to %s (work pool %r); the others run here", req.train_deployment, pool)
    changed = write_overrides(req.params_path, req.overrides) if req.overrides else []
    if changed:
        logger.info("params.yaml: set %s", ", ".join(changed))
    stage = run_stage.with_options(retries=req.retries, retry_delay_seconds=req.retry_delay_s)
    stages = []
    for name in req.plan():
        if req.train_deployment and name.startswith("train@"):
            stages.append(run_remote_stage(str(req.root), req.train_deployment, pool,
                                           req.train_root or str(req.root), name, req.force,
                                           req.train_start_timeout_s))
        else:
            stages.append(stage(str(req.root), name, req.force))
    results = collect_results(req.root, selected)
    create_markdown_artifact(markdown=metrics_markdown(results, stages, req.overrides), key=METRICS_ARTIFACT,
                             description=f"InfoGAN metrics, {', '.join(selected)}")
    stage_s = sum(s["seconds"] for s in stages)
    body_s = time.perf_counter() - started
    results |= {"stages": stages, "overrides": req.overrides,
                "timing": {"stages_s": round(stage_s, 3), "flow_body_s": round(body_s, 3),
                           "orchestration_s": round(body_s - stage_s, 3)}}
    logger.info("ran %d stage(s), skipped %d; stages %.1f s, flow body %.1f s",
                sum(s["status"] == "ran" for s in stages), sum(s["status"] != "ran" for s in stages), stage_s, body_s)
    return results


@flow(name=workpool.FLOW_NAME, log_prints=True)
def train_stage(root: str = ".", stage: str = "train@mnist", force: bool = False, retries: int = 2,
                retry_delay_s: float = 10.0) -> dict:
    """One DVC stage (meant for ``train@<experiment>``) where this flow runs: the entry point
    of the work-pool deployment that puts training on a GPU machine (pipelines.workpool)."""
    req = StageRequest(root=Path(root), stage=stage, force=force, retries=retries, retry_delay_s=retry_delay_s)
    here = workpool.where_am_i()
    get_run_logger().info("running %s on %s, device %s, in %s", req.stage, here["host"], here["device"],
                          req.root.resolve())
    outcome = run_stage.with_options(retries=req.retries, retry_delay_seconds=req.retry_delay_s)(
        str(req.root), req.stage, req.force)
    return outcome | here


@flow(name="sweep", log_prints=True)
def sweep(root: str = ".", seeds: list[int] | None = None, lambda_cat: list[float] | None = None,
          lambda_cont: list[float] | None = None, overrides: list[str] | None = None, jobs: int = 1,
          prefix: str | None = None, retries: int = 1, retry_delay_s: float = 10.0) -> dict:
    """A grid over seeds and/or lambdas, each point a DVC experiment (`dvc exp run --temp`), at
    most ``jobs`` at a time; returns (and publishes) a comparison table ranked on
    pipeline.select.metric. Compare further with `dvc exp show`; keep one with `dvc exp apply`."""
    logger = get_run_logger()
    req = SweepRequest(root=Path(root), seeds=seeds or [], lambda_cat=lambda_cat or [], lambda_cont=lambda_cont or [],
                       overrides=overrides or [], jobs=jobs, prefix=prefix, retries=retries,
                       retry_delay_s=retry_delay_s)
    name_prefix = req.prefix or "sweep-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    points = req.points(name_prefix)
    logger.info("sweep %s: %d point(s), %d at a time", name_prefix, len(points), req.jobs)
    exp_task = run_experiment.with_options(retries=req.retries, retry_delay_seconds=req.retry_delay_s)
    outcomes: list[dict] = []
    pending: list[tuple[str, list[str], Any]] = []

    def settle(item) -> None:
        name, ovr, future = item
        try:
            outcomes.append(future.result() | {"status": "ok"})
        except Exception as exc:  # noqa: BLE001 - one failed point does not stop the sweep
            logger.error("experiment %s failed: %s", name, exc)
            outcomes.append({"name": name, "overrides": ovr, "status": "failed", "error": str(exc)[-500:]})

    for name, ovr in points:
        if len(pending) >= req.jobs:
            settle(pending.pop(0))
        pending.append((name, ovr, exp_task.submit(str(req.root), name, ovr)))
    while pending:
        settle(pending.pop(0))

    rows = comparison_rows(outcomes)
    table = [{k: r.get(k) for k in ("rank", "experiment", "overrides", "status", "metric", "value", "winner",
                                   "seconds", "package_tag")} | r["per_experiment"] for r in rows]
    create_table_artifact(table=table, key=SWEEP_ARTIFACT, description=f"sweep {name_prefix}: {len(points)} point(s)")
    failed = [r for r in rows if r["status"] != "ok"]
    if len(failed) == len(rows):
        raise RuntimeError(f"every sweep point failed; first error: {failed[0].get('error')}")
    return {"prefix": name_prefix, "rows": table}


@flow(name="promote", log_prints=True)
def promote(root: str = ".", min_improvement: float = 0.0, force: bool = False) -> dict:
    """Point models/promoted.json at the newly packaged generator only if it beats the promoted
    one on the selection metric (by more than ``min_improvement``); never when the pipeline is
    incomplete. Logs the decision with both figures and publishes it as an artifact."""
    req = PromoteRequest(root=Path(root), min_improvement=min_improvement, force=force)
    check_pipeline_complete(str(req.root))
    decision = decide_promotion(str(req.root), req.min_improvement, req.force)
    cur = "-" if decision["current_value"] is None else num(decision["current_value"])
    create_markdown_artifact(
        key=PROMOTION_ARTIFACT, description="promote: decision",
        markdown="\n".join([
            f"# {'Promoted' if decision['promote'] else 'Kept'}: {decision['reason']}", "",
            f"| | tag | {decision['metric']} ({decision['mode']}) |", "| --- | --- | --- |",
            f"| new | `{decision['new_tag']}` | {num(decision['new_value'])} |",
            f"| promoted before | `{decision['current_tag'] or '-'}` | {cur} |", ""]))
    return decision


@flow(name="retrain-and-promote", log_prints=True)
def retrain_and_promote(root: str = ".", experiments: list[str] | None = None, overrides: list[str] | None = None,
                        retries: int = 2, retry_delay_s: float = 10.0, min_improvement: float = 0.0,
                        train_deployment: str | None = None, train_root: str | None = None,
                        train_start_timeout_s: float = 600.0) -> dict:
    """train_pipeline, then promote; a failed stage fails this flow before promote runs."""
    trained = train_pipeline(root=root, experiments=experiments, overrides=overrides, retries=retries,
                             retry_delay_s=retry_delay_s, train_deployment=train_deployment, train_root=train_root,
                             train_start_timeout_s=train_start_timeout_s)
    decision = promote(root=root, min_improvement=min_improvement)
    return {"train": trained, "promote": decision}

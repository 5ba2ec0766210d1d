"""Prefect orchestration (pipelines/): real flows against a real `prefect server` on 127.0.0.1,
over one tiny git + DVC project. The tests run in order and share that project: the first runs
every stage once (~75 s of stage time here), the rest rerun one cheap stage or none."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import prefect  # noqa: F401 - required: a broken install fails these tests instead of skipping them
import pytest
import yaml

from bench.service_process import stop_process_group
from tests.conftest import ROOT, free_port, make_dvc_project, tool_environ

SERVER_TIMEOUT_S = 180
MEASURED: dict[str, float] = {}


def _stop(proc: subprocess.Popen) -> None:
    stop_process_group(proc, term_wait_s=10, kill_wait_s=10)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    import urllib.request

    start = time.monotonic()
    while time.monotonic() - start < SERVER_TIMEOUT_S and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {time.monotonic() - start:.0f}s (exit {proc.poll()}):\n"
                + log.read_text(errors="replace")[-3000:])


# ---- parameters: cheap, no server -----------------------------------------------------------------

def test_cli_help_for_every_flow(capsys):
    from pipelines.__main__ import FLOWS, build_parser

    for name in FLOWS:
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([name, "--help"])
        assert exit_.value.code == 0
        assert "--root" in capsys.readouterr().out


def test_overrides_are_validated_by_infogans_models_before_anything_runs(tmp_path):
    import shutil

    from pydantic import ValidationError

    from pipelines.__main__ import main
    from pipelines.settings import StageRequest, SweepRequest, TrainRequest

    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    before = (tmp_path / "params.yaml").read_text()
    cases = [({"overrides": ["train.sed=1"]}, "train.sed: unknown key"),
             ({"overrides": ["train.seed=-1"]}, "train.seed: Input should be greater than or equal to 0"),
             ({"overrides": ["pipeline.select.mode=best"]}, "pipeline.select.mode"),
             ({"experiments": ["cifar"]}, "unknown experiment(s) ['cifar']")]
    for kwargs, message in cases:
        with pytest.raises(ValidationError, match=re.escape(message)):
            TrainRequest(root=tmp_path, **kwargs)
    with pytest.raises(ValidationError, match="train.lambda_cat: Input should be less than or equal to 100"):
        SweepRequest(root=tmp_path, seeds=[0], lambda_cat=[1.0, 200.0])
    with pytest.raises(ValidationError, match="train_deployment"):
        TrainRequest(root=tmp_path, train_deployment="gpu")  # not <flow>/<deployment>
    with pytest.raises(ValidationError, match=re.escape("unknown stage 'train@cifar'; dvc.yaml with params.yaml has: "
                                                        "prepare@mnist, train@mnist")):
        StageRequest(root=tmp_path, stage="train@cifar")
    assert StageRequest(root=tmp_path, stage="train@fashion_mnist").stage == "train@fashion_mnist"
    assert main(["train", "--root", str(tmp_path), "-S", "train.epochs=0"]) == 2
    assert (tmp_path / "params.yaml").read_text() == before


def test_write_overrides_keeps_comments_and_is_a_noop_when_nothing_changes(tmp_path):
    import shutil

    import yaml

    from pipelines.settings import write_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    before = path.read_text()
    assert write_overrides(path, ["train.seed=0"]) == [] and path.read_text() == before
    assert write_overrides(path, ["train.seed=3", "experiments.fashion_mnist.train.epochs=2"]) == \
        ["train.seed=3", "experiments.fashion_mnist.train.epochs=2"]
    after = path.read_text()
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert changed == ["  seed: 3", "      epochs: 2"]  # ("    train:" is a line of mnist's entry already)
    assert after.count("#") == before.count("#")
    raw = yaml.safe_load(after)
    assert raw["train"]["seed"] == 3 and raw["experiments"]["fashion_mnist"]["train"] == {"epochs": 2}


def test_promotion_decisions():
    from pipelines.promotion import Candidate, decide

    new = Candidate(tag="g:new", metric="accuracy", mode="max", value=0.9, experiment="mnist", checkpoint_sha256="x")
    meta = {"selection_metric": "accuracy", "selection_value": 0.8}
    assert decide(new, None, None).promote
    assert decide(new, "g:old", meta).promote
    assert not decide(new, "g:old", meta, min_improvement=0.2).promote
    assert not decide(new, "g:old", {"selection_metric": "nmi", "selection_value": 0.1, "accuracy": 0.95}).promote
    assert not decide(new, "g:old", {"selection_metric": "nmi", "selection_value": 0.1}).promote  # no figure
    assert decide(new, "g:old", {"selection_metric": "nmi"}, force=True).promote
    assert not decide(new, "g:new", meta).promote
    fid = Candidate(tag="g:new", metric="image_quality.fid", mode="min", value=20.0, experiment="mnist",
                    checkpoint_sha256="x")
    assert decide(fid, "g:old", {"selection_metric": "accuracy", "image_quality_fid": 25.0}).promote
    assert not decide(fid, "g:old", {"selection_metric": "accuracy", "image_quality_fid": 20.0}).promote


# ---- flows against a real server and a real DVC project ------------------------------------------

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Selected on accuracy: the promotion tests need figures a toy model has (its Q may read one
    value for every real image, so the label-free default is 0); tests/test_dvc_pipeline.py runs
    the default."""
    return make_dvc_project(tmp_path_factory.mktemp("prefect") / "project", select_metric="accuracy")


@pytest.fixture(scope="module")
def server(project, tmp_path_factory):
    """`prefect server start --host 127.0.0.1` on a free port, its state in a tmp PREFECT_HOME."""
    home = tmp_path_factory.mktemp("prefect_home")
    port = free_port()
    env = tool_environ(project) | {"PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        start = time.monotonic()
        _wait_healthy(url, proc, log)
        MEASURED["server_start_s"] = time.monotonic() - start
        yield {"url": url, "home": home}
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def api(server, project):
    """In-process flows report to that server; the project's tools keep their state inside it."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    from infogan.env import tool_env

    with pytest.MonkeyPatch.context() as mp:
        for key, value in tool_env(project).items():
            mp.setenv(key, value)
        mp.setenv("PREFECT_HOME", str(server["home"]))
        mp.setenv("PREFECT_API_URL", server["url"])
        mp.delenv("INFOGAN_PIPELINES_FAULTS", raising=False)
        with temporary_settings(updates={PREFECT_API_URL: server["url"], PREFECT_HOME: str(server["home"])}):
            yield server


@pytest.fixture(scope="module")
def gpu_pool(api, project, tmp_path_factory):
    """A real process work pool with the train-stage deployment and a `prefect worker start`
    polling it: the GPU machine's part of README "Scaling out" (on this CPU, in a subprocess)."""
    from pipelines.deploy import deploy_train_stage
    from pipelines.workpool import ensure_pool

    pool = "ci-gpu"
    name = deploy_train_stage(pool=pool, name="ci")
    assert ensure_pool(pool) is False  # registering again reuses the pool
    env = tool_environ(project) | {"PREFECT_API_URL": api["url"], "PREFECT_HOME": str(api["home"]),
                                   "PREFECT_WORKER_QUERY_SECONDS": "1"}
    env.pop("INFOGAN_PIPELINES_FAULTS", None)
    folder = tmp_path_factory.mktemp("worker")
    log = folder / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool],
                                  cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield {"pool": pool, "deployment": name, "log": log}
    finally:
        _stop(worker)


def _read_flow_runs(deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with client() as c:
        return c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def flow_logs(flow_run_id, text: str, timeout_s: float = 20.0) -> list[str]:
    """Log messages of a flow run (its tasks included) that contain ``text``; logs reach the server
    in batches, so poll a little."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTextSearch
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    deadline = time.monotonic() + timeout_s
    while True:
        with client() as c:
            logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]),
                                                    text=LogFilterTextSearch(query=f'"{text}"')))
        found = [log.message for log in logs if text in log.message]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def task_runs(flow_run_id, name: str):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    with client() as c:
        return c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name])))


def pointer(project: Path) -> str | None:
    path = project / "models" / "promoted.json"
    return path.read_text() if path.exists() else None


def test_train_pipeline_runs_every_stage_and_publishes_metrics(api, project, gpu_pool):
    """The full pipeline, its train stage sent to the work pool's worker (README "Scaling out"),
    the light stages run here."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    from pipelines.flows import METRICS_ARTIFACT, promote, train_pipeline

    start = time.perf_counter()
    state = train_pipeline(root=str(project), retries=0, train_deployment=gpu_pool["deployment"], return_state=True)
    wall = time.perf_counter() - start
    assert state.is_completed(), (state.message, gpu_pool["log"].read_text(errors="replace")[-3000:])
    result = state.result()
    assert [s["stage"] for s in result["stages"]] == ["prepare@mnist", "train@mnist", "evaluate@mnist",
                                                      "traverse@mnist", "select", "package"]
    stages = {s["stage"]: s for s in result["stages"]}
    assert {s["status"] for n, s in stages.items() if n != "train@mnist"} == {"ran"}
    remote = stages["train@mnist"]
    assert remote["status"] == "remote" and remote["remote"]["pool"] == gpu_pool["pool"]
    MEASURED["work_pool_queued_s"] = remote["remote"]["queued_s"]
    MEASURED["work_pool_overhead_s"] = remote["seconds"] - remote["remote"]["run_s"]
    # It ran as a run of the deployment in the worker's child process, a subflow of this run,
    # and really trained there (its log names the host and device; DVC recorded the stage).
    with client() as c:
        [child] = _read_flow_runs(c.read_deployment_by_name(gpu_pool["deployment"]).id)
    assert str(child.id) == remote["remote"]["flow_run_id"] and child.state.is_completed()
    assert child.work_pool_name == gpu_pool["pool"] and child.parameters["stage"] == "train@mnist"
    assert child.parent_task_run_id is not None
    assert flow_logs(child.id, "device cpu") and flow_logs(child.id, "Running stage 'train@mnist'")
    assert "train@mnist" in yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert (project / "runs/mnist/checkpoint.pt").is_file()
    mnist = result["experiments"]["mnist"]
    assert 0.0 <= mnist["metrics"]["accuracy"] <= 1.0
    assert "runs/mnist/grids/epoch_001.png" in mnist["grids"]
    assert "traversals/mnist/images/cat0.png" in mnist["traversals"]
    assert result["package"]["tag"].startswith("infogan-generator:")
    MEASURED["full_run_wall_s"] = wall
    MEASURED["full_run_stages_s"] = result["timing"]["stages_s"]
    MEASURED["full_run_overhead_s"] = wall - result["timing"]["stages_s"]

    flow_run_id = state.state_details.flow_run_id
    with client() as c:
        artifacts = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[METRICS_ARTIFACT])),
                                     flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    assert len(artifacts) == 1 and artifacts[0].type == "markdown"
    table = artifacts[0].data
    assert "| mnist | 1 |" in table and f"{mnist['metrics']['accuracy']:.4g}" in table
    assert "`runs/mnist/grids/epoch_001.png`" in table and "`traversals/mnist/images/cat0.png`" in table
    # The stages' own output is in the Prefect logs (here: the select command's stdout).
    assert flow_logs(flow_run_id, "[select] mnist wins on accuracy")

    decision = promote(root=str(project))
    assert decision["promote"] and decision["current_tag"] is None
    assert json.loads(pointer(project))["tag"] == result["package"]["tag"]


def test_transient_failure_is_retried_then_the_real_stage_runs(api, project, monkeypatch):
    from pipelines.flows import train_pipeline

    monkeypatch.setenv("INFOGAN_PIPELINES_FAULTS", "traverse@mnist=1")
    state = train_pipeline(root=str(project), overrides=["traverse.rows=2"], retries=1, retry_delay_s=0,
                           return_state=True)
    assert state.is_completed(), state.message
    stages = {s["stage"]: s for s in state.result()["stages"]}
    assert stages["traverse@mnist"]["status"] == "ran" and stages["traverse@mnist"]["attempt"] == 2
    assert {s["status"] for n, s in stages.items() if n != "traverse@mnist"} == {"skipped"}
    [traverse] = task_runs(state.state_details.flow_run_id, "traverse@mnist")
    assert traverse.run_count == 2 and traverse.state.is_completed()
    # The override landed in params.yaml and the real stage used it (dvc.lock is the record).
    assert json.loads((project / "traversals/mnist/manifest.json").read_text())["rows"] == 2
    assert "rows: 2" in (project / "dvc.lock").read_text()


def test_failing_stage_fails_the_flow_with_its_message_and_promotes_nothing(api, project):
    from pipelines.flows import promote, retrain_and_promote, train_pipeline

    before = pointer(project)
    state = retrain_and_promote(root=str(project), overrides=["pipeline.select.metric=nope"], retries=2,
                                retry_delay_s=0, return_state=True)
    assert state.is_failed()
    error = str(state.result(raise_on_failure=False))
    assert "pipeline.select.metric 'nope' is not a number" in error          # the stage's own message
    assert "stage select failed" in error
    with client() as c:
        runs = c.read_task_runs()
    [select] = [r for r in runs if r.name == "select" and r.state.is_failed()]
    assert select.run_count == 1                 # a command that rejected its inputs is not retried
    assert pointer(project) == before            # promote never ran
    # Nor does promote on its own: DVC reports the failed stage's outputs missing.
    failed = promote(root=str(project), return_state=True)
    assert failed.is_failed() and "pipeline is not complete" in str(failed.result(raise_on_failure=False))
    assert pointer(project) == before
    # Put the metric back: select reruns, the pipeline is complete again.
    assert train_pipeline(root=str(project), overrides=["pipeline.select.metric=accuracy"], retries=0,
                          return_state=True).is_completed()


FAKE_MODELS = """
import bentoml, json, sys
tags = []
for value in map(float, sys.argv[1:]):
    with bentoml.models.create("infogan-generator", metadata={"selection_metric": "accuracy",
                               "selection_value": value, "accuracy": value}) as ref:
        open(ref.path_of("note.txt"), "w").write("not a generator")
    tags.append(str(ref.tag))
print(json.dumps(tags))
"""


def test_promote_keeps_the_promoted_model_when_the_new_one_is_worse(api, project):
    from pipelines.flows import promote

    proc = subprocess.run([sys.executable, "-c", FAKE_MODELS, "0.999", "0.0"], cwd=project,
                          env=tool_environ(project), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    better, worse = json.loads(proc.stdout.strip().splitlines()[-1])
    new_tag = json.loads((project / "models/package.json").read_text())["tag"]
    new_value = json.loads((project / "models/package.json").read_text())["metadata"]["selection_value"]
    assert 0.0 < new_value < 0.999

    # The service currently uses a better model: keep it.
    path = project / "models" / "promoted.json"
    path.write_text(json.dumps({"tag": better, "metric": "accuracy", "value": 0.999}))
    kept = promote(root=str(project))
    assert not kept["promote"] and kept["reason"].startswith("worse on accuracy")
    assert (kept["new_tag"], kept["new_value"], kept["current_tag"], kept["current_value"]) == \
        (new_tag, new_value, better, 0.999)
    assert json.loads(path.read_text())["tag"] == better

    # Against a worse one, the new model is promoted and the pointer records what it replaced.
    path.write_text(json.dumps({"tag": worse, "metric": "accuracy", "value": 0.0}))
    moved = promote(root=str(project))
    assert moved["promote"]
    written = json.loads(path.read_text())
    assert written["tag"] == new_tag and written["previous"] == {"tag": worse, "value": 0.0}
    assert written["value"] == new_value and written["decided_at"]


def test_retrain_and_promote_promotes_the_new_model_over_a_worse_one(api, project):
    """The scheduled flow's success path (docs/orchestration.md "Promotion"): the pipeline is
    complete, the promoted model is worse, so the packaged one is promoted. Only the pointer
    moves; the store keeps both models and its `:latest` alias is not what the service follows."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from pipelines.flows import PROMOTION_ARTIFACT, retrain_and_promote
    from pipelines.promotion import store_models

    proc = subprocess.run([sys.executable, "-c", FAKE_MODELS, "0.0"], cwd=project, env=tool_environ(project),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [worse] = json.loads(proc.stdout.strip().splitlines()[-1])  # the newest version: now `:latest`
    path = project / "models" / "promoted.json"
    path.write_text(json.dumps({"tag": worse, "metric": "accuracy", "value": 0.0}))
    package = json.loads((project / "models/package.json").read_text())
    winner = json.loads((project / "models/selected/selection.json").read_text())["winner"]

    state = retrain_and_promote(root=str(project), retries=0, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert {s["status"] for s in result["train"]["stages"]} == {"skipped"}  # up to date: nothing retrained
    decision = result["promote"]
    assert decision["promote"] and decision["reason"].startswith("better on accuracy by")
    assert (decision["new_tag"], decision["current_tag"], decision["current_value"]) == (package["tag"], worse, 0.0)
    pointer = json.loads(path.read_text())
    assert pointer == decision["pointer"]
    assert set(pointer) == {"tag", "metric", "mode", "value", "experiment", "checkpoint_sha256", "previous",
                            "reason", "decided_at"}
    assert (pointer["tag"], pointer["metric"], pointer["mode"], pointer["value"]) == \
        (package["tag"], "accuracy", "max", package["metadata"]["selection_value"])
    assert (pointer["experiment"], pointer["checkpoint_sha256"]) == ("mnist", winner["checkpoint_sha256"])
    assert pointer["previous"] == {"tag": worse, "value": 0.0} and pointer["reason"] == decision["reason"]
    stored = store_models(project, package["tag"], worse, "infogan-generator:latest")
    assert stored[package["tag"]] is not None and stored[worse] is not None
    assert stored["infogan-generator:latest"]["tag"] == worse
    # The decision is published, with both figures, as the promote subflow's artifact.
    with client() as c:
        artifacts = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[PROMOTION_ARTIFACT])))
    [published] = [a.data for a in artifacts if f"`{worse}`" in a.data]
    assert published.startswith("# Promoted: better on accuracy") and f"| new | `{package['tag']}` |" in published


def test_a_dvc_experiment_records_its_params_and_results_beside_the_baseline(api, project):
    """One sweep point (the sweep's own task: `dvc exp run --temp -n NAME -S ...`) read back as the
    sweep reads it and through `dvc exp show --json`. It changes the selection metric, so only
    select and package rerun (seconds; a seed would retrain: see the slow sweep test)."""
    from prefect import flow

    from pipelines.flows import comparison_rows, run_experiment

    env = tool_environ(project)
    # The baseline is a commit, as it would be for a user: the workspace the earlier tests left.
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "baseline for dvc exp"]):
        subprocess.run(cmd, cwd=project, env=env, check=True, capture_output=True)
    workspace = (project / "params.yaml").read_text()

    @flow(name="one-sweep-point")
    def one_point() -> dict:
        return run_experiment.with_options(retries=0)(str(project), "ci-nmi", ["pipeline.select.metric=nmi"])

    outcome = one_point()
    assert (project / "params.yaml").read_text() == workspace  # --temp: the workspace is untouched
    metrics = outcome["metrics"]
    assert metrics["_select"]["metric"] == "nmi" and metrics["_package"]["metadata"]["selection_metric"] == "nmi"
    assert metrics["_package"]["metadata"]["selection_value"] == metrics["mnist"]["nmi"]
    [row] = comparison_rows([outcome | {"status": "ok"}])
    assert (row["metric"], row["winner"], row["value"], row["rank"]) == ("nmi", "mnist", metrics["mnist"]["nmi"], 1)

    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=project, env=env, capture_output=True, text=True,
                           timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    [baseline] = [entry for entry in json.loads(shown.stdout) if entry["rev"] == head]
    [exp] = [rev["data"] for e in baseline["experiments"] for rev in e["revs"] if rev["name"] == "ci-nmi"]
    base = baseline["data"]
    params = {name: d["params"]["params.yaml"]["data"] for name, d in (("base", base), ("exp", exp))}
    assert params["base"]["pipeline"]["select"]["metric"] == "accuracy"
    assert params["exp"]["pipeline"]["select"]["metric"] == "nmi"
    params["exp"]["pipeline"]["select"]["metric"] = "accuracy"
    assert params["exp"] == params["base"]  # nothing else was set
    # Same checkpoint and evaluation (neither reran), a new selection and package record.
    assert exp["metrics"] == base["metrics"] and "accuracy" in exp["metrics"]["metrics/mnist.json"]["data"]
    for out, changed in (("runs/mnist/checkpoint.pt", False), ("models/selected", True),
                         ("models/package.json", True)):
        assert (exp["outs"][out]["hash"] != base["outs"][out]["hash"]) == changed, out


def test_scheduled_deployment_is_listed_and_a_triggered_run_completes(api, project, tmp_path):
    from prefect.deployments import run_deployment

    from pipelines.deploy import DEFAULT_CRON, FLOW_NAME

    name = f"{FLOW_NAME}/ci-weekly"
    env = tool_environ(project) | {"PREFECT_API_URL": api["url"], "PREFECT_HOME": str(api["home"])}
    env.pop("INFOGAN_PIPELINES_FAULTS", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines", "serve", "--root", str(project), "--name",
                                 "ci-weekly", "--retries", "0"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, deployment = time.monotonic() + 120, None
        while deployment is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with client() as c:
                    deployment = c.read_deployment_by_name(name)
            except Exception:  # noqa: BLE001 - not registered yet
                time.sleep(1)
        assert deployment is not None, log.read_text(errors="replace")[-3000:]
        assert [s.schedule.cron for s in deployment.schedules] == [DEFAULT_CRON]
        assert all(s.active for s in deployment.schedules)
        assert deployment.parameters["root"] == str(project)

        start = time.perf_counter()
        run = run_deployment(name, timeout=300, poll_interval=1, as_subflow=False)
        MEASURED["served_noop_run_s"] = time.perf_counter() - start
        assert run.state.is_completed(), (run.state, log.read_text(errors="replace")[-3000:])
    finally:
        _stop(proc)
    print("\nprefect timings (s): " + ", ".join(f"{k}={v:.1f}" for k, v in MEASURED.items()))


def test_a_train_run_no_worker_picks_up_is_cancelled_and_fails_the_flow(api, project):
    """No worker polls this pool: the run is cancelled after the start timeout and the flow
    fails with a message that says what to start; the stages after train never run."""
    from pipelines.flows import train_pipeline
    from pipelines.deploy import deploy_train_stage

    lock_path = project / "dvc.lock"
    lock = lock_path.read_text() if lock_path.exists() else None  # when this test runs alone
    params = (project / "params.yaml").read_text()
    unknown = train_pipeline(root=str(project), overrides=["train.seed=9"], train_deployment="train-stage/nowhere",
                             return_state=True)
    assert unknown.is_failed()
    assert "'train-stage/nowhere' is not registered" in str(unknown.result(raise_on_failure=False))
    assert (project / "params.yaml").read_text() == params  # checked before the overrides were written

    idle = deploy_train_stage(pool="ci-idle", name="idle")
    state = train_pipeline(root=str(project), retries=0, train_deployment=idle, train_start_timeout_s=3,
                           return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "no worker of pool 'ci-idle' picked up" in message and "prefect worker start --pool ci-idle" in message
    with client() as c:
        [cancelled] = _read_flow_runs(c.read_deployment_by_name(idle).id)
    assert cancelled.state.is_cancelled()
    if lock is not None:
        assert lock_path.read_text() == lock


@pytest.mark.slow
def test_sweep_runs_each_point_as_a_dvc_experiment_and_compares_them(api, project):
    """Two grid points, one at a time (~90 s each here): `pytest -m slow tests/test_pipelines.py`."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from pipelines.flows import SWEEP_ARTIFACT, sweep

    workspace_params = (project / "params.yaml").read_text()
    result = sweep(root=str(project), seeds=[1], lambda_cat=[0.0, 1.0], prefix="ci", retries=0)
    rows = {r["experiment"]: r for r in result["rows"]}
    assert set(rows) == {"ci-s1-lc0", "ci-s1-lc1"}
    assert all(r["status"] == "ok" and 0.0 <= r["value"] <= 1.0 for r in rows.values())
    assert sorted(r["rank"] for r in rows.values()) == [1, 2]
    assert rows["ci-s1-lc0"]["overrides"] == "train.seed=1 train.lambda_cat=0.0"
    # The experiments live in DVC (`dvc exp show`); the workspace is untouched (--temp).
    shown = subprocess.run(["dvc", "exp", "list", "--name-only"], cwd=project, env=tool_environ(project),
                           capture_output=True, text=True, timeout=120).stdout.split()
    assert {"ci-s1-lc0", "ci-s1-lc1"} <= set(shown)
    assert (project / "params.yaml").read_text() == workspace_params
    with client() as c:
        [artifact] = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[SWEEP_ARTIFACT])))
    assert artifact.type == "table" and "ci-s1-lc1" in str(artifact.data)

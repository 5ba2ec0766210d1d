"""``python -m pipelines <train|sweep|promote|retrain|serve|deploy-train> --help``.

Parameters are checked (pipelines.settings: infogan's pydantic models for anything that lands
in params.yaml) before Prefect starts, so a typo costs no server start-up.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

FLOWS = {
    "train": "run the DVC pipeline stage by stage (one Prefect task per `dvc repro -s <stage>`)",
    "sweep": "a seed x lambda grid as DVC experiments (`dvc exp run --temp`), one at a time, compared",
    "promote": "point models/promoted.json at the new generator if it beats the promoted one",
    "retrain": "train, then promote (what the scheduled deployment runs)",
    "serve": "register the scheduled retrain-and-promote deployment and run its flow runs (blocks)",
    "deploy-train": "register train-stage/<name> in a process work pool, for a (GPU) worker to run train stages",
}


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description="Prefect flows over the DVC pipeline")
    sub = parser.add_subparsers(dest="flow", required=True)
    for name, text in FLOWS.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--root", default=".", help="the project folder with dvc.yaml and params.yaml (default: .)")
        if name in ("train", "retrain", "serve"):
            p.add_argument("-e", "--experiment", dest="experiments", action="append", default=None,
                           help="experiment in params.yaml (repeatable; default: all, as `dvc repro`)")
        if name in ("train", "retrain", "serve", "sweep"):
            p.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                           help="set a params.yaml value first, e.g. -S train.epochs=3 (repeatable; validated)")
            p.add_argument("--retries", type=int, default=1 if name == "sweep" else 2,
                           help="retries of a transiently failing stage/experiment")
            p.add_argument("--retry-delay", dest="retry_delay_s", type=float, default=10.0,
                           help="seconds between retries (default: 10)")
        if name == "train":
            p.add_argument("--force", action="store_true", help="rerun every stage even if DVC finds it unchanged")
        if name in ("train", "retrain", "serve"):
            p.add_argument("--train-deployment", default=None, metavar="FLOW/DEPLOYMENT",
                           help="run train@<e> stages as runs of this work-pool deployment, e.g. train-stage/gpu "
                                "(see deploy-train); the other stages run here")
            p.add_argument("--train-root", default=None,
                           help="the project folder as the worker sees it (default: --root; a shared mount)")
            p.add_argument("--train-start-timeout", dest="train_start_timeout_s", type=float, default=600.0,
                           help="cancel and fail a train run no worker picks up within this many s (default: 600)")
        if name == "deploy-train":
            from .workpool import DEFAULT_DEPLOYMENT, DEFAULT_POOL
            p.add_argument("--pool", default=DEFAULT_POOL, help=f"process work pool (default: {DEFAULT_POOL}; "
                                                                "created if missing)")
            p.add_argument("--name", default=DEFAULT_DEPLOYMENT, help=f"deployment name (default: {DEFAULT_DEPLOYMENT})")
        if name == "sweep":
            p.add_argument("--seeds", type=_ints, default=[], help="comma-separated train.seed values, e.g. 0,1,2")
            p.add_argument("--lambda-cat", type=_floats, default=[], help="train.lambda_cat values, e.g. 0,1")
            p.add_argument("--lambda-cont", type=_floats, default=[], help="train.lambda_cont values")
            p.add_argument("-j", "--jobs", type=int, default=1, help="experiments at a time (default: 1)")
            p.add_argument("--prefix", default=None, help="experiment name prefix (default: sweep-<UTC time>)")
        if name in ("promote", "retrain", "serve"):
            p.add_argument("--min-improvement", type=float, default=0.0,
                           help="the new model must beat the promoted one by more than this (default: 0)")
        if name == "promote":
            p.add_argument("--force", action="store_true", help="promote without comparing (pipeline must be complete)")
        if name == "serve":
            from .deploy import DEFAULT_CRON, DEFAULT_TIMEZONE, DEPLOYMENT
            p.add_argument("--name", default=DEPLOYMENT, help=f"deployment name (default: {DEPLOYMENT})")
            p.add_argument("--cron", default=DEFAULT_CRON, help=f"schedule (default: '{DEFAULT_CRON}', weekly)")
            p.add_argument("--timezone", default=DEFAULT_TIMEZONE, help=f"of the cron (default: {DEFAULT_TIMEZONE})")
            p.add_argument("--no-local-server", action="store_true",
                           help="with PREFECT_API_URL unset, do not start a local server on 127.0.0.1:4200")
    return parser


def _check(args: dict) -> None:
    """Validate before Prefect is imported (it reads PREFECT_* settings once, at import) and
    started; the flows validate again, since deployments and the UI call them too."""
    from .settings import PromoteRequest, SweepRequest, TrainRequest

    root = Path(args["root"])
    flow = args["flow"]
    if flow in ("train", "retrain", "serve"):
        TrainRequest(root=root, experiments=args["experiments"], overrides=args["overrides"],
                     retries=args["retries"], retry_delay_s=args["retry_delay_s"],
                     train_deployment=args["train_deployment"], train_root=args["train_root"],
                     train_start_timeout_s=args["train_start_timeout_s"])
    if flow == "sweep":
        SweepRequest(root=root, seeds=args["seeds"], lambda_cat=args["lambda_cat"], lambda_cont=args["lambda_cont"],
                     overrides=args["overrides"], jobs=args["jobs"], prefix=args["prefix"], retries=args["retries"],
                     retry_delay_s=args["retry_delay_s"])
    if flow in ("promote", "retrain", "serve"):
        PromoteRequest(root=root, min_improvement=args["min_improvement"], force=args.get("force", False))


def _messages(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        out = []
        for item in exc.errors():
            loc = ".".join(str(p) for p in item["loc"])
            msg = item["msg"].removeprefix("Value error, ")
            out.append(f"{loc}: {msg}" if loc else msg)
        return "\n".join(out)
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    root = Path(args["root"]).resolve()
    args["root"] = str(root)
    # Tool state inside the project (PREFECT_HOME, BENTOML_HOME, ...) before Prefect reads settings.
    from infogan.env import apply_tool_env

    apply_tool_env(root)
    try:
        _check(args)
    except Exception as exc:  # noqa: BLE001 - any invalid parameter: say why, exit 2
        print(f"error: {_messages(exc)}", file=sys.stderr)
        return 2

    flow = args.pop("flow")
    server = None
    if flow == "serve":
        from . import deploy

        if not os.environ.get("PREFECT_API_URL"):
            local = f"http://{deploy.LOCAL_HOST}:{deploy.LOCAL_PORT}/api"
            if not deploy.healthy(local):
                if args["no_local_server"]:
                    print("error: PREFECT_API_URL is unset and no server answers at " + local, file=sys.stderr)
                    return 2
                print(f"starting a local Prefect server at {local} (log: $PREFECT_HOME/server.log)", flush=True)
                local, server = deploy.start_local_server(root)
            os.environ["PREFECT_API_URL"] = local
        params = {"experiments": args["experiments"], "overrides": args["overrides"], "retries": args["retries"],
                  "retry_delay_s": args["retry_delay_s"], "min_improvement": args["min_improvement"],
                  "train_deployment": args["train_deployment"], "train_root": args["train_root"],
                  "train_start_timeout_s": args["train_start_timeout_s"]}
        try:
            from prefect.schedules import Cron  # Prefect's settings are read now, with PREFECT_API_URL set

            try:
                Cron(args["cron"], timezone=args["timezone"])
            except ValueError as exc:
                print(f"error: {_messages(exc)}", file=sys.stderr)
                return 2
            deploy.serve(root, name=args["name"], cron=args["cron"], timezone=args["timezone"], parameters=params)
        finally:
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
        return 0

    if flow == "deploy-train":
        if not os.environ.get("PREFECT_API_URL"):
            print("error: set PREFECT_API_URL to the Prefect server that both machines use", file=sys.stderr)
            return 2
        from .deploy import deploy_train_stage

        try:
            name = deploy_train_stage(pool=args["pool"], name=args["name"])
        except Exception as exc:  # noqa: BLE001 - e.g. an existing pool of another type, no server
            print(f"error: {_messages(exc)}", file=sys.stderr)
            return 1
        print(f"registered {name} in work pool {args['pool']!r}; on this machine run:\n"
              f"  prefect worker start --pool {args['pool']}\n"
              f"and anywhere: python -m pipelines train --train-deployment {name}")
        return 0

    from . import flows

    call = {"train": flows.train_pipeline, "sweep": flows.sweep, "promote": flows.promote,
            "retrain": flows.retrain_and_promote}[flow]
    kwargs = {k: v for k, v in args.items() if k in call.fn.__code__.co_varnames[:call.fn.__code__.co_argcount]}
    try:
        result = call(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the flow's own failure message; Prefect logged the details
        print(f"error: {flow} failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

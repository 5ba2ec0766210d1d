"""``python -m infogan <command>``: each command is a plain function tests call directly.

Every command reads ``params.yaml`` (``--params``), picks an experiment
(``--experiment``; its entry overrides the defaults) and takes ``-S key=value``
overrides, validated before any work starts.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError, InfoGANConfig
from .params import experiment_names, load_config
from .errors import CONFIG_EXIT, DATA_EXIT, PREREQUISITE_EXIT, DataError, PrerequisiteError
from .env import apply_tool_env

RUNS_DIR = "runs"


class LaunchError(RuntimeError):
    """A child command (torchrun) failed; its own output says why."""


def run_dir(experiment: str | None, runs_dir: str = RUNS_DIR, run_name: str | None = None) -> Path:
    return Path(runs_dir) / (run_name or experiment or "default")


def resolve(params: str, experiment: str | None, overrides: list[str] | None) -> tuple[InfoGANConfig, str | None]:
    if experiment is None:
        names = experiment_names(params, enabled_only=True)
        experiment = names[0] if names else None
    return load_config(params, experiment, overrides), experiment


def prepare(params: str = "params.yaml", experiment: str | None = None, overrides: list[str] | None = None,
            runs_dir: str = RUNS_DIR, run_name: str | None = None) -> dict:
    from . import data

    cfg, experiment = resolve(params, experiment, overrides)
    summary = data.prepare(cfg.data)
    print(json.dumps(summary, indent=2))
    return summary


def train(params: str = "params.yaml", experiment: str | None = None, overrides: list[str] | None = None,
          runs_dir: str = RUNS_DIR, run_name: str | None = None, resume: bool = False,
          stop_after_epochs: int | None = None) -> dict:
    from . import train as training

    from .distributed import launched_by_torchrun

    cfg, experiment = resolve(params, experiment, overrides)
    folder = run_dir(experiment, runs_dir, run_name)
    if cfg.train.nproc > 1 and not launched_by_torchrun():
        return _torchrun(cfg.train.nproc, folder, params, experiment, overrides, runs_dir, run_name, resume,
                         stop_after_epochs)
    return training.train(cfg, folder, resume=resume, stop_after_epochs=stop_after_epochs, experiment=experiment)


def _torchrun(nproc: int, folder: Path, params, experiment, overrides, runs_dir, run_name, resume,
              stop_after_epochs) -> dict:
    """Re-run this same command under torchrun (one process per rank; rank 0 writes)."""
    import subprocess

    args = ["--params", params, "--runs-dir", runs_dir]
    args += ["-e", experiment] if experiment else []
    args += ["--run-name", run_name] if run_name else []
    for o in overrides or []:
        args += ["-S", o]
    args += ["--resume"] if resume else []
    args += ["--stop-after-epochs", str(stop_after_epochs)] if stop_after_epochs is not None else []
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "infogan", "train", *args]
    print(f"[train] launching {nproc} processes: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise LaunchError(f"torchrun training failed with exit code {proc.returncode} (see the rank logs above)")
    return json.loads((folder / "train_summary.json").read_text())


def evaluate(params: str = "params.yaml", experiment: str | None = None, overrides: list[str] | None = None,
             runs_dir: str = RUNS_DIR, run_name: str | None = None, out: str | None = None) -> dict:
    from . import evaluate as evaluation

    cfg, experiment = resolve(params, experiment, overrides)
    folder = run_dir(experiment, runs_dir, run_name)
    result = evaluation.evaluate(cfg, folder / "checkpoint.pt", out or folder / "metrics.json",
                                 experiment=experiment)
    print(json.dumps({k: v for k, v in result.items() if k not in ("categorical",)}, indent=2))
    return result


def traverse(params: str = "params.yaml", experiment: str | None = None, overrides: list[str] | None = None,
             runs_dir: str = RUNS_DIR, run_name: str | None = None, out: str | None = None) -> dict:
    from . import traverse as traversal
    from .checkpoint import select_device

    cfg, experiment = resolve(params, experiment, overrides)
    folder = run_dir(experiment, runs_dir, run_name)
    out_dir = Path(out) if out else folder / "traversals"
    manifest = traversal.traverse(cfg.traverse, folder, out_dir, select_device(cfg.train.device),
                                  config=cfg, experiment=experiment)
    print(f"[traverse] wrote {len(manifest['files'])} files to {out_dir}")
    return manifest


def validate(params: str = "params.yaml", experiment: str | None = None, overrides: list[str] | None = None,
             runs_dir: str = RUNS_DIR, run_name: str | None = None) -> dict:
    names = [experiment] if experiment else (experiment_names(params) or [None])
    configs = {str(n): load_config(params, n, overrides).model_dump(mode="json") for n in names}
    print(f"[validate] {params}: {len(configs)} experiment config(s) valid: {', '.join(configs)}")
    return configs


def select(params: str = "params.yaml", metrics_dir: str = "metrics", out: str = "models/selected") -> dict:
    from .params import load_pipeline_config
    from .select import select as select_generator

    pc = load_pipeline_config(params)
    files = {name: Path(metrics_dir) / f"{name}.json" for name in experiment_names(params)}
    record = select_generator(pc.select, files, out)
    winner = record["winner"]
    print(f"[select] {winner['experiment']} wins on {record['metric']} = {winner['value']:.4f} "
          f"({len(record['ranking'])} candidate(s)); wrote {out}")
    return record


def package(params: str = "params.yaml", selection_dir: str = "models/selected",
            record: str = "models/package.json") -> dict:
    from .params import load_pipeline_config, read_params
    from .package import package as package_generator

    pc = load_pipeline_config(params)
    record = package_generator(pc.package, selection_dir, params=read_params(params), record_path=record)
    print(f"[package] {record['tag']} is in the BentoML store ({record['bentoml_home']}) "
          f"and exported {record['export_path']}")
    return record


def config_docs(out: str = "docs/configuration.md", check: bool = False) -> bool:
    from .config_docs import write

    current = write(out, check=check)
    if check and not current:
        raise ConfigError(f"{out} is stale: run `python -m infogan config-docs`")
    print(f"[config-docs] {out} is current" if current else f"[config-docs] wrote {out}")
    return current


COMMANDS = {"prepare": prepare, "train": train, "evaluate": evaluate, "traverse": traverse, "validate": validate,
            "select": select, "package": package, "config-docs": config_docs}
# The module each command's work lives in (tests/test_structure.py derives dvc.yaml's deps from it).
COMMAND_MODULES = {"prepare": "infogan.data", "train": "infogan.train", "evaluate": "infogan.evaluate",
                   "traverse": "infogan.traverse", "validate": "infogan.params", "select": "infogan.select",
                   "package": "infogan.package", "config-docs": "infogan.config_docs"}
PER_EXPERIMENT = ("prepare", "train", "evaluate", "traverse", "validate")
HELP = {
    "prepare": "locate, verify (SHA-256) and convert the dataset into data/prepared/",
    "train": "train G, D and Q; checkpoint every epoch (use --resume after an interruption)",
    "evaluate": "score the checkpoint: Q accuracy/NMI, L_I vs H(c), continuous-code effects, FID",
    "traverse": "render per-code traversal grids, GIFs over training snapshots and a manifest",
    "validate": "check params.yaml (all experiments) and exit",
    "select": "rank the experiments' generators on pipeline.select.metric; write the winner to models/selected",
    "package": "save the selected generator into the BentoML model store and export a .bentomodel file",
    "config-docs": "write docs/configuration.md from the schema's field descriptions (--check: only compare)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infogan", description="InfoGAN pipeline commands",
        epilog=f"exit codes: 0 done; {CONFIG_EXIT} bad params or overrides; {DATA_EXIT} missing or corrupt data, "
               f"checkpoint or model file; {PREREQUISITE_EXIT} a prerequisite is missing (run the command the "
               "message names, or a device that is not there); 1 anything else (a bug: please report it)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in COMMANDS.items():
        p = sub.add_parser(name, help=HELP[name], description=HELP[name])
        if name != "config-docs":  # the one command that reads no params file
            p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        if name == "select":
            p.add_argument("--metrics-dir", default="metrics", help="folder of <experiment>.json (default: metrics)")
            p.add_argument("--out", default="models/selected", help="output folder (default: models/selected)")
        if name == "package":
            p.add_argument("--selection-dir", default="models/selected",
                           help="the select stage's output (default: models/selected)")
            p.add_argument("--record", default="models/package.json",
                           help="where to write the packaged model's tag and metadata (default: models/package.json)")
        if name == "config-docs":
            p.add_argument("--out", default="docs/configuration.md", help="where to write (default: docs/configuration.md)")
            p.add_argument("--check", action="store_true", help="exit 2 when the file is not current; write nothing")
        if name not in PER_EXPERIMENT:
            continue
        p.add_argument("-e", "--experiment", default=None,
                       help="experiment in params.yaml's 'experiments' (default: the first enabled one)")
        p.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a param, e.g. -S train.epochs=3 (repeatable)")
        p.add_argument("--runs-dir", default=RUNS_DIR, help="where run folders live (default: runs)")
        p.add_argument("--run-name", default=None, help="run folder name under --runs-dir (default: the experiment)")
        if name == "train":
            p.add_argument("--resume", action="store_true", help="continue from runs/<experiment>/checkpoint.pt")
            p.add_argument("--stop-after-epochs", type=int, default=None,
                           help="train at most this many more epochs, then stop (the run stays resumable)")
        if name == "evaluate":
            p.add_argument("--out", default=None, help="metrics JSON path (default: runs/<experiment>/metrics.json)")
        if name == "traverse":
            p.add_argument("--out", default=None, help="output folder (default: runs/<experiment>/traversals)")
    return parser


def main(argv: list[str] | None = None) -> int:
    apply_tool_env()
    args = vars(build_parser().parse_args(argv))
    command = COMMANDS[args.pop("command")]
    try:
        command(**args)
    except ConfigError as exc:
        return _fail(exc, CONFIG_EXIT)
    except DataError as exc:
        return _fail(exc, DATA_EXIT)
    except (PrerequisiteError, FileNotFoundError) as exc:
        return _fail(exc, PREREQUISITE_EXIT)
    except LaunchError as exc:
        return _fail(exc, 1)
    return 0


def _fail(exc: Exception, code: int) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return code

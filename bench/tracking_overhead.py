"""Wall-time cost of W&B tracking: the same short training with tracking disabled vs offline.

Each measurement is a fresh process (so wandb's import, its service start, the run's init,
the model artifact and finish all count) training the project's mnist config for a fixed
number of steps at the default ``log_every``; modes alternate, and the median of the repeats
is compared. Writes ``bench/results/tracking_overhead.json``.

    python bench/tracking_overhead.py --data ../shared/datasets/mnist --steps 200 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTE = ("overhead_wall_pct/overhead_loop_pct compare whole runs and are only meaningful on a quiet "
        "machine; overhead_direct_s counts what tracking itself costs (time inside RunLogger's calls "
        "beyond the disabled mode's file writes: wandb import, init, logging, the model artifact, finish; "
        "plus the CPU of W&B's service process). It is a fixed cost per training call, nothing per step "
        "(W&B is called once per epoch, outside the timed loop).")


def one(mode: str, data: str, steps: int, batch: int, epochs: int, prepared: str, work: str,
        extra: list[str]) -> dict:
    """Runs in the child: train once, print the timings as JSON."""
    sys.path.insert(0, str(ROOT / "src"))
    from infogan.params import config_from_dict, read_params
    from infogan.data import prepare
    from infogan.train import train

    per_epoch = steps // epochs
    overrides = [f"data.local_dirs=[{data}]", "data.download=false", f"data.prepared_dir={prepared}",
                 f"data.train_subset={per_epoch * batch}", f"train.batch_size={batch}", f"train.epochs={epochs}",
                 "train.progress_bar=false", *extra, f"tracking.wandb.mode={mode}"]
    cfg = config_from_dict(read_params(ROOT / "params.yaml"), "mnist", overrides)
    prepare(cfg.data)
    spent = instrument_logger()
    t0 = time.perf_counter()
    summary = train(cfg, Path(work) / f"run_{mode}", experiment="mnist")
    wall = time.perf_counter() - t0
    return {"mode": mode, "wall_s": wall, "loop_s": sum(h["seconds"] for h in summary["history"]),
            "steps": summary["steps"], "log_every": cfg.train.log_every,
            "logger_calls_s": dict(spent), "logger_total_s": sum(spent.values()),
            "tracking_service_cpu_s": service_cpu_seconds()}


def instrument_logger() -> dict[str, float]:
    """Accumulate the wall time spent inside RunLogger's calls (file writes + W&B), per method."""
    from infogan.tracking import RunLogger

    spent: dict[str, float] = {}
    for name in ("start", "log_steps", "log_epoch", "log_model", "finish"):
        original = getattr(RunLogger, name)

        def timed(self, *a, _original=original, _name=name, **k):
            t = time.perf_counter()
            try:
                return _original(self, *a, **k)
            finally:
                spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - t
        setattr(RunLogger, name, timed)
    return spent


def service_cpu_seconds() -> float:
    """CPU seconds used by this process's children (wandb's service process, when it ran)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def measure(mode: str, args, work: str) -> dict:
    env = dict(os.environ)
    for key, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"),
                     ("WANDB_CONFIG_DIR", "config")):
        env[key] = str(Path(work) / "wandb_home" / sub)
    env.pop("WANDB_MODE", None)
    env.pop("WANDB_API_KEY", None)
    env["WANDB_SILENT"] = "true"
    cmd = [sys.executable, __file__, "--one", mode, "--data", args.data, "--steps", str(args.steps),
           "--batch", str(args.batch), "--epochs", str(args.epochs), "--prepared", args.prepared, "--work", work,
           *[a for o in args.overrides for a in ("-S", o)]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    init = re.search(r"init ([0-9.]+) s", proc.stderr)
    result["wandb_init_s"] = float(init.group(1)) if init else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--steps", type=int, default=200, help="training steps per run (fixed)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="the steps are split over this many epochs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prepared", default=str(ROOT / "data" / "bench_prepared"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "tracking_overhead.json"))
    parser.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="another config override for both modes, e.g. -S data.test_subset=100 (repeatable)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.data, args.steps, args.batch, args.epochs, args.prepared, args.work,
                             args.overrides)))
        return

    runs: dict[str, list[dict]] = {"disabled": [], "offline": []}
    with tempfile.TemporaryDirectory(prefix="tracking_bench_") as work:
        for i in range(args.repeats):
            for mode in (("disabled", "offline") if i % 2 == 0 else ("offline", "disabled")):
                r = measure(mode, args, work)
                runs[mode].append(r)
                print(f"[bench] {mode:8s} wall {r['wall_s']:.2f} s  loop {r['loop_s']:.2f} s  "
                      f"logger {r['logger_total_s']:.2f} s  service CPU {r['tracking_service_cpu_s']:.2f} s"
                      + (f"  W&B init {r['wandb_init_s']:.2f} s" if r["wandb_init_s"] else ""), flush=True)
    keys = ("wall_s", "loop_s", "logger_total_s", "tracking_service_cpu_s")
    med = {m: {k: statistics.median(r[k] for r in rs) for k in keys} for m, rs in runs.items()}
    # Direct accounting, immune to other load on the machine: extra time inside the logger's
    # calls (W&B import/init/log/artifact/finish) plus the CPU the W&B service process burned
    # (an upper bound on what it took from training, which it shares the cores with).
    direct_s = (med["offline"]["logger_total_s"] - med["disabled"]["logger_total_s"]
                + med["offline"]["tracking_service_cpu_s"])
    inits = [r["wandb_init_s"] for r in runs["offline"] if r["wandb_init_s"] is not None]
    result = {
        "steps": args.steps, "batch_size": args.batch, "epochs": args.epochs, "overrides": args.overrides,
        "log_every": runs["disabled"][0]["log_every"], "repeats": args.repeats,
        "median": med,
        "overhead_wall_pct": 100 * (med["offline"]["wall_s"] / med["disabled"]["wall_s"] - 1),
        "overhead_loop_pct": 100 * (med["offline"]["loop_s"] / med["disabled"]["loop_s"] - 1),
        "overhead_wall_s": med["offline"]["wall_s"] - med["disabled"]["wall_s"],
        "overhead_direct_s": direct_s,
        "overhead_direct_pct": 100 * direct_s / med["disabled"]["wall_s"],
        "wandb_init_s_median": statistics.median(inits) if inits else None,
        "note": NOTE,
        "runs": runs,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m_at_end": os.getloadavg()[0]},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"[bench] tracking overhead (offline vs disabled, median of {args.repeats}): "
          f"{result['overhead_wall_pct']:+.1f}% wall ({result['overhead_wall_s']:+.2f} s), "
          f"{result['overhead_loop_pct']:+.1f}% in the training loop; direct accounting "
          f"{result['overhead_direct_pct']:.1f}% ({direct_s:.2f} s); wrote {args.out}")


if __name__ == "__main__":
    main()

"""Accuracy per epoch over seeds of one recipe: per-seed rows, median / min / mean / best, and
the images and wall seconds each seed took to reach each target. Writes JSON, prints Markdown.

    python bench/seed_table.py --target 0.95 --target 0.985 \
        --out bench/results/mnist_seeds/table.json runs/mnist_s0 runs/mnist_s1 runs/mnist_s2

Each source is a training run folder (its ``logs/epochs.json``) or an epochs JSON file, one
seed each. Labels reach these figures only through the accuracy that training's per-epoch
evaluation wrote: the table scores seeds, it chooses nothing. The time to a target is
``elapsed_s`` since the start of training, beside the matmul peak of the machine that trained.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from infogan.evaluate import time_to_accuracy
from infogan.io import atomic_write_json


def epochs_file(source: str) -> Path:
    path = Path(source)
    path = path / "logs" / "epochs.json" if path.is_dir() else path
    if not path.is_file():
        raise SystemExit(f"no epochs file at {path} (give a run folder or an epochs JSON file)")
    return path


def seed_row(source: str, targets: list[float]) -> dict:
    try:
        history = json.loads(epochs_file(source).read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"{source}: not JSON ({err})") from None
    if not isinstance(history, list) or not all(isinstance(r, dict) and "epoch" in r for r in history):
        raise SystemExit(f"{source}: not a list of epoch records (logs/epochs.json)")
    accuracy = {int(r["epoch"]): r["accuracy"] for r in history if r.get("accuracy") is not None}
    if not accuracy:
        raise SystemExit(f"{source}: no epoch has an accuracy (was train.eval_each_epoch off, or the data unlabelled?)")
    return {"source": source, "accuracy": accuracy,
            "time_to": {str(t): time_to_accuracy(history, t) for t in targets}}


def summary(rows: list[dict]) -> dict[int, dict]:
    """Per epoch that every seed reached: median, min, mean and max accuracy over the seeds."""
    common = sorted(set.intersection(*(set(r["accuracy"]) for r in rows)))
    out = {}
    for epoch in common:
        values = [r["accuracy"][epoch] for r in rows]
        out[epoch] = {"median": statistics.median(values), "min": min(values),
                      "mean": round(statistics.fmean(values), 4), "max": max(values), "seeds": len(values)}
    return out


def markdown(rows: list[dict], per_epoch: dict[int, dict]) -> str:
    epochs = sorted(set().union(*(r["accuracy"] for r in rows)))
    lines = ["| seed run | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
             "| --- |" + " --- |" * len(epochs)]
    for r in rows:
        cells = [f"{100 * r['accuracy'][e]:.1f}" if e in r["accuracy"] else "-" for e in epochs]
        lines.append(f"| {r['source']} | " + " | ".join(cells) + " |")
    for stat in ("median", "min", "mean", "max"):
        cells = [f"{100 * per_epoch[e][stat]:.1f}" if e in per_epoch else "-" for e in epochs]
        lines.append(f"| **{stat}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="run folders or epochs JSON files, one seed each")
    parser.add_argument("--target", type=float, action="append", default=[],
                        help="an accuracy to time each seed to (repeatable; default 0.95)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    targets = args.target or [0.95]
    if not all(0 < t <= 1 for t in targets):
        raise SystemExit(f"--target must be an accuracy in (0, 1], got {targets}")
    rows = [seed_row(s, targets) for s in args.sources]
    per_epoch = summary(rows)
    last = max(per_epoch) if per_epoch else None
    best = max(rows, key=lambda r: r["accuracy"][last])["source"] if last else None
    atomic_write_json(Path(args.out), {"seeds": rows, "per_epoch": per_epoch, "last_common_epoch": last,
                                       "best_seed_at_last_common_epoch": best})
    print(markdown(rows, per_epoch))
    for r in rows:
        for t, reached in r["time_to"].items():
            where = "not reached"
            if reached["reached"]:
                where = f"reached at epoch {reached['epoch']}, {reached['images_seen']} images"
                if reached["elapsed_s"] is not None:  # older runs did not record wall time
                    where += f", {reached['elapsed_s']} s (matmul peak {reached['matmul_peak_gflops']} GFLOP/s)"
            print(f"{r['source']}: {float(t):.1%} {where}")


if __name__ == "__main__":
    main()

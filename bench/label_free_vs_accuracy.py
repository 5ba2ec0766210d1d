"""Does the label-free figure ``select`` ranks on order checkpoints as accuracy does? Writes JSON.

    python bench/label_free_vs_accuracy.py --params params.yaml --experiment mnist \
        --out bench/results/cheap_terms/label_free_vs_accuracy.json runs/*/checkpoint.pt

Per checkpoint, with the evaluate stage's settings (``evaluate.seed``, BatchNorm calibration,
``train.augment``): ``label_free.paired_information_fraction`` (no labels) and Q's accuracy and
NMI on the real test images (labels, to score only); then Spearman's rank correlation of the
two over the checkpoints.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from scipy.stats import spearmanr

from infogan.checkpoint import load_checkpoint, rebuild_models
from infogan.data import load_split
from infogan.evaluate import label_free_paired_information, real_reader
from infogan.io import atomic_write_json
from infogan.metrics import q_predictions, scores_of_predictions
from infogan.params import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--experiment", default="mnist", help="whose data and evaluate settings to use")
    parser.add_argument("--set", "-S", action="append", default=[], help="override a param (KEY=VALUE)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cfg = load_config(args.params, args.experiment, args.set)
    ec, device = cfg.evaluate, torch.device("cpu")
    test, train = load_split(cfg.data, "test"), load_split(cfg.data, "train")
    rows = []
    for path in args.checkpoints:
        ckpt = load_checkpoint(path, device)
        _, d, spec = rebuild_models(ckpt, device)
        d_real = real_reader(d, train.images, ec, device)  # once, for both figures (as evaluate does)
        paired = label_free_paired_information(cfg, spec, d_real, test.images, device)
        (score,) = scores_of_predictions(spec, q_predictions(spec, d_real, test.images, device, ec.batch_size),
                                         test.labels)[:1]
        rows.append({"checkpoint": path, "epoch": ckpt.get("epoch"), "paired_information_fraction":
                     paired[0]["fraction"], "accuracy": score["accuracy"], "nmi": round(score["nmi"], 4)})
        print(json.dumps(rows[-1]), flush=True)
    rho = None
    if len(rows) >= 3:  # a rank correlation of fewer says nothing
        rho = round(float(spearmanr([r["paired_information_fraction"] for r in rows],
                                    [r["accuracy"] for r in rows]).statistic), 3)
    atomic_write_json(Path(args.out), {"spearman_accuracy": rho, "checkpoints": rows})
    print(f"Spearman (label-free figure, accuracy) over {len(rows)} checkpoints: {rho}")


if __name__ == "__main__":
    main()

"""Throughput of full InfoGAN training steps (D, then G+Q), in one run: the step of every
experiment in params.yaml exactly as configured (every objective term active, as in its last
epoch), the paper's plain step (no label-free terms), and a straightforward version of the
plain step (fully connected layers as 7x7 Conv2d/ConvTranspose2d, images fed by a DataLoader
with per-sample transforms). Writes JSON with images/s, FLOPs per image and the fraction of
this machine's fp32 matmul peak, measured in the same run.

    python bench/train_throughput.py --data ../shared/datasets/mnist --out bench/results/throughput.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from infogan.data import load_idx_folder, prepare
from infogan.io import atomic_write_json
from infogan.latent import LatentSpec
from infogan.machine import device_name, matmul_peak_gflops
from infogan.objective import d_loss, g_loss, info_nll
from infogan.params import config_from_dict, read_params
from infogan.train import Trainer


# ----------------------------------------------------------------------------- baseline
class ConvGenerator(nn.Module):
    def __init__(self, in_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(in_dim, 1024, 1, bias=False), nn.BatchNorm2d(1024), nn.ReLU(True),
            nn.ConvTranspose2d(1024, 128, 7, bias=False), nn.BatchNorm2d(128), nn.ReLU(True),
            nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh())

    def forward(self, x):
        return self.net(x.view(x.shape[0], -1, 1, 1))


class ConvDiscriminator(nn.Module):
    def __init__(self, q_out: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.1, True),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.1, True),
            nn.Conv2d(128, 1024, 7, bias=False), nn.BatchNorm2d(1024), nn.LeakyReLU(0.1, True))
        self.d_head = nn.Conv2d(1024, 1, 1)
        self.q_head = nn.Sequential(nn.Conv2d(1024, 128, 1, bias=False), nn.BatchNorm2d(128),
                                    nn.LeakyReLU(0.1, True), nn.Conv2d(128, q_out, 1))


class PerSampleDataset(torch.utils.data.Dataset):
    """What torchvision's MNIST + ToTensor + Normalize does per item: PIL image -> float tensor."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.images[i], mode="L")
        x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).div_(255).unsqueeze(0)
        return (x - 0.5) / 0.5


def baseline_steps(images: np.ndarray, spec: LatentSpec, batch: int, steps: int, warmup: int) -> float:
    g, d = ConvGenerator(spec.input_dim), ConvDiscriminator(spec.q_output_dim)
    opt_d = torch.optim.Adam(list(d.body.parameters()) + list(d.d_head.parameters()), 2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(list(g.parameters()) + list(d.q_head.parameters()), 1e-3, betas=(0.5, 0.999))
    loader = torch.utils.data.DataLoader(PerSampleDataset(images), batch_size=batch, shuffle=True, drop_last=True)
    it = iter(loader)
    t0 = None
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        real = next(it)
        codes = spec.sample(batch)
        fake = g(spec.assemble(codes))
        opt_d.zero_grad()
        real_logit = d.d_head(d.body(real)).view(-1)
        fake_logit = d.d_head(d.body(fake.detach())).view(-1)
        d_loss(real_logit, fake_logit).backward()
        opt_d.step()
        opt_g.zero_grad()
        h = d.body(fake)
        q = d.q_head(h).flatten(1)
        terms = info_nll(spec, q, codes)
        (g_loss(d.d_head(h).view(-1)) + terms.cat_nll + 0.1 * terms.cont_nll).backward()
        opt_g.step()
    return steps * batch / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- ours
def step_rate(cfg, prepared: str, name: str, steps: int, warmup: int) -> dict:
    """images/s and FLOPs per image of ``cfg``'s training step, every objective term active (as in
    the last epoch), lazy terms on their own steps: FLOPs are averaged over one cycle of them."""
    prepare(cfg.data)
    trainer = Trainer(cfg, Path(prepared) / "bench_runs" / name)
    trainer.epoch = cfg.train.epochs - 1
    batch = cfg.train.batch_size
    cycle = math.lcm(1, *(t.cfg.every for t in trainer.objective.terms))
    batches = iter(())

    def step(i: int) -> None:
        nonlocal batches
        try:
            real = next(batches)
        except StopIteration:
            batches = trainer.batches.epoch(torch.Generator().manual_seed(i))
            real = next(batches)
        trainer.step = i
        trainer.train_step(real)

    with FlopCounterMode(display=False) as counter:
        for i in range(cycle):
            step(i)
    flops_per_image = counter.get_total_flops() / (batch * cycle)
    steps = -(-steps // cycle) * cycle  # whole cycles of the lazy terms
    t0 = None
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        step(i)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return {"images_per_s": steps * batch / (time.perf_counter() - t0), "flops_per_image": flops_per_image,
            "timed_steps": steps,
            "device": str(trainer.device), "terms": {t.name: {"every": t.cfg.every} for t in trainer.objective.terms}}


def bench_configs(params: str, data_root: str, prepared: str, batch: int, compile_: bool) -> dict:
    """Every experiment of ``params`` as configured, and the paper's plain step (mnist without terms)."""
    raw = read_params(params)
    common = [f'data.local_dirs=["{data_root}/{{dataset_dir}}"]', "data.download=false", f"data.prepared_dir={prepared}",
              "data.train_subset=2048", "data.test_subset=100", f"train.batch_size={batch}", "train.progress_bar=false",
              f"train.compile={str(compile_).lower()}", "train.eval_each_epoch=false", "tracking.wandb.mode=disabled"]
    configs = {name: config_from_dict(raw, name, common) for name in raw.get("experiments") or {}}
    first = next(iter(configs))
    configs["paper_plain_step"] = config_from_dict(raw, first, common + ["train.objective={}"])
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/raw/mnist", help="folder with MNIST's four IDX files")
    parser.add_argument("--data-root", default=None,
                        help="folder holding each dataset's folder (mnist, fashion-mnist); default: --data's parent")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="bench/results/throughput.json")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--prepared", default="data/bench_prepared")
    parser.add_argument("--compile", action="store_true", help="time the torch.compile path (train.compile)")
    parser.add_argument("--skip-baseline", action="store_true", help="time only our loop (e.g. on a GPU)")
    args = parser.parse_args()

    root = args.data_root or str(Path(args.data).resolve().parent)
    steps = {}
    for name, cfg in bench_configs(args.params, root, args.prepared, args.batch, args.compile).items():
        rate = step_rate(cfg, args.prepared, name, args.steps, args.warmup)
        if not steps:  # on the device the steps run on, in this run
            peak = matmul_peak_gflops(rate["device"])
        steps[name] = {"images_per_s": round(rate["images_per_s"], 1),
                       "mflop_per_training_image": round(rate["flops_per_image"] / 1e6, 1),
                       "fraction_of_peak": round(rate["images_per_s"] * rate["flops_per_image"] / (peak * 1e9), 3),
                       "terms": rate["terms"], "timed_steps": rate["timed_steps"], "device": rate["device"]}
        print(f"[bench] {name}: {steps[name]['images_per_s']} images/s", flush=True)
    device = next(iter(steps.values()))["device"]
    base_ips = None
    if not args.skip_baseline:
        images = load_idx_folder(Path(root) / "mnist", "mnist")["train_images"].numpy()
        base_ips = baseline_steps(images, LatentSpec(), args.batch, args.steps, args.warmup)
    plain = steps["paper_plain_step"]["images_per_s"]
    result = {
        "device": device,
        "device_name": device_name(device),
        "compile": args.compile,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch_size": args.batch,
        "timed_steps": args.steps,
        "matmul_peak_gflops_2048": round(peak, 1),
        "steps": steps,
        "relative_to_plain_step": {k: round(v["images_per_s"] / plain, 3) for k, v in steps.items()},
        "baseline_images_per_s": round(base_ips, 1) if base_ips else None,
        "plain_step_speedup_over_baseline": round(plain / base_ips, 2) if base_ips else None,
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    main()

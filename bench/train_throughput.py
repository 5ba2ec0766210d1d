"""Throughput of one full InfoGAN training step (D, then G+Q) at the default MNIST
architecture: our training loop against a straightforward version of the same
networks (fully connected layers as 7x7 Conv2d/ConvTranspose2d, images fed by a
DataLoader with per-sample transforms). Writes JSON with images/s for both,
FLOPs per image and the fraction of this machine's fp32 matmul peak.

    python bench/train_throughput.py --data ../shared/datasets/mnist --out bench/results/throughput.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from infogan.objective import d_loss, g_loss, info_nll
from infogan.params import config_from_dict
from infogan.data import load_idx_folder
from infogan.io import atomic_write_json
from infogan.latent import LatentSpec
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
def ours(data_dir: str, batch: int, steps: int, warmup: int, prepared: str,
         compile_: bool = False) -> tuple[float, float, str]:
    cfg = config_from_dict({"data": {"local_dirs": [data_dir], "download": False, "prepared_dir": prepared},
                            "train": {"batch_size": batch, "progress_bar": False, "compile": compile_}})
    from infogan.data import prepare

    prepare(cfg.data)
    trainer = Trainer(cfg, Path(prepared) / "bench_run")
    batches = trainer.batches.epoch(torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(next(batches))
    flops_per_image = counter.get_total_flops() / batch
    t0 = None
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        trainer.train_step(next(batches))
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0), flops_per_image, str(trainer.device)


def matmul_peak_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/raw/mnist", help="folder with MNIST's four IDX files")
    parser.add_argument("--out", default="bench/results/throughput.json")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--prepared", default="data/bench_prepared")
    parser.add_argument("--compile", action="store_true", help="time the torch.compile path (train.compile)")
    parser.add_argument("--skip-baseline", action="store_true", help="time only our loop (e.g. on a GPU)")
    args = parser.parse_args()

    peak = matmul_peak_gflops()
    ours_ips, flops, device = ours(args.data, args.batch, args.steps, args.warmup, args.prepared, args.compile)
    base_ips = None
    if not args.skip_baseline:
        images = load_idx_folder(Path(args.data), "mnist")["train_images"].numpy()
        base_ips = baseline_steps(images, LatentSpec(), args.batch, args.steps, args.warmup)
    result = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
        "compile": args.compile,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch_size": args.batch,
        "timed_steps": args.steps,
        "ours_images_per_s": round(ours_ips, 1),
        "baseline_images_per_s": round(base_ips, 1) if base_ips else None,
        "speedup": round(ours_ips / base_ips, 2) if base_ips else None,
        "mflop_per_training_image": round(flops / 1e6, 1),
        "matmul_peak_gflops_2048": round(peak, 1),
        "ceiling_images_per_s": round(peak * 1e9 / flops, 1),
        "fraction_of_peak": round(ours_ips * flops / (peak * 1e9), 3),
        "seconds_per_mnist_epoch": round(60000 / ours_ips, 1),
    }
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    main()

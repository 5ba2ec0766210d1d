"""What the machine can do, so that speed figures from different machines can be compared:
its fp32 matmul peak (2048 x 2048, measured) and its name."""
from __future__ import annotations

import platform
import time
from pathlib import Path

import torch


def matmul_peak_gflops(device: torch.device | str = "cpu", n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an n x n fp32 matmul on ``device``, the best of ``reps`` (after one warm-up)."""
    device = torch.device(device)
    # Constant operands: the speed does not depend on the values, and no random state is used.
    a, b = torch.full((n, n), 0.5, device=device), torch.full((n, n), 0.25, device=device)
    best = float("inf")
    for i in range(reps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def device_name(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

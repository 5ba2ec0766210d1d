"""Data-parallel training on torch.distributed, launched by ``torchrun``.

Each rank trains on its own slice of every global batch (``train.batch_size`` is the global
batch; each of N ranks takes batch_size / N images), and after each backward the gradients
are averaged across ranks with one all-reduce per optimiser step, as NVlabs/stylegan3 does,
so the update equals the single-process update on the global batch up to BatchNorm
statistics. Parameters start identical (same seed) and are broadcast from rank 0 to be sure.
Only rank 0 writes checkpoints, grids, logs and tracking.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init(device_type: str) -> Dist:
    """Join the process group torchrun set up (NCCL on CUDA, gloo otherwise); a plain
    single-process run gets Dist() and touches nothing."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", 0)), world=dist.get_world_size())


def broadcast_module(module: torch.nn.Module) -> None:
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(params, world: int) -> None:
    """One flat all-reduce for all gradients of ``params`` (those that have one)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def check_in_sync(modules) -> None:
    """Raise unless every rank holds rank 0's parameters exactly: what averaging the gradients
    guarantees (BatchNorm's running statistics are per rank and not compared)."""
    flat = torch.cat([p.detach().reshape(-1).float() for m in modules for p in m.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    gap = (flat - reference).abs().max()
    dist.all_reduce(gap, op=dist.ReduceOp.MAX)
    if gap > 0:
        raise RuntimeError(f"data-parallel ranks diverged: parameters differ from rank 0's by up to {float(gap):.3g}")


def average_tensor(t: torch.Tensor, world: int) -> torch.Tensor:
    t = t.clone()
    dist.all_reduce(t)
    return t / world


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()

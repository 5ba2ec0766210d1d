"""Checkpoints: where a model runs, how it is loaded, rebuilt and resumed.

A training checkpoint holds the constructor arguments of G and D with their weights, so
``rebuild_models`` needs nothing else (no params.yaml). Every loader goes through
``load_checkpoint`` (``weights_only=True``: tensors and plain containers, never code).
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

from .config import InfoGANConfig
from .errors import CheckpointError, PrerequisiteError
from .io import safe_load
from .latent import LatentSpec
from .nets import Discriminator, Generator


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PrerequisiteError("train.device is 'cuda' but no CUDA device is visible; use device: auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise PrerequisiteError("train.device is 'mps' but MPS is not available; use device: auto")
    return torch.device(name)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    if not Path(path).is_file():
        raise PrerequisiteError(f"checkpoint {path} not found: run `python -m infogan train` first")
    blob = safe_load(path, map_location)
    for key, net in (("generator_args", Generator), ("discriminator_args", Discriminator)):
        if isinstance(blob.get(key), dict):
            check_constructor_args(net, blob[key], path)
    return blob


def check_constructor_args(net: type, args: dict, path: str | Path) -> None:
    """A checkpoint saved by a version of this package whose network took other settings names
    them here, instead of failing in the constructor."""
    params = inspect.signature(net).parameters
    unknown = sorted(set(args) - set(params))
    missing = sorted(name for name, p in params.items() if p.default is p.empty and name not in args)
    problems = []
    if unknown:
        problems.append(f"{net.__name__} here does not take {unknown}")
    if missing:
        problems.append(f"it lacks {missing}")
    if problems:
        raise CheckpointError(f"{path} was saved by another version of infogan ({'; '.join(problems)}): retrain it "
                              "with `python -m infogan train`, or load it with the version that saved it")


def rebuild_generator(blob: dict, device="cpu") -> Generator:
    """G from a checkpoint, snapshot or packaged generator dict, in eval mode."""
    missing = {"generator_args", "generator"} - set(blob)
    if missing:
        raise ValueError(f"lacks {sorted(missing)}: not a generator saved by `python -m infogan train` or `package`")
    g = Generator(**blob["generator_args"]).to(device)
    g.load_state_dict(blob["generator"])
    return g.eval()


def rebuild_models(ckpt: dict, device="cpu") -> tuple[Generator, Discriminator, LatentSpec]:
    """G, D (with Q) and the latent spec from a training checkpoint, in eval mode."""
    d = Discriminator(**ckpt["discriminator_args"]).to(device)
    d.load_state_dict(ckpt["discriminator"])
    return rebuild_generator(ckpt, device), d.eval(), LatentSpec.from_dict(ckpt["latent"])


def generator_blob(ckpt: dict) -> dict:
    """The part of a training checkpoint that rebuilds G anywhere (no optimiser, no D)."""
    return {"format": ckpt.get("format"), "generator_args": ckpt["generator_args"], "latent": ckpt["latent"],
            "generator": ckpt["generator"], "epoch": ckpt.get("epoch"), "images_seen": ckpt.get("images_seen")}


# Training keys that change neither the model nor its outputs' content: not params of the DVC
# train stage, and a run may change them and resume.
RUN_ONLY = {"train.log_every", "train.progress_bar", "train.threads"}
# Settings a run may also change and still resume: how long, where it runs, where the data comes
# from (the files themselves are pinned by SHA-256), and what is evaluated, tracked or rendered.
RESUMABLE_CHANGES = RUN_ONLY | {
    "train.epochs", "train.snapshot_epochs", "train.eval_each_epoch", "train.device", "train.nproc",
    "data.local_dirs", "data.download", "data.fetch_order", "data.download_dir", "data.download_timeout_s",
    "data.num_workers", "data.verify_checksums", "data.prepared_dir", "evaluate", "traverse", "tracking"}


def changed_settings(saved: dict, current: dict, prefix: str = "", defaults: dict | None = None) -> list[str]:
    """Keys (dotted) whose values differ between a checkpoint's config and the current one,
    ignoring RESUMABLE_CHANGES. A key the checkpoint predates counts as unchanged while the
    current value is that key's default."""
    if defaults is None:
        defaults = InfoGANConfig().model_dump(mode="json")
    changed = []
    for key in sorted(set(saved) | set(current)):
        dotted = f"{prefix}{key}"
        if dotted in RESUMABLE_CHANGES:
            continue
        a, b, default = saved.get(key), current.get(key), (defaults or {}).get(key)
        if key not in saved and b == default:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_settings(a, b, f"{dotted}.", default if isinstance(default, dict) else {})
        elif a != b:
            changed.append(dotted)
    return changed

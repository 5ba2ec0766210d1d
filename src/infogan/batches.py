"""Training batches: a small dataset held on the device, or a large one streamed from disk."""
from __future__ import annotations

from pathlib import Path

import torch

from .data import load_split, prepared_path, subset_count, to_unit_range
from .errors import DataError
from .image_folders import ImageFileDataset, LsunDataset


class DeviceTensorBatches:
    """A small dataset held as one uint8 tensor on the training device; batches by index."""

    def __init__(self, images: torch.Tensor, batch_size: int, device: torch.device):
        if len(images) < batch_size:
            raise DataError(f"{len(images)} training images is fewer than one batch ({batch_size}); "
                            f"lower train.batch_size")
        self.images = images.to(device)
        self.batch_size = batch_size
        self.device = device

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def epoch(self, generator: torch.Generator, rank: int = 0, world: int = 1):
        """One pass in the order ``generator`` draws; with ``world`` ranks, this rank's slice
        of every global batch (the same global batches as a single process)."""
        order = torch.randperm(len(self.images), generator=generator).to(self.device)
        part = self.batch_size // world
        for i in range(len(self)):
            idx = order[i * self.batch_size + rank * part:i * self.batch_size + (rank + 1) * part]
            yield to_unit_range(self.images.index_select(0, idx))


class StreamingBatches:
    """A large dataset streamed from disk by DataLoader workers."""

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, device: torch.device, workers: int):
        self.dataset, self.batch_size, self.device, self.workers = dataset, batch_size, device, workers

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    def epoch(self, generator: torch.Generator, rank: int = 0, world: int = 1):
        order = torch.randperm(len(self.dataset), generator=generator)[:len(self) * self.batch_size]
        part = self.batch_size // world
        mine = order.view(len(self), world, part)[:, rank].reshape(-1).tolist()
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=part, sampler=mine, drop_last=True,
            num_workers=self.workers, pin_memory=self.device.type == "cuda", persistent_workers=False)
        for batch in loader:
            yield to_unit_range(batch.to(self.device, non_blocking=True))


def training_batches(cfg, device: torch.device):
    data = cfg.data
    path = prepared_path(data)
    if (path / "train.pt").is_file():
        split = load_split(data, "train")
        return DeviceTensorBatches(split.images, cfg.train.batch_size, device), split.images.shape[1]
    if data.dataset == "image_folder" and (path / "files.txt").is_file():
        paths = [Path(p) for p in (path / "files.txt").read_text().splitlines() if p]
        paths = paths[:subset_count(data, "train", len(paths), path / "files.txt")]
        return StreamingBatches(ImageFileDataset(paths), cfg.train.batch_size, device, data.num_workers), 3
    if data.dataset == "lsun" and (path / "lsun_root.txt").is_file():
        ds = LsunDataset((path / "lsun_root.txt").read_text().strip(), data.lsun_classes)
        return StreamingBatches(ds, cfg.train.batch_size, device, data.num_workers), 3
    raise DataError(f"no prepared data under {path}: run `python -m infogan prepare` first")

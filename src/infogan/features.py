"""An offline image-quality score: Fréchet distance and precision/recall/density/coverage
in the features of a small classifier the project trains on each dataset's real
training set (no downloaded Inception weights needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import to_unit_range
from .io import atomic_torch_save, safe_load


class FeatureNet(nn.Module):
    """conv 32 - conv 64 - FC 128 (the feature layer) - FC classes."""

    def __init__(self, channels: int = 1, classes: int = 10, size: int = 28):
        super().__init__()
        self.ctor_args = {"channels": channels, "classes": classes, "size": size}
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, 1, 1), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(True), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * (size // 4) ** 2, 128), nn.ReLU(True))
        self.head = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_feature_net(images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int = 0) -> FeatureNet:
    torch.manual_seed(seed)
    net = FeatureNet(images.shape[1], int(labels.max()) + 1, images.shape[-1])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=g)
        for i in range(0, len(images) - 127, 128):
            idx = order[i:i + 128]
            loss = F.cross_entropy(net(to_unit_range(images[idx])), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def load_or_train_feature_net(cache_dir: str | Path, dataset: str, train_images: torch.Tensor,
                              train_labels: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
                              epochs: int) -> tuple[FeatureNet, float]:
    """Cached per dataset and training-set size; returns the net and its real-test accuracy."""
    path = Path(cache_dir) / f"{dataset}_n{len(train_images)}_e{epochs}.pt"
    if path.is_file():
        blob = safe_load(path)
        net = FeatureNet(**blob["args"])
        net.load_state_dict(blob["state"])
        return net.eval(), blob["test_accuracy"]
    net = train_feature_net(train_images, train_labels, epochs)
    with torch.no_grad():
        pred = torch.cat([net(to_unit_range(test_images[i:i + 1000])).argmax(1)
                          for i in range(0, len(test_images), 1000)])
    acc = float((pred == test_labels).float().mean())
    atomic_torch_save({"args": net.ctor_args, "state": net.state_dict(), "test_accuracy": acc}, path)
    return net, acc


@torch.no_grad()
def features(net: FeatureNet, images: torch.Tensor, batch: int = 1000) -> np.ndarray:
    """Features of images given as uint8 or as floats in [-1, 1]."""
    out = []
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        x = to_unit_range(x) if x.dtype == torch.uint8 else x.float()
        out.append(net.body(x.cpu()).double().numpy())
    return np.concatenate(out)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(m)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(Ca + Cb - 2 (Ca Cb)^1/2), with tr((Ca Cb)^1/2) computed as
    tr((Ca^1/2 Cb Ca^1/2)^1/2): a symmetric PSD form, so no complex or unstable square roots."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020)
    with k-nearest-neighbour balls."""
    real_t, fake_t = torch.from_numpy(real).float(), torch.from_numpy(fake).float()
    d_rr = torch.cdist(real_t, real_t)
    d_ff = torch.cdist(fake_t, fake_t)
    d_rf = torch.cdist(real_t, fake_t)  # (n_real, n_fake)
    r_real = d_rr.kthvalue(k + 1, dim=1).values  # +1 skips the point itself
    r_fake = d_ff.kthvalue(k + 1, dim=1).values
    inside_real = d_rf < r_real[:, None]
    precision = inside_real.any(0).float().mean()
    recall = (d_rf < r_fake[None, :]).any(1).float().mean()
    density = inside_real.float().sum(0).mean() / k
    coverage = (d_rf.min(1).values < r_real).float().mean()
    return {"precision": float(precision), "recall": float(recall),
            "density": float(density), "coverage": float(coverage)}

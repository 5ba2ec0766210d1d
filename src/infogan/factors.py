"""Categorical codes against every known factor of the data (a dataset's label and any others
it records, such as the emoji's skin tone), beside a baseline that needs no GAN: k-means on
the pixels of the same images with the same number of clusters as the code has values.

Per factor and code: Hungarian accuracy and NMI of the code's values, of k-means', and the NMI
margin with its 95 % bootstrap interval over the test images (both read the same resamples).
"""
from __future__ import annotations

import numpy as np
import torch

from .metrics import hungarian_accuracy, normalized_mutual_info


def kmeans(x: torch.Tensor, k: int, seed: int, iters: int = 50, restarts: int = 3) -> np.ndarray:
    """Lloyd's k-means with k-means++ starts; of ``restarts`` runs, the lowest inertia."""
    if len(x) <= k:  # each image its own cluster
        return np.arange(len(x))
    gen = torch.Generator().manual_seed(seed)
    best, best_inertia = None, float("inf")
    for _ in range(restarts):
        centres = x[torch.randint(len(x), (1,), generator=gen)]
        while len(centres) < k:  # k-means++: far points are likelier starts
            d2 = torch.cdist(x, centres).min(1).values.square()
            weights = d2 if d2.sum() > 0 else torch.ones_like(d2)  # all points alike: any will do
            centres = torch.cat([centres, x[torch.multinomial(weights, 1, generator=gen)]])
        for _ in range(iters):
            assign = torch.cdist(x, centres).argmin(1)
            counts = torch.bincount(assign, minlength=k).unsqueeze(1)
            sums = torch.zeros_like(centres).index_add_(0, assign, x)
            moved = torch.where(counts > 0, sums / counts.clamp_min(1), centres)  # an empty cluster stays put
            if torch.equal(moved, centres):
                break
            centres = moved
        nearest = torch.cdist(x, centres).min(1)
        inertia = float(nearest.values.square().sum())
        if inertia < best_inertia:
            best, best_inertia = nearest.indices.numpy(), inertia
    return best


def nmi_margin_interval(pred: np.ndarray, baseline: np.ndarray, labels: np.ndarray, seed: int,
                        resamples: int = 200) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    margins = []
    for _ in range(resamples):
        pick = rng.integers(0, len(labels), len(labels))
        margins.append(normalized_mutual_info(pred[pick], labels[pick])
                       - normalized_mutual_info(baseline[pick], labels[pick]))
    lo, hi = np.percentile(margins, [2.5, 97.5])
    return {"lo": float(lo), "hi": float(hi)}


def factor_scores(sizes: list[int], predictions: list[np.ndarray], factors: dict[str, np.ndarray],
                  images_uint8: torch.Tensor, seed: int) -> dict:
    pixels = images_uint8.flatten(1).float() / 255
    clusters = {k: kmeans(pixels, k, seed) for k in sorted(set(sizes))}
    out = {}
    for name, labels in factors.items():
        n_labels = int(labels.max()) + 1
        rows = []
        for i, (k, pred) in enumerate(zip(sizes, predictions)):
            base = clusters[k]
            code_nmi, base_nmi = normalized_mutual_info(pred, labels), normalized_mutual_info(base, labels)
            rows.append({"code": f"cat{i}", "values": k,
                         "accuracy": hungarian_accuracy(pred, labels, k, n_labels)[0], "nmi": code_nmi,
                         "kmeans_accuracy": hungarian_accuracy(base, labels, k, n_labels)[0], "kmeans_nmi": base_nmi,
                         "nmi_margin": code_nmi - base_nmi,
                         "nmi_margin_interval95": nmi_margin_interval(pred, base, labels, seed)})
        out[name] = rows
    return out

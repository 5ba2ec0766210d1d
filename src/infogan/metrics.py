"""Scoring helpers shared by training (per-epoch) and the evaluate stage."""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .data import to_unit_range
from .objective.real_info import paired_information


def contingency(pred: np.ndarray, labels: np.ndarray, n_pred: int, n_labels: int) -> np.ndarray:
    table = np.zeros((n_pred, n_labels), dtype=np.int64)
    np.add.at(table, (pred, labels), 1)
    return table


def hungarian_accuracy(pred: np.ndarray, labels: np.ndarray, n_pred: int | None = None,
                       n_labels: int | None = None) -> tuple[float, dict[int, int]]:
    """Accuracy after the best one-to-one matching of predicted code values to labels."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    n_pred = n_pred or int(pred.max()) + 1
    n_labels = n_labels or int(labels.max()) + 1
    table = contingency(pred, labels, n_pred, n_labels)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(labels)), {int(r): int(c) for r, c in zip(rows, cols)}


def normalized_mutual_info(pred: np.ndarray, labels: np.ndarray) -> float:
    """NMI with the arithmetic-mean normalisation (scikit-learn's default)."""
    table = contingency(np.asarray(pred), np.asarray(labels), int(np.max(pred)) + 1, int(np.max(labels)) + 1)
    n = table.sum()
    p = table / n
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
    ha = -float((pa[pa > 0] * np.log(pa[pa > 0])).sum())
    hb = -float((pb[pb > 0] * np.log(pb[pb > 0])).sum())
    denom = (ha + hb) / 2
    return mi / denom if denom > 0 else 1.0


@torch.no_grad()
def bn_calibrated(discriminator, batches):
    """A copy of D in eval mode whose BatchNorm statistics are re-estimated over ``batches``
    (images in [-1, 1]). D's running statistics average every kind of batch it was trained on
    (real, generated, warped), which matches none of them; batch statistics of the images
    being scored would make a reading depend on its batch-mates."""
    d = copy.deepcopy(discriminator)
    for m in d.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    d.train()
    for images in batches:
        d(images)
    return d.eval()


def real_calibrated(discriminator, calibration_uint8: torch.Tensor, device, batch_size: int = 500):
    """D with BatchNorm statistics of real (unlabelled) training images: how Q classifies
    real images."""
    return bn_calibrated(discriminator, (to_unit_range(calibration_uint8[i:i + batch_size].to(device))
                                         for i in range(0, len(calibration_uint8) - batch_size + 1, batch_size)))


@torch.no_grad()
def q_outputs(discriminator, images_uint8: torch.Tensor, device: torch.device, batch_size: int = 1000) -> torch.Tensor:
    """Q's raw outputs for real images, D in eval mode."""
    was_training = discriminator.training
    discriminator.eval()
    outs = []
    for i in range(0, len(images_uint8), batch_size):
        x = to_unit_range(images_uint8[i:i + batch_size].to(device))
        outs.append(discriminator(x)[1].float().cpu())
    discriminator.train(was_training)
    return torch.cat(outs)


@torch.no_grad()
def paired_code_information(spec, discriminator, images_uint8: torch.Tensor, augment, device, seed: int,
                            batch_size: int = 1000) -> list[dict]:
    """Label-free, per categorical code: the mutual information between Q's readings of each
    image and of a randomly warped copy (``augment``), in nats and as a share of H(c). 1 means Q
    spreads the images over the values as the prior does, confidently, and the warp never
    changes a reading. It is what ``real_info`` with pairs maximises, here on held-out images;
    IIC (Ji et al. 2019) picks among its heads by the same quantity. Pass D calibrated on real
    images (``real_calibrated``), as Q's accuracy is read."""
    was_training = discriminator.training
    discriminator.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pairs = [(discriminator(x)[1].float().cpu(), discriminator(augment(x))[1].float().cpu())
                 for x in (to_unit_range(images_uint8[i:i + batch_size].to(device))
                           for i in range(0, len(images_uint8), batch_size))]
    discriminator.train(was_training)
    logits_a, _, _ = spec.split_q(torch.cat([a for a, _ in pairs]))
    logits_b, _, _ = spec.split_q(torch.cat([b for _, b in pairs]))
    out = []
    for i, (k, a, b) in enumerate(zip(spec.categorical, logits_a, logits_b)):
        info = float(paired_information(a.softmax(1), b.softmax(1)))
        out.append({"code": f"cat{i}", "nats": round(info, 5), "fraction": round(info / math.log(k), 5)})
    return out


def value_labels(table: np.ndarray, mapping: dict[int, int], names: list[str]) -> list[dict]:
    """Per code value (a row of the value x label ``table``): the label it stands for (its
    Hungarian match, else its most common label) and its purity, the share of the images
    with that value that carry the label."""
    out = []
    for value, row in enumerate(table):
        label = mapping.get(value, int(row.argmax()))
        count = int(row.sum())
        out.append({"value": value, "label": names[label] if label < len(names) else str(label),
                    "label_index": int(label), "matched": value in mapping, "images": count,
                    "purity": float(row[label] / count) if count else 0.0})
    return out


def confusions(table: np.ndarray, values: list[dict], names: list[str], top: int = 5) -> list[dict]:
    """The ``top`` largest mistakes of a value x label ``table`` read through each value's label
    (``value_labels``): how many images of one label Q puts on a value that stands for another."""
    read_as = np.zeros((len(names), len(names)), dtype=np.int64)
    for value, row in zip(values, table):
        read_as[:, value["label_index"]] += row[: len(names)]
    np.fill_diagonal(read_as, 0)
    order = np.argsort(-read_as, axis=None, kind="stable")[:top]
    return [{"label": names[t], "read_as": names[r], "images": int(read_as[t, r])}
            for t, r in zip(*np.unravel_index(order, read_as.shape)) if read_as[t, r] > 0]


def q_predictions(spec, discriminator, images_uint8, device, batch_size: int = 1000,
                  calibration_uint8: torch.Tensor | None = None) -> list[np.ndarray]:
    """Per categorical code, Q's most likely value for each image (D calibrated on real images
    first, when ``calibration_uint8`` is given)."""
    if calibration_uint8 is not None:
        discriminator = real_calibrated(discriminator, calibration_uint8, device)
    logits, _, _ = spec.split_q(q_outputs(discriminator, images_uint8, device, batch_size))
    return [lg.argmax(1).numpy() for lg in logits]


def scores_of_predictions(spec, predictions: list[np.ndarray], labels, names: list[str] | None = None) -> list[dict]:
    """Per categorical code: Hungarian accuracy, NMI, the code-value -> label mapping, each
    value's label and purity, the value x label counts and the largest confusions (``names``
    spell the labels; default their indices)."""
    labels_np = labels.numpy()
    n_labels = int(labels_np.max()) + 1
    names = names or [str(i) for i in range(n_labels)]
    results = []
    for i, (k, pred) in enumerate(zip(spec.categorical, predictions)):
        acc, mapping = hungarian_accuracy(pred, labels_np, k, n_labels)
        table = contingency(pred, labels_np, k, n_labels)
        values = value_labels(table, mapping, names)
        results.append({"code": f"cat{i}", "accuracy": acc, "nmi": normalized_mutual_info(pred, labels_np),
                        "mapping": mapping, "used_values": int(len(np.unique(pred))), "values": values,
                        "value_by_label": table.tolist(), "confusions": confusions(table, values, names)})
    return results


def categorical_scores(spec, discriminator, images_uint8, labels, device, batch_size: int = 1000,
                       calibration_uint8: torch.Tensor | None = None, names: list[str] | None = None) -> list[dict]:
    """``scores_of_predictions`` of Q's predictions for ``images_uint8``."""
    predictions = q_predictions(spec, discriminator, images_uint8, device, batch_size, calibration_uint8)
    return scores_of_predictions(spec, predictions, labels, names)

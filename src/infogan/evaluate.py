"""Score a checkpoint: Q as a classifier of real test images, L_I against H(c),
what each continuous code controls, and an offline Fréchet distance.

The metrics JSON names the checkpoint it scored (path, SHA-256, epoch), which
is how a later stage chooses the best generator.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import torch

from . import losses
from .attributes import (ATTRIBUTES, measure, unwrap_axial_rows, within_row_correlation,
                         within_row_correlation_interval)
from .config import InfoGANConfig
from .data import load_split
from .features import features, frechet_distance, load_or_train_feature_net, prdc
from .io import atomic_write_json
from .latent import LatentBatch, LatentSpec
from .metrics import bn_calibrated, categorical_scores
from .nets import Discriminator, Generator
from .tracking import RunLogger
from .train import load_checkpoint, select_device


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rebuild(ckpt: dict, device: torch.device) -> tuple[Generator, Discriminator, LatentSpec]:
    g = Generator(**ckpt["generator_args"]).to(device)
    g.load_state_dict(ckpt["generator"])
    d = Discriminator(**ckpt["discriminator_args"]).to(device)
    d.load_state_dict(ckpt["discriminator"])
    return g.eval(), d.eval(), LatentSpec.from_dict(ckpt["latent"])


@torch.no_grad()
def generate(g: Generator, spec: LatentSpec, latents: LatentBatch, device, batch: int = 1000) -> torch.Tensor:
    out = []
    for i in range(0, len(latents), batch):
        part = LatentBatch(latents.z[i:i + batch], latents.cat[i:i + batch], latents.cont[i:i + batch])
        out.append(g(spec.assemble(part.to(device))).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def information(g, d, spec: LatentSpec, n: int, seed: int, device, batch: int) -> dict:
    """L_I = H(c) - E[-log Q(c|x)] on fresh samples from the prior. Q reads them with D's
    BatchNorm statistics of G's samples (another ``n`` of them), as in training, where Q only
    ever sees batches of G's samples. With D's running statistics instead (an average over
    real, generated and warped batches) the continuous codes' L_I read -3.8 nats where
    training logged +2.0 for the same checkpoint (README "Evaluation")."""
    gen = torch.Generator().manual_seed(seed)
    calibration = torch.Generator().manual_seed(seed + 3)
    d = bn_calibrated(d, (g(spec.assemble(spec.sample(min(batch, n - i), calibration, device)))
                          for i in range(0, n, batch)))
    cat_sum = cont_sum = 0.0
    done = 0
    while done < n:
        m = min(batch, n - done)
        codes = spec.sample(m, gen, device)
        terms = losses.info_nll(spec, d(g(spec.assemble(codes)))[1], codes)
        cat_sum += float(terms.cat_nll) * m
        cont_sum += float(terms.cont_nll) * m
        done += m
    mi_cat = spec.entropy_categorical - cat_sum / n
    mi_cont = spec.entropy_continuous - cont_sum / n
    return {"mi_cat": mi_cat, "h_cat": spec.entropy_categorical,
            "mi_cat_fraction": mi_cat / spec.entropy_categorical if spec.categorical else None,
            "mi_cont": mi_cont, "h_cont": spec.entropy_continuous}


def code_sweep(spec: LatentSpec, base: LatentBatch, code: int, values: torch.Tensor) -> LatentBatch:
    """Each latent of ``base`` repeated len(values) times, continuous ``code`` swept over
    ``values`` and the other continuous codes at 0 (rows of the sweep stay together)."""
    steps = len(values)
    cont = torch.zeros(len(base) * steps, spec.continuous)
    cont[:, code] = values.repeat(len(base))
    return LatentBatch(base.z.repeat_interleave(steps, 0), base.cat.repeat_interleave(steps, 0), cont)


def continuous_code_sweeps(g, spec: LatentSpec, rows: int, steps: int, span: float, seed: int,
                           device) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """For each continuous code: sweep it over [-span, span] for ``rows`` random latents
    (other continuous codes at 0); the code's values and each image attribute, row-major,
    rotation unwrapped along each sweep."""
    gen = torch.Generator().manual_seed(seed)
    base = spec.sample(rows, gen)
    values = torch.linspace(-span, span, steps)
    sweeps = {}
    for j in range(spec.continuous):
        latents = code_sweep(spec, base, j, values)
        attrs = measure(generate(g, spec, latents, device))
        attrs["rotation"] = unwrap_axial_rows(attrs["rotation"], rows)
        sweeps[f"cont{j}"] = (latents.cont[:, j].numpy(), attrs)
    return sweeps


def continuous_code_effects(sweeps: dict, rows: int) -> dict[str, dict[str, float]]:
    """Within-row correlation of each continuous code with each image attribute over
    ``continuous_code_sweeps``' ``rows`` latents."""
    return {code: {a: within_row_correlation(values, attrs[a], rows) for a in ATTRIBUTES}
            for code, (values, attrs) in sweeps.items()}


def continuous_code_intervals(sweeps: dict, rows: int) -> dict[str, dict[str, dict[str, float]]]:
    """The same table's 95 % bootstrap intervals over latents, as {"lo", "hi"} per cell."""
    return {code: {a: dict(zip(("lo", "hi"), within_row_correlation_interval(values, attrs[a], rows)))
                   for a in ATTRIBUTES}
            for code, (values, attrs) in sweeps.items()}


# The continuous-code bar: each role's code follows its own attribute at least this well ...
ROLE_R_MIN = 0.8
# ... and the other role's attribute at most this much (|within-row r|).
CROSS_R_MAX = 0.3


def _abs_interval(interval: dict[str, float]) -> dict[str, float]:
    lo, hi = interval["lo"], interval["hi"]
    if lo <= 0 <= hi:
        return {"lo": 0.0, "hi": max(-lo, hi)}
    return dict(zip(("lo", "hi"), sorted([abs(lo), abs(hi)])))


def _meets_bar(own: tuple[float, ...], cross: tuple[float, ...]) -> bool:
    return bool(min(own) >= ROLE_R_MIN and max(cross) <= CROSS_R_MAX)


def code_roles(table: dict[str, dict[str, float]], intervals: dict | None = None) -> dict:
    """Which code tracks rotation, which tracks thickness/width (best one-to-one by |r|),
    and the 2x2 table the paper's claim is judged on; with ``intervals`` (see
    ``continuous_code_intervals``) also each figure's 95 % interval and whether the bar holds
    across it, not just at the point estimate."""
    codes = list(table)
    if len(codes) < 2:
        return {}
    best = None
    for rot_code in codes:
        for other in codes:
            if other == rot_code:
                continue
            for shape_attr in ("thickness", "width"):
                score = abs(table[rot_code]["rotation"]) + abs(table[other][shape_attr])
                if best is None or score > best[0]:
                    best = (score, rot_code, other, shape_attr)
    _, rot_code, shape_code, shape_attr = best
    roles = {
        "rotation_code": rot_code, "shape_code": shape_code, "shape_attribute": shape_attr,
        "table": {rot_code: {"rotation": table[rot_code]["rotation"], shape_attr: table[rot_code][shape_attr]},
                  shape_code: {"rotation": table[shape_code]["rotation"], shape_attr: table[shape_code][shape_attr]}},
        "rotation_r": abs(table[rot_code]["rotation"]),
        "rotation_cross_r": abs(table[rot_code][shape_attr]),
        "shape_r": abs(table[shape_code][shape_attr]),
        "shape_cross_r": abs(table[shape_code]["rotation"]),
    }
    roles["meets_bar"] = _meets_bar((roles["rotation_r"], roles["shape_r"]),
                                    (roles["rotation_cross_r"], roles["shape_cross_r"]))
    if intervals is not None:
        cells = {"rotation_r": (rot_code, "rotation"), "rotation_cross_r": (rot_code, shape_attr),
                 "shape_r": (shape_code, shape_attr), "shape_cross_r": (shape_code, "rotation")}
        ci = {key: _abs_interval(intervals[code][attr]) for key, (code, attr) in cells.items()}
        roles["interval95"] = ci
        roles["meets_bar_across_interval"] = _meets_bar((ci["rotation_r"]["lo"], ci["shape_r"]["lo"]),
                                                        (ci["rotation_cross_r"]["hi"], ci["shape_cross_r"]["hi"]))
    return roles


def image_quality(cfg: InfoGANConfig, g, spec, device, train_split, test_split) -> dict:
    ec = cfg.evaluate
    net, net_acc = load_or_train_feature_net(ec.feature_net_dir, cfg.data.dataset, train_split.images,
                                             train_split.labels, test_split.images, test_split.labels,
                                             ec.feature_net_epochs)
    gen = torch.Generator().manual_seed(ec.seed + 1)
    n = min(ec.n_samples, len(test_split.images))
    fake = generate(g, spec, spec.sample(n, gen), device, ec.batch_size)
    f_fake = features(net, fake)
    f_test = features(net, test_split.images[:n])
    pick = torch.randperm(len(train_split.images), generator=gen)[:n]
    f_train = features(net, train_split.images[pick])
    k = min(ec.prdc_samples, n)
    return {
        "feature_net_test_accuracy": net_acc,
        "samples": n,
        "fid": frechet_distance(f_fake, f_test),
        "fid_floor_train_vs_test": frechet_distance(f_train, f_test),
        **{k_: v for k_, v in prdc(f_test[:k], f_fake[:k], ec.prdc_k).items()},
        **{f"floor_{k_}": v for k_, v in prdc(f_test[:k], f_train[:k], ec.prdc_k).items()},
    }


def evaluate(cfg: InfoGANConfig, checkpoint: str | Path, out_json: str | Path | None = None,
             experiment: str | None = None) -> dict:
    """Score ``checkpoint``; the result also goes to W&B per ``cfg.tracking`` (an ``evaluate``
    job run grouped with the experiment's training; ``experiment`` defaults to the run folder)."""
    t0 = time.perf_counter()
    device = select_device(cfg.train.device)
    ckpt = load_checkpoint(checkpoint, device)
    g, d, spec = rebuild(ckpt, device)
    ec = cfg.evaluate
    result: dict = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "epoch": ckpt.get("epoch"),
        "images_seen": ckpt.get("images_seen"),
        "dataset": cfg.data.dataset,
    }
    test = load_split(cfg.data, "test")
    train = load_split(cfg.data, "train") if test is not None else None
    labelled = test is not None and bool((test.labels >= 0).all())
    if labelled and spec.categorical:
        calibration = train.images[:ec.bn_calibration_images] if ec.bn_calibration_images else None
        scores = categorical_scores(spec, d, test.images, test.labels, device, ec.batch_size, calibration)
        result["categorical"] = scores
        result["accuracy"] = scores[0]["accuracy"]
        result["nmi"] = scores[0]["nmi"]
    result.update(information(g, d, spec, ec.n_samples, ec.seed, device, ec.batch_size))
    if spec.continuous:
        sweeps = continuous_code_sweeps(g, spec, ec.traversal_rows, ec.traversal_steps, ec.traversal_range,
                                        ec.seed + 2, device)
        table = continuous_code_effects(sweeps, ec.traversal_rows)
        intervals = continuous_code_intervals(sweeps, ec.traversal_rows)
        result["continuous"] = table
        result["continuous_interval95"] = intervals
        result["continuous_roles"] = code_roles(table, intervals)
    if ec.fid and labelled:
        result["image_quality"] = image_quality(cfg, g, spec, device, train, test)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if out_json is not None:
        atomic_write_json(out_json, result)
    with RunLogger(Path(checkpoint).parent, cfg, experiment, job_type="evaluate").start() as tracker:
        tracker.log_evaluation(result)
    return result

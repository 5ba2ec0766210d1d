"""Score a checkpoint: Q as a classifier of real test images, L_I against H(c),
what each continuous code controls, and an offline Fréchet distance.

The metrics JSON names the checkpoint it scored (path, SHA-256, epoch), which
is how a later stage chooses the best generator.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .attributes import attribute_set, within_row_correlation, within_row_correlation_interval
from .augment import Augment
from .checkpoint import load_checkpoint, rebuild_models, select_device
from .config import InfoGANConfig
from .data import class_names, load_split
from .features import features, frechet_distance, load_or_train_feature_net, prdc
from .io import atomic_write_json, file_sha256
from .latent import LatentBatch, LatentSpec
from .factors import factor_scores
from .metrics import (bn_calibrated, hungarian_accuracy, paired_code_information, q_predictions,
                      real_calibrated, scores_of_predictions)
from .nets import Generator
from .objective import info_nll
from .tracking import RunLogger


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
    training logged +2.0 for the same checkpoint (docs/evaluation.md)."""
    gen = torch.Generator().manual_seed(seed)
    calibration = torch.Generator().manual_seed(seed + 3)
    d = bn_calibrated(d, (g(spec.assemble(spec.sample(min(batch, n - i), calibration, device)))
                          for i in range(0, n, batch)))
    cat_sum = cont_sum = 0.0
    done = 0
    while done < n:
        m = min(batch, n - done)
        codes = spec.sample(m, gen, device)
        terms = info_nll(spec, d(g(spec.assemble(codes)))[1], codes)
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


def continuous_code_sweeps(g, spec: LatentSpec, measure, rows: int, steps: int, span: float, seed: int,
                           device) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """For each continuous code: sweep it over [-span, span] for ``rows`` random latents
    (other continuous codes at 0); the code's values and each attribute ``measure`` reads,
    row-major."""
    gen = torch.Generator().manual_seed(seed)
    base = spec.sample(rows, gen)
    values = torch.linspace(-span, span, steps)
    sweeps = {}
    for j in range(spec.continuous):
        latents = code_sweep(spec, base, j, values)
        attrs = measure(generate(g, spec, latents, device), rows)
        sweeps[f"cont{j}"] = (latents.cont[:, j].numpy(), attrs)
    return sweeps


def continuous_code_effects(sweeps: dict, rows: int) -> dict[str, dict[str, float]]:
    """Within-row correlation of each continuous code with each attribute over
    ``continuous_code_sweeps``' ``rows`` latents."""
    return {code: {a: within_row_correlation(values, attrs[a], rows) for a in attrs}
            for code, (values, attrs) in sweeps.items()}


def continuous_code_intervals(sweeps: dict, rows: int) -> dict[str, dict[str, dict[str, float]]]:
    """The same table's 95 % bootstrap intervals over latents, as {"lo", "hi"} per cell."""
    return {code: {a: dict(zip(("lo", "hi"), within_row_correlation_interval(values, attrs[a], rows)))
                   for a in attrs}
            for code, (values, attrs) in sweeps.items()}


@torch.no_grad()
def generated_purity(g, spec: LatentSpec, net, categorical: list[dict], per_value: int, seed: int, device,
                     batch: int) -> dict:
    """Whether asking for a value draws its label: for each value of each categorical code, G
    draws ``per_value`` images with that value fixed (every other code from the prior) and the
    feature net classifies them. Per value, the share classified as the label evaluation gave
    the value; per code, the Hungarian-matched accuracy of value against class."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for code_index, (size, scores) in enumerate(zip(spec.categorical, categorical)):
        latents = spec.sample(size * per_value, gen)
        values = torch.arange(size).repeat_interleave(per_value)
        latents.cat[:, code_index] = values
        images = generate(g, spec, latents, device, batch)
        classes = torch.cat([net(images[i:i + batch]).argmax(1) for i in range(0, len(images), batch)]).numpy()
        values = values.numpy()
        accuracy, _ = hungarian_accuracy(values, classes, size, net.head.out_features)
        for entry in scores["values"]:
            drawn = classes[values == entry["value"]]
            entry["generated_purity"] = float((drawn == entry["label_index"]).mean())
        scores["generated_accuracy"] = accuracy
        out[scores["code"]] = accuracy
    return {"generated_purity": out.get("cat0"), "generated_per_value": per_value}


def image_quality(cfg: InfoGANConfig, g, spec, net, device, train_split, test_split) -> dict:
    ec = cfg.evaluate
    gen = torch.Generator().manual_seed(ec.seed + 1)
    n = min(ec.n_samples, len(test_split.images))
    fake = generate(g, spec, spec.sample(n, gen), device, ec.batch_size)
    f_fake = features(net, fake)
    f_test = features(net, test_split.images[:n])
    pick = torch.randperm(len(train_split.images), generator=gen)[:n]
    f_train = features(net, train_split.images[pick])
    k = min(ec.prdc_samples, n)
    return {
        "samples": n,
        "fid": frechet_distance(f_fake, f_test),
        "fid_floor_train_vs_test": frechet_distance(f_train, f_test),
        **{k_: v for k_, v in prdc(f_test[:k], f_fake[:k], ec.prdc_k).items()},
        **{f"floor_{k_}": v for k_, v in prdc(f_test[:k], f_train[:k], ec.prdc_k).items()},
    }


class Phases:
    """Says when each phase of evaluation starts and ends, and keeps its wall seconds."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        print(f"[evaluate] {name} ...", flush=True)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)
        print(f"[evaluate] {name}: {self.seconds[name]:.1f} s", flush=True)


def time_to_accuracy(history: list[dict], target: float) -> dict:
    """From training's epoch records: the first epoch whose test accuracy reached ``target``,
    with the images and wall seconds it took, and the matmul peak of the machine that trained."""
    out: dict = {"target": target, "reached": False}
    for record in history:
        if (record.get("accuracy") or 0) >= target:
            out.update(reached=True, **{k: record.get(k) for k in
                                        ("epoch", "images_seen", "elapsed_s", "matmul_peak_gflops", "device_name")})
            break
    return out


def real_reader(d, train_images: torch.Tensor, ec, device):
    """D as Q reads real images in evaluation: its BatchNorm calibrated on the first
    ``evaluate.bn_calibration_images`` real, unlabelled training images (0: D as trained)."""
    return real_calibrated(d, train_images[:ec.bn_calibration_images], device) if ec.bn_calibration_images else d


def label_free_paired_information(cfg: InfoGANConfig, spec, d_real, test_images: torch.Tensor, device) -> list[dict]:
    """The label-free figure ``select`` ranks on, per categorical code: Q's paired information on
    the test images and their ``train.augment`` copies (seeded from ``evaluate.seed``)."""
    ec = cfg.evaluate
    return paired_code_information(spec, d_real, test_images, Augment.from_config(cfg.train.augment), device,
                                   ec.seed + 5, ec.batch_size)


def evaluate(cfg: InfoGANConfig, checkpoint: str | Path, out_json: str | Path | None = None,
             experiment: str | None = None) -> dict:
    """Score ``checkpoint``; the result also goes to W&B per ``cfg.tracking`` (an ``evaluate``
    job run grouped with the experiment's training; ``experiment`` defaults to the run folder)."""
    t0, phase = time.perf_counter(), Phases()
    device = select_device(cfg.train.device)
    ckpt = load_checkpoint(checkpoint, device)
    g, d, spec = rebuild_models(ckpt, device)
    ec = cfg.evaluate
    result: dict = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "epoch": ckpt.get("epoch"),
        "images_seen": ckpt.get("images_seen"),
        "dataset": cfg.data.dataset,
        "time_to_accuracy": time_to_accuracy(ckpt.get("history") or [], ec.target_accuracy),
    }
    test = load_split(cfg.data, "test")
    train = load_split(cfg.data, "train") if test is not None else None
    labelled = test is not None and bool((test.labels >= 0).all())
    if test is not None and spec.categorical:
        with phase("Q on real test images: BatchNorm calibration, label-free paired information"):
            d_real = real_reader(d, train.images, ec, device)
            paired = label_free_paired_information(cfg, spec, d_real, test.images, device)
        result["label_free"] = {"paired_information": paired, "paired_information_fraction": paired[0]["fraction"]}
    if labelled and spec.categorical:
        names = class_names(cfg.data.dataset, int(test.labels.max()) + 1)
        with phase("Q on real test images (accuracy, NMI)"):
            predictions = q_predictions(spec, d_real, test.images, device, ec.batch_size)
            scores = scores_of_predictions(spec, predictions, test.labels, names)
        with phase("codes against every known factor, and k-means on pixels"):
            factors = {"label": test.labels.numpy()} | {k: v.numpy() for k, v in test.factors.items()}
            result["factors"] = factor_scores(spec.categorical, predictions, factors, test.images, ec.seed)
        result["categorical"] = scores
        result["accuracy"] = scores[0]["accuracy"]
        result["nmi"] = scores[0]["nmi"]
    with phase("L_I on generated samples"):
        result.update(information(g, d, spec, ec.n_samples, ec.seed, device, ec.batch_size))
    if spec.continuous:
        attributes = attribute_set(ec.attributes)
        with phase("continuous-code sweeps"):
            sweeps = continuous_code_sweeps(g, spec, attributes.measure, ec.traversal_rows, ec.traversal_steps,
                                            ec.traversal_range, ec.seed + 2, device)
            table = continuous_code_effects(sweeps, ec.traversal_rows)
        with phase("bootstrap intervals"):
            intervals = continuous_code_intervals(sweeps, ec.traversal_rows)
        result["continuous_attributes"] = attributes.name
        result["continuous"] = table
        result["continuous_interval95"] = intervals
        result["continuous_roles"] = attributes.summarize(table, intervals)
    if labelled and (ec.fid or (ec.generated_per_value and spec.categorical)):
        with phase("feature net (trained once per dataset, then cached)"):
            net, net_accuracy = load_or_train_feature_net(ec.feature_net_dir, cfg.data.dataset, train.images,
                                                          train.labels, test.images, test.labels,
                                                          ec.feature_net_epochs)
        result["feature_net_test_accuracy"] = net_accuracy
        if ec.generated_per_value and spec.categorical:
            with phase("generated purity"):
                result.update(generated_purity(g, spec, net, result["categorical"], ec.generated_per_value,
                                               ec.seed + 4, device, ec.batch_size))
        if ec.fid:
            with phase("FID and precision/recall"):
                result["image_quality"] = {"feature_net_test_accuracy": net_accuracy,
                                           **image_quality(cfg, g, spec, net, device, train, test)}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["phase_seconds"] = phase.seconds
    if out_json is not None:
        atomic_write_json(out_json, result)
    with RunLogger(Path(checkpoint).parent, cfg, experiment, job_type="evaluate").start() as tracker:
        tracker.log_evaluation(result)
    return result

"""Why a slant code also changes width: the data's own slant-width relation, and what a
checkpoint's codes do and what Q reads of it. Writes JSON.

    python bench/continuous_codes.py --data ../shared/datasets/mnist \
        --checkpoint runs/mnist/checkpoint.pt --out bench/results/continuous_codes.json

- ``real``: slope (and r) of deskewed log-width on shear (x on y, positive = leaning right)
  over the first --real-images training digits, overall and within each class.
- ``codes``: per continuous code, the change per code unit (sweeps over [-1, 1], other
  continuous codes 0, --rows random latents) of shear, log-width, log-height, log-ink, and of
  Q's mean readings of codes 0 and 1; then ``ideal_warps``: Q's readings per unit of a pure
  shear (digit_roles' shear_per_unit) and a pure horizontal stretch (stretch_per_unit) of G's
  samples at code 0. Q reads with D's BatchNorm statistics of G's samples (as evaluate
  does). If Q read G's width as it reads a stretch, code 0's change in Q's code-1 reading
  would be about log_width / roles_stretch_per_unit * (Q1 per unit of stretch).
- ``ideal_codes``: what a perfect code scores on the evaluate stage's ``digits`` table
  (within-row r with skew, rotation, width and thickness over a [-1, 1] sweep) if moving it
  only sheared, rotated (25 degrees per unit) or horizontally stretched the first
  --ideal-images real test digits, at digit_roles' per-unit amounts: the ceiling each warp
  sets for its code.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from infogan.attributes import ink, within_row_correlation
from infogan.augment import rotate
from infogan.checkpoint import load_checkpoint, rebuild_models
from infogan.data import load_idx_folder
from infogan.evaluate import code_sweep, generate
from infogan.io import atomic_write_json
from infogan.metrics import bn_calibrated
from infogan.presets.digits.geometry import digit_moments, measure, slant_stretch
from infogan.presets.digits.terms import DigitRolesConfig

DEGREES_PER_UNIT = 25.0


def log_shape(x: torch.Tensor) -> dict[str, torch.Tensor]:
    m = digit_moments(x)
    return {"shear": m["skew"], "log_width": 0.5 * m["deskewed_cxx"].clamp_min(1e-6).log(),
            "log_height": 0.5 * m["cyy"].log(),
            "log_ink": m["mass"].log()}


def slope(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    return float((x * y).sum() / (x * x).sum())


def real_relation(folder: Path, n: int) -> dict:
    data = load_idx_folder(folder, "mnist")
    x, labels = data["train_images"][:n].float() / 255, data["train_labels"][:n]
    s = log_shape(x)
    out = {"images": int(x.shape[0]),
           "overall": {"slope": slope(s["shear"], s["log_width"]),
                       "r": float(np.corrcoef(s["shear"], s["log_width"])[0, 1])}}
    centred_shear, centred_width, per_class = [], [], {}
    for k in labels.unique().tolist():
        sel = labels == k
        sh, lw = s["shear"][sel], s["log_width"][sel]
        per_class[str(k)] = {"slope": slope(sh, lw), "r": float(np.corrcoef(sh, lw)[0, 1])}
        centred_shear.append(sh - sh.mean())
        centred_width.append(lw - lw.mean())
    sh, lw = torch.cat(centred_shear), torch.cat(centred_width)
    out["within_class"] = {"slope": slope(sh, lw), "r": float(np.corrcoef(sh, lw)[0, 1]), "per_class": per_class}
    return out


@torch.no_grad()
def ideal_codes(folder: Path, n: int, steps: int) -> dict:
    digits = load_idx_folder(folder, "mnist")["test_images"][:n].float().div(127.5).sub(1).unsqueeze(1)
    rows, roles = digits.shape[0], DigitRolesConfig()
    values = torch.linspace(-1, 1, steps)
    sweep, none = values.repeat(rows), torch.zeros(rows * steps)
    views = digits.repeat_interleave(steps, 0)
    warps = {"shear": slant_stretch(views, sweep * roles.shear_per_unit, none),
             "rotation": rotate(views, torch.deg2rad(sweep * DEGREES_PER_UNIT)),
             "stretch": slant_stretch(views, none, sweep * roles.stretch_per_unit)}
    out = {"images": rows, "steps": steps, "shear_per_unit": roles.shear_per_unit,
           "degrees_per_unit": DEGREES_PER_UNIT, "stretch_per_unit": roles.stretch_per_unit}
    for name, images in warps.items():
        m = measure(images, rows)
        out[name] = {k: within_row_correlation(sweep.numpy(), v, rows) for k, v in m.items()}
    return out


@torch.no_grad()
def code_effects(checkpoint: Path, rows: int, steps: int, seed: int) -> dict:
    ckpt = load_checkpoint(checkpoint)
    g, d, spec = rebuild_models(ckpt)
    saved = ((ckpt["config"]["train"].get("objective") or {}).get("digit_roles") or {})
    roles = DigitRolesConfig(**{k: v for k, v in saved.items() if k in ("shear_per_unit", "stretch_per_unit")})
    base = spec.sample(rows, torch.Generator().manual_seed(seed))
    values = torch.linspace(-1, 1, steps)
    # Q reads with D's BatchNorm statistics of G's samples, as in training (evaluate.information).
    calibration = spec.sample(rows * steps, torch.Generator().manual_seed(seed + 3))
    d = bn_calibrated(d, generate(g, spec, calibration, "cpu").split(500))

    def per_unit(series: torch.Tensor) -> float:  # mean over rows of the slope along the sweep
        a = series.reshape(rows, steps).double()
        return slope(values.repeat(rows), (a - a.mean(1, keepdim=True)).flatten())

    def readings(images: torch.Tensor) -> dict[str, float]:
        _, mean, _ = spec.split_q(d(images)[1].float())
        return {f"q_code{j}": per_unit(mean[:, j]) for j in range(min(2, spec.continuous))}

    codes = {}
    for j in range(spec.continuous):
        images = generate(g, spec, code_sweep(spec, base, j, values), "cpu")
        shape = {k: per_unit(v) for k, v in log_shape(ink(images)).items()}
        codes[f"cont{j}"] = {**shape, **readings(images)}
        if j == 0:
            at_zero = images.view(rows, steps, *images.shape[1:])[:, steps // 2].repeat_interleave(steps, 0)
            sweep, none = values.repeat(rows), torch.zeros(rows * steps)
            codes["ideal_warps"] = {
                "shear": readings(slant_stretch(at_zero, sweep * roles.shear_per_unit, none)),
                "stretch": readings(slant_stretch(at_zero, none, sweep * roles.stretch_per_unit)),
                "shear_per_unit": roles.shear_per_unit, "stretch_per_unit": roles.stretch_per_unit}
    return {"checkpoint": str(checkpoint), "epoch": ckpt.get("epoch"), "rows": rows, "steps": steps, "codes": codes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with the MNIST IDX files")
    ap.add_argument("--checkpoint", type=Path, action="append", default=[], help="repeatable")
    ap.add_argument("--real-images", type=int, default=20000)
    ap.add_argument("--ideal-images", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--steps", type=int, default=9)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/results/continuous_codes.json"))
    args = ap.parse_args()
    result = {"machine": platform.node(), "real": real_relation(args.data, args.real_images),
              "ideal_codes": ideal_codes(args.data, args.ideal_images, args.steps),
              "checkpoints": [code_effects(c, args.rows, args.steps, args.seed) for c in args.checkpoint]}
    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

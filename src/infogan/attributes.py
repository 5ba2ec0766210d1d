"""What a continuous code changes: attribute sets measured on generated images.

Evaluation sweeps each continuous code for many latents (rows) and measures an attribute
set (``evaluate.attributes``) on every image; a code's score for an attribute is the
within-row correlation of the code's value with it. The core's set, ``image``, needs no
knowledge of the data: brightness, the drawn area, where it lies and (colour images) the
mean colour. Presets register sets that know their data, with a ``summarize`` that names
each code's role and judges it against the preset's bar.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .plugins import load_presets


@dataclass(frozen=True)
class AttributeSet:
    name: str
    # (images (N, C, H, W) in [-1, 1], rows of the row-major sweeps) -> attribute -> (N,) values
    measure: Callable[[torch.Tensor, int], dict[str, np.ndarray]]
    # (code -> attribute -> r, code -> attribute -> {"lo", "hi"}) ->
    # {"roles": {code: role name}, "codes": {code: {"attribute": measured, "r": r, ...}}, ...}
    summarize: Callable[[dict, dict], dict]


_SETS: dict[str, AttributeSet] = {}


def register_attribute_set(attribute_set: AttributeSet) -> AttributeSet:
    _SETS[attribute_set.name] = attribute_set
    return attribute_set


def attribute_sets() -> dict[str, AttributeSet]:
    load_presets()
    return dict(_SETS)


def attribute_set(name: str) -> AttributeSet:
    sets = attribute_sets()
    if name not in sets:
        raise ValueError(f"unknown attribute set {name!r}; allowed: {', '.join(sets)}")
    return sets[name]


def ink(images: torch.Tensor, keep_graph: bool = False) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, H, W) intensity in [0, 1] (channels averaged); on the
    CPU and detached unless ``keep_graph`` (a training loss differentiates through it)."""
    x = images.float() if keep_graph else images.detach().float().cpu()
    return ((x.mean(1) + 1) / 2).clamp(0, 1)


def image_moments(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mass, centroid (pixels) and central second moments (pixels^2) of (N, H, W) weights;
    rows grow downwards."""
    n, h, w = x.shape
    ys = torch.arange(h, dtype=torch.float32, device=x.device).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=x.device).view(1, 1, w)
    mass = x.sum((1, 2)).clamp_min(1e-6)
    my = (x * ys).sum((1, 2)) / mass
    mx = (x * xs).sum((1, 2)) / mass
    dy, dx = ys - my.view(n, 1, 1), xs - mx.view(n, 1, 1)
    return {"mass": mass, "mx": mx, "my": my, "cyy": (x * dy * dy).sum((1, 2)) / mass,
            "cxx": (x * dx * dx).sum((1, 2)) / mass, "cxy": (x * dx * dy).sum((1, 2)) / mass}


def measure_image(images: torch.Tensor, rows: int) -> dict[str, np.ndarray]:
    """The ``image`` set. The background is each image's border colour; the drawn part is
    weighted by how far a pixel's colour is from it."""
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], 2).mean(2)
    drawn = (x - border[:, :, None, None]).abs().amax(1)
    m = image_moments(drawn)
    h, w = x.shape[-2:]
    out = {"brightness": x.mean((1, 2, 3)), "drawn_area": (drawn > 0.25).float().mean((1, 2)),
           "centre_x": m["mx"] / w, "centre_y": m["my"] / h}
    if x.shape[1] == 3:
        out.update({f"mean_{c}": x[:, i].mean((1, 2)) for i, c in enumerate(("red", "green", "blue"))})
    return {k: v.numpy() for k, v in out.items()}


def strongest_attribute(table: dict, intervals: dict) -> dict:
    """Each code's role: the attribute it follows most (largest |r|), with r and its interval."""
    roles, detail = {}, {}
    for code, row in table.items():
        if row:
            attr = max(row, key=lambda a: abs(row[a]))
            roles[code] = attr
            detail[code] = {"attribute": attr, "r": row[attr], "interval95": intervals[code][attr]}
    return {"roles": roles, "codes": detail}


register_attribute_set(AttributeSet("image", measure_image, strongest_attribute))


def _row_sums(values: np.ndarray, attribute: np.ndarray, rows: int) -> np.ndarray:
    """(rows, 3): per row, sums of v*a, v*v, a*a after removing the row's means."""
    v = values.reshape(rows, -1).astype(np.float64)
    a = attribute.reshape(rows, -1).astype(np.float64)
    v = v - v.mean(1, keepdims=True)
    a = a - a.mean(1, keepdims=True)
    return np.stack([(v * a).sum(1), (v * v).sum(1), (a * a).sum(1)], 1)


def _correlation(va, vv, aa):
    denom = np.sqrt(vv * aa)
    return np.divide(va, denom, out=np.zeros_like(va), where=denom > 0)


def within_row_correlation(values: np.ndarray, attribute: np.ndarray, rows: int) -> float:
    """Pearson correlation of a code value with an attribute after removing each row's
    mean: rows differ in noise and other codes, and only the change along the code counts."""
    return float(_correlation(*_row_sums(values, attribute, rows).sum(0)))


def within_row_correlation_interval(values: np.ndarray, attribute: np.ndarray, rows: int,
                                    resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``within_row_correlation`` over rows (latents drawn
    with replacement): how far the figure could move with another draw of latents."""
    per_row = _row_sums(values, attribute, rows)
    picks = np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))
    r = _correlation(*per_row[picks].sum(1).T)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(r, [tail, 100 - tail])
    return float(lo), float(hi)

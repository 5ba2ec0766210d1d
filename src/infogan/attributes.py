"""What a continuous code controls: image attributes measured on generated images.

- rotation: angle (degrees) of the ink's principal axis from vertical, from
  second-order image moments; positive leans right. An axis is the same after half a turn,
  so one image's angle lies in (-90, 90]; a sweep's angles are unwrapped along the sweep
  (``unwrap_axial_rows``), or a wide digit whose axis turns through horizontal would read as
  jumping by ~180 degrees (and, correlated with the code, as a large rotation in whichever
  direction the jump happened to go).
- thickness: mean stroke width, 2 * ink area / ink perimeter on the binarised
  image (a stroke of width w and length L has area wL and perimeter ~2L).
- width: horizontal extent once the slant is taken out, 4 * sqrt(cxx - cxy^2 / cyy): the
  spread of x left after regressing x on y, i.e. the width of the digit deskewed by a
  horizontal shear, as MNIST deskewing does. A shear leaves it exactly unchanged and a
  horizontal stretch by a scales it by a. (The extent across the principal axis, used
  before, shrinks as an upright round digit is slanted: r = -0.91 under pure shear of real
  test digits from upright to 0.8, so a clean slant code read as "width" too.)
"""
from __future__ import annotations

import numpy as np
import torch

ATTRIBUTES = ("rotation", "thickness", "width")


def ink(images: torch.Tensor, keep_graph: bool = False) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, H, W) ink in [0, 1] (channels averaged); on the CPU and
    detached unless ``keep_graph`` (a training loss differentiates through it)."""
    x = images.float() if keep_graph else images.detach().float().cpu()
    return ((x.mean(1) + 1) / 2).clamp(0, 1)


def second_moments(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Ink mass and central second moments (pixels^2) of (N, H, W) ink images. ``shear`` is
    the slope of x on y, positive for a right-leaning digit (what deskewing undoes);
    ``deskewed_cxx`` the spread of x left once that slant is taken out; ``angle`` the principal
    axis from vertical in radians, positive leaning right."""
    n, h, w = x.shape
    ys = torch.arange(h, dtype=torch.float32, device=x.device).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=x.device).view(1, 1, w)
    mass = x.sum((1, 2)).clamp_min(1e-6)
    my = (x * ys).sum((1, 2)) / mass
    mx = (x * xs).sum((1, 2)) / mass
    dy, dx = ys - my.view(n, 1, 1), xs - mx.view(n, 1, 1)
    cyy = (x * dy * dy).sum((1, 2)) / mass
    cxx = (x * dx * dx).sum((1, 2)) / mass
    cxy = (x * dx * dy).sum((1, 2)) / mass
    # Rows grow downwards, so a right-leaning stroke has cxy < 0.
    return {"mass": mass, "cxx": cxx, "cxy": cxy, "cyy": cyy, "shear": -cxy / cyy.clamp_min(1e-6),
            "deskewed_cxx": (cxx - cxy * cxy / cyy.clamp_min(1e-6)).clamp_min(0),
            "angle": -0.5 * torch.atan2(2 * cxy, cyy - cxx)}


def axis_nearer_horizontal(images: torch.Tensor) -> torch.Tensor:
    """(N,) bool, on the images' device: the digit's principal axis lies nearer horizontal than
    vertical (ink spread cxx > cyy), as in a wide 2 or 7 lying down; a shear turns such an
    axis against the turn it gives a tall digit (TrainConfig.roles_slant_by "axis")."""
    m = second_moments(ink(images.detach(), keep_graph=True))  # keep_graph: stay on the device
    return m["cxx"] > m["cyy"]


def measure(images: torch.Tensor) -> dict[str, np.ndarray]:
    """images: (N, 1, H, W) in [-1, 1] (or (N, C, H, W): channels are averaged)."""
    x = ink(images)
    m = second_moments(x)
    rotation = torch.rad2deg(m["angle"])
    width = 4 * torch.sqrt(m["deskewed_cxx"])
    binary = (x > 0.5).float()
    area = binary.sum((1, 2))
    padded = torch.nn.functional.pad(binary, (1, 1, 1, 1))
    perimeter = ((padded[:, 1:, :] != padded[:, :-1, :]).float().sum((1, 2))
                 + (padded[:, :, 1:] != padded[:, :, :-1]).float().sum((1, 2)))
    thickness = 2 * area / perimeter.clamp_min(1)
    return {"rotation": rotation.numpy(), "thickness": thickness.numpy(), "width": width.numpy()}


def unwrap_axial_rows(angles_deg: np.ndarray, rows: int) -> np.ndarray:
    """Axis angles (degrees) of ``rows`` row-major sweeps, made continuous along each row:
    turning by half a turn gives the same axis, so a step over 90 degrees is the small turn
    it differs from by 180."""
    a = np.asarray(angles_deg, dtype=np.float64).reshape(rows, -1)
    return np.unwrap(a, period=180.0, axis=1).reshape(np.shape(angles_deg))


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

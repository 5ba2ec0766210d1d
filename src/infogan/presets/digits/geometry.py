"""Digit geometry from image moments (on ink in [0, 1]; rows grow downwards).

- skew: the slope of x on y, -cxy / cyy, positive for a right-leaning digit: the slant that
  MNIST deskewing removes by a horizontal shear. A shear x += s * y changes it by exactly -s.
- rotation: the principal axis' angle from vertical (degrees, positive leaning right). A
  shear turns a wide digit's axis the other way to a tall one's, so even a perfect shear code
  reads only r = 0.84 against it on real test digits; it is reported beside the skew.
- width: 4 * sqrt(cxx - cxy^2 / cyy), the spread of x left after regressing x on y: the width
  of the deskewed digit. A shear leaves it unchanged; a horizontal stretch by a scales it by a.
- thickness: mean stroke width, 2 * ink area / ink perimeter on the binarised image.
"""
from __future__ import annotations

import numpy as np
import torch

from ...attributes import image_moments, ink
from ...augment import affine_warp


def digit_moments(x: torch.Tensor) -> dict[str, torch.Tensor]:
    m = image_moments(x)
    cxx, cxy, cyy = m["cxx"], m["cxy"], m["cyy"]
    # Rows grow downwards, so a right-leaning stroke has cxy < 0.
    return m | {"skew": -cxy / cyy.clamp_min(1e-6),
                "deskewed_cxx": (cxx - cxy * cxy / cyy.clamp_min(1e-6)).clamp_min(0),
                "angle": -0.5 * torch.atan2(2 * cxy, cyy - cxx)}


def slant_stretch(images: torch.Tensor, shear: torch.Tensor, log_stretch: torch.Tensor) -> torch.Tensor:
    """Per image: horizontal shear (x += shear * y) and horizontal stretch by exp(log_stretch)
    about the image centre, in one bilinear resampling."""
    one, zero = torch.ones_like(shear), torch.zeros_like(shear)
    # The inverse transform: affine_warp takes output -> input coordinates.
    theta = torch.stack([torch.stack([torch.exp(-log_stretch), -shear, zero], 1),
                         torch.stack([zero, one, zero], 1)], 1)
    return affine_warp(images, theta)


def unwrap_axial_rows(angles_deg: np.ndarray, rows: int) -> np.ndarray:
    """Axis angles (degrees) of ``rows`` row-major sweeps, made continuous along each row:
    an axis turned by half a turn is the same axis, so a step over 90 degrees is the small
    turn it differs from by 180."""
    a = np.asarray(angles_deg, dtype=np.float64).reshape(rows, -1)
    return np.unwrap(a, period=180.0, axis=1).reshape(np.shape(angles_deg))


def measure(images: torch.Tensor, rows: int | None = None) -> dict[str, np.ndarray]:
    """images: (N, C, H, W) in [-1, 1] (channels averaged); with ``rows``, the rotation of
    each row-major sweep is unwrapped along it."""
    x = ink(images)
    m = digit_moments(x)
    rotation = torch.rad2deg(m["angle"]).numpy()
    binary = (x > 0.5).float()
    area = binary.sum((1, 2))
    padded = torch.nn.functional.pad(binary, (1, 1, 1, 1))
    perimeter = ((padded[:, 1:, :] != padded[:, :-1, :]).float().sum((1, 2))
                 + (padded[:, :, 1:] != padded[:, :, :-1]).float().sum((1, 2)))
    return {"skew": m["skew"].numpy(), "rotation": unwrap_axial_rows(rotation, rows) if rows else rotation,
            "width": (4 * torch.sqrt(m["deskewed_cxx"])).numpy(),
            "thickness": (2 * area / perimeter.clamp_min(1)).numpy()}

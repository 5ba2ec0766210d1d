"""Differentiable image augmentation: random similarity warps and stroke changes.

Images are (N, C, H, W) in [-1, 1] with -1 as background; every warp fills what comes in
with background. ``Augment`` applies the configured warp (``train.augment``) to a batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Augment:
    """A random rotation / scale / shift per image, then (optionally) thicker or thinner strokes."""

    def __init__(self, degrees: float, scale: float, shift: float, stroke: bool, background: float = -1.0):
        self.degrees, self.scale, self.shift, self.stroke = degrees, scale, shift, stroke
        self.background = background

    @classmethod
    def from_config(cls, ac) -> "Augment":
        return cls(ac.degrees, ac.scale, ac.shift, ac.stroke, ac.background)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = random_affine(images, self.degrees, self.scale, self.shift, self.background)
        return random_stroke(out) if self.stroke else out


def random_affine(images: torch.Tensor, degrees: float, scale: float, shift: float,
                  background: float = -1.0) -> torch.Tensor:
    """Differentiable random rotation/scale/shift per image (bilinear; ``background`` comes in)."""
    n = images.shape[0]
    dev = images.device
    angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(degrees)
    s = 1 + (torch.rand(n, device=dev) * 2 - 1) * scale
    tx, ty = ((torch.rand(2, n, device=dev) * 2 - 1) * shift * 2)  # fraction of the half-width grid
    return affine_warp(images, similarity_theta(angle, s, tx, ty), background)


def similarity_theta(angle: torch.Tensor, scale, tx, ty) -> torch.Tensor:
    """(n, 2, 3) output -> input matrices of a rotation by ``angle`` radians (clockwise on
    screen, rows growing downwards), a scaling by ``scale`` and a shift."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)


def affine_warp(images: torch.Tensor, theta: torch.Tensor, background: float = -1.0) -> torch.Tensor:
    """Warp each image by its 2x3 matrix ``theta`` (output -> input coordinates, as
    ``affine_grid`` takes them); bilinear, with ``background`` filling what comes in."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + background


def rotate(images: torch.Tensor, radians: torch.Tensor) -> torch.Tensor:
    """Per image: rotation about the image centre by ``radians`` (``similarity_theta``'s sense)."""
    zero = torch.zeros_like(radians)
    return affine_warp(images, similarity_theta(radians, 1.0, zero, zero))


def random_stroke(images: torch.Tensor) -> torch.Tensor:
    """Per image: 3x3 dilation (thicker strokes), erosion (thinner) or nothing, a third each."""
    thick = F.max_pool2d(images, 3, 1, 1)
    thin = -F.max_pool2d(-images, 3, 1, 1)
    choice = torch.randint(3, (images.shape[0], 1, 1, 1), device=images.device)
    return torch.where(choice == 0, thick, torch.where(choice == 1, thin, images))

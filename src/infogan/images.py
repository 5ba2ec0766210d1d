"""Image grids (PNG) and animations (GIF), written atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .io import atomic_path


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def make_grid(images: torch.Tensor, ncol: int, pad: int = 2, pad_value: int = 255) -> Image.Image:
    """Tile images row-major into a grid with ``ncol`` columns."""
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    nrow = -(-n // ncol)
    canvas = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y:y + h, x:x + w] = arr[i]
    return Image.fromarray(canvas[..., 0] if c == 1 else canvas, "L" if c == 1 else "RGB")


def save_png(image: Image.Image, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def save_gif(frames: list[Image.Image], path: str | Path, frame_ms: int = 500) -> None:
    if not frames:
        return
    size = frames[-1].size
    frames = [f if f.size == size else f.resize(size) for f in frames]
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)


def gif_from_pngs(pngs: list[Path], path: str | Path, frame_ms: int = 500) -> None:
    frames = []
    for p in pngs:
        with Image.open(p) as im:
            frames.append(im.copy())
    save_gif(frames, path, frame_ms)

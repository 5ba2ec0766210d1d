"""Folders of images and LSUN lmdb exports, read as 64x64 RGB (centre-cropped, resized)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _square_64(im) -> np.ndarray:
    """PIL image -> centre-cropped, 64x64, uint8 (3, 64, 64)."""
    from PIL import Image

    im = im.convert("RGB")
    w, h = im.size
    side = min(w, h)
    im = im.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
    return np.asarray(im.resize((64, 64), Image.BILINEAR), dtype=np.uint8).transpose(2, 0, 1).copy()


def load_image_64(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return _square_64(im)
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


class ImageFileDataset(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(load_image_64(self.paths[i]))


class LsunDataset(torch.utils.data.Dataset):
    def __init__(self, root: str, classes: list[str]):
        import torchvision

        try:
            self.inner = torchvision.datasets.LSUN(root, classes=classes)
        except ImportError as exc:
            raise DataError("LSUN needs the lmdb package: pip install 'infogan-pipeline[lsun]'") from exc

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> torch.Tensor:
        img, _ = self.inner[i]
        return torch.from_numpy(_square_64(img))

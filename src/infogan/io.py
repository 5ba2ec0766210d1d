"""Leaf helpers for files: atomic writes (temp file in the same folder, then rename), safe
checkpoint loads, content hashes and the git revision a file was made from."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import CheckpointError


TEMP_SUFFIX = ".tmp"


def _unlink_files(paths) -> list[Path]:
    stale = [p for p in paths if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temp files an interrupted atomic write left in ``folder`` (and below)."""
    folder = Path(folder)
    return _unlink_files(folder.rglob(f".*{TEMP_SUFFIX}") if folder.is_dir() else ())


def remove_stale_temps_of(path: str | Path) -> list[Path]:
    """Delete the temp files that interrupted atomic writes of ``path`` left beside it."""
    path = Path(path)
    return _unlink_files(path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}*") if path.parent.is_dir() else ())


@contextmanager
def atomic_folder(path: str | Path, tag: str):
    """Yield a fresh folder beside ``path`` (``<name>.<tag>.partial``); it replaces ``path`` only
    if the block succeeds, and is removed if it fails."""
    path = Path(path)
    staging = path.with_name(f"{path.name}.{tag}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    os.replace(staging, path)


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds.
    Temp files of earlier writes of ``path`` that were killed are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps_of(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the file gets what open() would give it
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_torch_save(obj, path: str | Path) -> None:
    # Saved through a file object: given a path, torch.save names the archive's records after
    # the (random) temp file, so the same tensors would hash differently on every save and DVC
    # would see a re-prepared dataset as changed.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def safe_load(path: str | Path, map_location="cpu") -> dict:
    """Checkpoints hold tensors and plain containers only; never unpickle code. A file that is
    truncated, not a torch archive, or asks to unpickle anything else is a CheckpointError."""
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, a torn zip, an unsafe global, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path} cannot be loaded: {first} (truncated, or not written by this project; "
                              "delete it and rerun the command that makes it)") from None
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path} holds a {type(blob).__name__}, not a checkpoint dict")
    return blob


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_revision(cwd: str | Path | None = None) -> str:
    """HEAD's commit, with ``-dirty`` when tracked files differ from it. Without ``cwd``: the
    working folder's repository, else the one this package's source sits in (an editable
    install run from a scratch folder); ``unknown`` outside git."""
    if cwd is None:
        here = git_revision(".")
        return here if here != "unknown" else git_revision(Path(__file__).resolve().parent)
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"

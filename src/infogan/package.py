"""The ``package`` stage: put the selected generator into the BentoML model store.

The model folder holds ``generator.pt`` (constructor args, latent spec, weights: loaded with
``weights_only=True``) and the full ``selection.json``/``metrics.json``/``params.json``; the
store's labels and metadata carry the headline figures and provenance in primitive types, so
``bentoml models get`` shows them. The model is also exported as a ``.bentomodel`` file (the
DVC output the service image bakes in).

An interrupted run is undone by the next one before it writes: store versions whose copy did
not finish (their files do not hash to the ``content_sha256`` their metadata records) and a
``latest`` pointer that names no version are removed (``atomic_path`` removes the temp files
an interrupted export or record left).
BentoML stages a new version in a folder of the store's home, not the system temp folder, so
a kill leaves nothing outside the project.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path

import yaml

from .config import PackageConfig
from .io import atomic_path, atomic_write_json, git_revision
from .select import GENERATOR_FILE, SELECTION_FILE

# Where the project keeps its BentoML store unless BENTOML_HOME says otherwise.
DEFAULT_BENTOML_HOME = ".bentoml"
HEADLINE_METRICS = ("accuracy", "nmi", "mi_cat", "h_cat", "generated_purity")
CODE_VALUE_KEYS = ("value", "label", "label_index", "purity", "generated_purity", "images", "matched")
CODE_NAMES_FILE = "codes.json"  # in the model folder: labels of categorical values, roles of continuous codes
STAGING_DIR = "infogan-staging"  # in the store's home: where BentoML builds a version before copying it in


def export_bentomodel(model_dir: Path, dest: Path) -> None:
    """What ``bentoml.models.export_model`` writes (an xz tar of the model's folder, which
    ``bentoml models import`` reads), at xz preset 0 instead of 6: float weights barely compress
    at any preset (24.5 of 26.6 MB either way), and preset 6 took 17 of a package's 19 s."""
    with tarfile.open(dest, "w:xz", preset=0) as tar:
        tar.add(model_dir, arcname=".")


def code_roles(metrics: dict) -> dict[str, str]:
    """Continuous code -> the role evaluation found it plays (for labels and UIs)."""
    return dict((metrics.get("continuous_roles") or {}).get("roles") or {})


def code_names(metrics: dict) -> dict:
    """What evaluation learned about the codes, for the service to ask by: each categorical
    value's label with its purity on real images (and on G's, when measured), and each
    continuous code's role with the correlation it was found by. Empty parts for a model
    scored without labels."""
    categorical = {}
    for scores in metrics.get("categorical") or []:
        categorical[scores["code"]] = [
            {key: entry[key] for key in CODE_VALUE_KEYS if key in entry} for entry in scores.get("values") or []]
    found = (metrics.get("continuous_roles") or {}).get("codes") or {}
    continuous = {}
    for code, role in code_roles(metrics).items():
        detail = found.get(code) or {}
        continuous[code] = {"role": role, "attribute": detail.get("attribute", role), "r": detail.get("r")}
    return {"dataset": metrics.get("dataset"), "categorical": categorical, "continuous": continuous,
            "generated_purity": metrics.get("generated_purity")}


def headline(metrics: dict) -> dict:
    """Flat, primitive-typed figures for the store's metadata."""
    out = {k: metrics[k] for k in HEADLINE_METRICS if isinstance(metrics.get(k), (int, float))}
    quality = metrics.get("image_quality") or {}
    for key in ("fid", "fid_floor_train_vs_test", "precision", "recall"):
        if isinstance(quality.get(key), (int, float)):
            out[f"image_quality_{key}"] = quality[key]
    label_free = (metrics.get("label_free") or {}).get("paired_information_fraction")
    if isinstance(label_free, (int, float)):
        out["label_free_paired_information_fraction"] = label_free
    roles = metrics.get("continuous_roles") or {}
    for key, value in roles.items():
        if key.endswith("_r") and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    for code, attribute in code_roles(metrics).items():
        out[f"{code}_controls"] = attribute
    return out


def content_sha256(files: dict[str, bytes]) -> str:
    """One hash of a version's files (names and bytes), recorded in its metadata."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def _store_home() -> Path:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get())


def _finished(version: Path) -> bool:
    """Whether a store version's copy completed: model.yaml reads, and the files hash to what
    its metadata says (versions made before the hash was recorded: model.yaml reads)."""
    try:
        metadata = yaml.safe_load((version / "model.yaml").read_text()).get("metadata") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return False
    expected = metadata.get("content_sha256")
    if expected is None:
        return True
    names = [n for n in metadata.get("content_files", "").split(",") if n]
    try:
        return content_sha256({n: (version / n).read_bytes() for n in names}) == expected
    except OSError:
        return False


def reconcile_store(name: str) -> list[str]:
    """Remove what an interrupted package left in the store: unfinished versions of ``name``,
    a ``latest`` pointer that names no version, and BentoML's staging folders."""
    home = _store_home()
    shutil.rmtree(home / STAGING_DIR, ignore_errors=True)
    folder = home / "models" / name
    removed = []
    for version in sorted(folder.iterdir()) if folder.is_dir() else ():
        if version.is_dir() and not _finished(version):
            shutil.rmtree(version)
            removed.append(version.name)
    latest = folder / "latest"
    if latest.is_file() and not (folder / latest.read_text().strip() / "model.yaml").is_file():
        latest.unlink()  # BentoML points it again at the newest version
    return removed


@contextmanager
def _staged_in_store_home():
    """BentoML builds a new version in a temp folder: make that folder the store home's own."""
    staging = _store_home() / STAGING_DIR
    staging.mkdir(parents=True, exist_ok=True)
    previous, tempfile.tempdir = tempfile.tempdir, str(staging)
    try:
        yield
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(staging, ignore_errors=True)


def _same_as_latest(bentoml, name: str, metadata: dict, files: dict[str, bytes]):
    """The store's newest ``name`` model when it already holds exactly these files and
    figures (provenance aside), else None: re-running the stage must not pile up identical
    versions, and only the newest may be reused, since the service's default is ``:latest``."""
    try:
        latest = bentoml.models.get(f"{name}:latest")
    except bentoml.exceptions.NotFound:
        return None
    provenance = ("git_revision",)
    stored = {k: v for k, v in latest.info.metadata.items() if k not in provenance}
    if stored != {k: v for k, v in metadata.items() if k not in provenance}:
        return None
    for file, content in files.items():
        path = Path(latest.path_of(file))
        if not path.is_file() or path.read_bytes() != content:
            return None
    return latest


def package(pc: PackageConfig, selection_dir: str | Path, params: dict | None = None,
            record_path: str | Path = "models/package.json") -> dict:
    import bentoml

    selection_dir = Path(selection_dir)
    selection_file = selection_dir / SELECTION_FILE
    if not selection_file.is_file():
        raise FileNotFoundError(f"{selection_file} not found: run `python -m infogan select` (or `dvc repro`) first")
    selection = json.loads(selection_file.read_text())
    winner, metrics = selection["winner"], selection["metrics"]
    revision = git_revision()
    labels = {"experiment": winner["experiment"], "dataset": str(metrics.get("dataset")),
              "selected_on": selection["metric"], "git_revision": revision[:12]}
    metadata = {"experiment": winner["experiment"], "selection_metric": selection["metric"],
                "selection_value": winner["value"], "epoch": winner.get("epoch"), "git_revision": revision,
                "checkpoint_sha256": winner["checkpoint_sha256"], **headline(metrics)}
    metadata = {k: v for k, v in metadata.items() if v is not None}
    files = {GENERATOR_FILE: (selection_dir / GENERATOR_FILE).read_bytes(),
             "selection.json": json.dumps(selection, indent=2).encode(),
             "metrics.json": json.dumps(metrics, indent=2).encode(),
             "params.json": json.dumps(params or {}, indent=2).encode(),
             CODE_NAMES_FILE: json.dumps(code_names(metrics), indent=2).encode()}
    metadata.update(content_sha256=content_sha256(files), content_files=",".join(sorted(files)))
    export = Path(pc.export_path)
    for leftover in reconcile_store(pc.model_name):
        print(f"[package] removed {pc.model_name}:{leftover}, left unfinished by an interrupted run")
    with _staged_in_store_home():
        ref = _same_as_latest(bentoml, pc.model_name, metadata, files)
        if ref is None:
            with bentoml.models.create(pc.model_name, labels=labels, metadata=metadata) as ref:
                for file, content in files.items():
                    Path(ref.path_of(file)).write_bytes(content)
        else:  # the record describes what the store holds, provenance included
            labels, metadata = dict(ref.info.labels), dict(ref.info.metadata)
            print(f"[package] the newest {pc.model_name} ({ref.tag}) already holds this generator, selection, "
                  "metrics and params: reusing it")
        tag = str(ref.tag)
        with atomic_path(export) as tmp:  # from the store's copy (a new ``ref`` still points at its staging folder)
            export_bentomodel(Path(bentoml.models.get(tag).path), tmp)
    record = {"tag": tag, "model_name": pc.model_name, "export_path": str(export), "labels": labels,
              "metadata": metadata, "bentoml_home": os.environ.get("BENTOML_HOME", "")}
    atomic_write_json(record_path, record)
    return record

"""Bad input ends in one line naming the key or the file, with a documented exit code; an
interrupted write leaves nothing behind."""
from __future__ import annotations

import os
import stat

import pytest
import torch
import yaml

from infogan import cli, data
from infogan.errors import CONFIG_EXIT, DATA_EXIT, PREREQUISITE_EXIT
from infogan.io import atomic_write_text, remove_stale_temps


def _run(capsys, *argv) -> tuple[int, str]:
    code = cli.main(list(argv))
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) <= 4, err
    return code, err


@pytest.mark.parametrize("params_text, overrides, names", [
    (b"train:\n  epochs: 3\n  seed: \xff\n", [], "not UTF-8"),
    ("train:\n  epochs: 3\n  epochs: 4\n", [], "'epochs' appears twice"),
    ("train:\n  epochs: true\n", [], "train.epochs"),
    ("train:\n  seed: 18446744073709551616\n", [], "train.seed"),
    ("evaluate:\n  seed: -1\n", [], "evaluate.seed"),
    ("data:\n  dataset: cifar\nexperiments:\n  a: {data: {dataset: mnist}}\n", [], "defaults (top-level sections)"),
    ("train: {}\n", ["train.snapshot_epochs=[1,"], "train.snapshot_epochs"),
    ("train: {}\n", ["train.device={a: b: c}"], "train.device"),
    ("train:\n  objective: {real_inf: {weight: 1}}\n", [], "unknown objective term 'real_inf'"),
])
def test_bad_params_end_in_one_line_naming_the_key(tmp_path, monkeypatch, capsys, params_text, overrides, names):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "params.yaml"
    path.write_bytes(params_text if isinstance(params_text, bytes) else params_text.encode())
    args = ["validate"] + [a for o in overrides for a in ("-S", o)]
    code, err = _run(capsys, *args)
    assert code == CONFIG_EXIT and names in err, err
    assert not (tmp_path / "runs").exists()


def test_scientific_notation_is_a_number(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("train:\n  lr_g: 1e-3\n  lr_d: 2.0E-4\n")
    assert cli.main(["validate"]) == 0


def test_a_missing_device_is_a_prerequisite_error(tiny_project, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cli.prepare()
    code, err = _run(capsys, "train", "-S", "train.device=cuda")
    assert code == PREREQUISITE_EXIT and "train.device is 'cuda'" in err


def test_a_truncated_or_foreign_checkpoint_is_a_data_error_naming_the_file(tiny_project, capsys):
    cli.prepare()
    run = tiny_project / "runs" / "mnist"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a zip")
    code, err = _run(capsys, "evaluate")
    assert code == DATA_EXIT and "runs/mnist/checkpoint.pt cannot be loaded" in err
    torch.save({"x": torch.nn.Linear(2, 2)}, run / "checkpoint.pt")  # pickles a module: refused
    code, err = _run(capsys, "traverse")
    assert code == DATA_EXIT and "checkpoint.pt cannot be loaded" in err
    code, err = _run(capsys, "train", "--resume")
    assert code == DATA_EXIT and "checkpoint.pt cannot be loaded" in err


def test_idx_files_with_a_short_header_or_swapped_roles_name_the_file(tmp_path):
    with pytest.raises(data.DataError, match="header is cut short"):
        data.parse_idx(bytes([0, 0, 8, 3]) + b"\x00" * 6, "x-idx3")
    images = bytes([0, 0, 8, 3]) + (4).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 4 * 784
    folder = tmp_path / "swapped"
    folder.mkdir()
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (folder / f"{split}-{kind}-ubyte").write_bytes(images)
    with pytest.raises(data.DataError, match="labels-idx1-ubyte: holds an array of shape"):
        data.load_idx_folder(folder, "mnist", verify_checksums=False)


def test_prepare_writes_only_the_subset_and_clears_stale_temp_files(tiny_project):
    prepared = tiny_project / "data" / "prepared" / "mnist"
    prepared.mkdir(parents=True)
    stale = prepared / ".train.pt.abc123.tmp"
    stale.write_bytes(b"\0" * 1000)
    cli.prepare()
    assert not stale.exists()
    assert (prepared / "train.pt").stat().st_size < 2_000_000  # 256 images, not the whole 47 MB set


def test_atomic_files_get_the_usual_mode_and_leave_no_temp_file(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".x.json.q1.tmp").write_text("torn")
    assert [p.name for p in remove_stale_temps(tmp_path)] == [".x.json.q1.tmp"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "sub"]


def test_params_yaml_of_the_project_still_loads_under_the_strict_loader():
    from .conftest import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    from infogan.params import read_params

    assert read_params(ROOT / "params.yaml") == raw


def test_a_checkpoint_saved_by_another_version_names_the_setting_and_the_file(tmp_path):
    from infogan.checkpoint import load_checkpoint, rebuild_models
    from infogan.errors import CheckpointError
    from infogan.nets import Discriminator, Generator

    latent = {"noise_dim": 4, "categorical": [10], "continuous": 2}
    g, d = Generator("mnist", latent), Discriminator("mnist", latent)
    blob = {"generator_args": g.ctor_args, "generator": g.state_dict(), "latent": latent,
            "discriminator_args": d.ctor_args, "discriminator": d.state_dict()}
    path = tmp_path / "checkpoint.pt"
    torch.save(blob, path)
    rebuild_models(load_checkpoint(path))  # this version's own checkpoint loads
    torch.save(blob | {"discriminator_args": d.ctor_args | {"overcluster": 0}}, path)
    with pytest.raises(CheckpointError, match=r"checkpoint.pt was saved by another version .*'overcluster'"):
        load_checkpoint(path)
    torch.save(blob | {"generator_args": {"latent": latent}}, path)
    with pytest.raises(CheckpointError, match=r"lacks \['arch'\]"):
        load_checkpoint(path)

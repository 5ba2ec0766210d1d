"""The emoji dataset (64x64 colour, npm's emoji-datasource-google): prepare on a real slice of
the package (tests/fixtures/emoji), its errors, and training at 64x64 in colour."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from infogan import cli, emoji
from infogan.config import DataConfig
from infogan.data import prepare
from infogan.errors import DataError

from .conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "emoji"


def emoji_data(tmp_path: Path, folder: Path = FIXTURE, **extra) -> DataConfig:
    return DataConfig(dataset="emoji", image_size=64, local_dirs=[str(folder)], download=False,
                      prepared_dir=str(tmp_path / "prepared"), **extra)


def test_prepare_reads_images_categories_and_skin_tones(tmp_path):
    summary = prepare(emoji_data(tmp_path))
    listed = emoji.catalogue(FIXTURE)
    assert summary["train_count"] + summary["test_count"] == len(listed) == len(list((FIXTURE / emoji.IMAGE_DIR).iterdir()))
    train = torch.load(tmp_path / "prepared/emoji/train.pt", weights_only=True)
    test = torch.load(tmp_path / "prepared/emoji/test.pt", weights_only=True)
    assert train["images"].shape[1:] == (3, 64, 64) and train["images"].dtype == torch.uint8
    assert len(test["images"]) == len(listed) // emoji.TEST_EVERY  # every tenth image
    assert (train["images"][:, :, 0, 0] == 255).all()  # transparent corners became white
    categories = torch.cat([train["labels"], test["labels"]])
    assert set(categories.tolist()) == set(range(len(emoji.CATEGORIES)))
    tones = torch.cat([train["factors"]["skin_tone"], test["factors"]["skin_tone"]])
    assert 0 in tones.tolist() and tones.max() <= len(emoji.SKIN_TONES) - 1 and (tones > 0).any()
    # A skin-tone variation is its base emoji's category with a tone: read from emoji.json.
    entry = next(e for e in json.loads((FIXTURE / "emoji.json").read_text()) if e.get("skin_variations"))
    tone_key, variation = next(iter(entry["skin_variations"].items()))
    item = next(i for i in listed if i["file"] == variation["image"])
    assert item["category"] == emoji.CATEGORIES.index(entry["category"])
    assert item["skin_tone"] == emoji.TONE_CODES.index(tone_key.split("-")[0].upper()) + 1


def test_a_corrupt_or_missing_image_is_named_and_nothing_is_written(tmp_path):
    folder = tmp_path / "emoji"
    shutil.copytree(FIXTURE, folder)
    victim = sorted((folder / emoji.IMAGE_DIR).iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(DataError, match=victim.name):
        prepare(emoji_data(tmp_path, folder))
    assert not list((tmp_path / "prepared").rglob("*.pt"))
    victim.unlink()
    with pytest.raises(DataError, match=f"{victim.name}: listed in emoji.json but missing"):
        prepare(emoji_data(tmp_path, folder))


def test_no_local_copy_and_no_fetch_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="emoji.json"):
        prepare(emoji_data(tmp_path, tmp_path / "nowhere", download_dir=str(tmp_path / "raw")))


def test_colour_training_at_64_pixels(tmp_path, monkeypatch):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(local_dirs=[str(FIXTURE)], download=False)
    params["train"].update(epochs=1, batch_size=8, log_every=1, progress_bar=False, snapshot_epochs=[1], device="cpu")
    params["experiments"] = {"emoji": {
        "data": {"dataset": "emoji", "image_size": 64}, "model": {"arch": "dcgan64"},
        "latent": {"noise_dim": 16, "categorical": [10, 7], "continuous": 2},
        "train": {"augment": {"degrees": 10, "scale": 0.1, "shift": 0.05, "stroke": False, "background": 1.0}}}}
    params["pipeline"]["select"]["experiments"] = ["emoji"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    cli.prepare(experiment="emoji")
    summary = cli.train(experiment="emoji")
    assert summary["epochs"] == 1 and summary["images_seen"] > 0
    ckpt = torch.load(tmp_path / "runs/emoji/checkpoint.pt", weights_only=True)
    from infogan.checkpoint import rebuild_generator

    g = rebuild_generator(ckpt)
    with torch.no_grad():
        assert g(g.spec.assemble(g.spec.sample(2))).shape == (2, 3, 64, 64)
    assert (tmp_path / "runs/emoji/grids/epoch_001.png").is_file()


@pytest.mark.slow
def test_fetch_from_the_npm_registry_checks_the_tarball(tmp_path):
    """The real registry (CI's default run never downloads)."""
    folder = emoji.locate([tmp_path / "nowhere"], tmp_path / "raw" / "emoji", fetch=True, timeout_s=300)
    assert emoji.is_emoji_folder(folder) and len(emoji.catalogue(folder)) == 3786


@pytest.mark.slow
def test_the_service_answers_for_a_colour_model(tmp_path, monkeypatch):
    """prepare -> train -> evaluate -> select -> package on the emoji slice, then `bentoml
    serve`: 3-channel 64x64 images, /info says so, traversals too, and the explorer in Chromium."""
    import io
    import subprocess
    import sys

    import requests
    from PIL import Image

    from .conftest import PIPELINE, service_env, serving

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(local_dirs=[str(FIXTURE)], download=False)
    params["train"].update(epochs=1, batch_size=8, progress_bar=False, snapshot_epochs=[], device="cpu")
    params["evaluate"].update(fid=False, generated_per_value=0, n_samples=100, traversal_rows=4, batch_size=50,
                              bn_calibration_images=16)
    params["experiments"] = {"mnist": {"data": {"dataset": "emoji", "image_size": 64}, "model": {"arch": "dcgan64"},
                                       "latent": {"noise_dim": 16, "categorical": [10, 7], "continuous": 2}}}
    params["pipeline"]["select"]["experiments"] = ["mnist"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    home = tmp_path / "bentoml"
    proc = subprocess.run([sys.executable, "-c", PIPELINE], cwd=tmp_path, env=service_env(home),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with serving(home, tmp_path / "serve.log") as server:
        info = requests.post(f"{server['url']}/info", timeout=30).json()
        assert info["image"] == {"channels": 3, "height": 64, "width": 64}
        r = requests.post(f"{server['url']}/generate", json={"n": 4, "ncol": 2, "codes": {"cat1": 3}}, timeout=60)
        assert r.status_code == 200, r.text
        grid = Image.open(io.BytesIO(r.content))
        assert grid.mode == "RGB" and grid.size == (2 * 66 + 2, 2 * 66 + 2)
        r = requests.post(f"{server['url']}/traverse", json={"code": "cat1", "rows": 2}, timeout=60)
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (7 * 66 + 2, 2 * 66 + 2)
        explore_in_chromium(server, info)


def explore_in_chromium(server: dict, info: dict) -> None:
    """The latent explorer on the colour model: a control per code, a painted grid in colour,
    and what it paints after a click is what /generate returns for the same request."""
    import io

    import requests
    from PIL import Image
    from selenium.webdriver.common.by import By

    from .test_explorer import blob_bytes, chromium_driver, element_png, open_explorer, paints, require_browser, wait_for

    require_browser()
    driver = chromium_driver()
    try:
        open_explorer(driver, server["url"])
        for code in info["latent"]["codes"]:
            control = driver.find_element(By.ID, f"code-{code['name']}")
            if code["kind"] == "categorical":
                assert len(control.find_elements(By.TAG_NAME, "button")) == code["size"] + 1  # "any" and each value
            else:
                assert control.get_attribute("type") == "range"
        before = paints(driver)
        driver.find_element(By.CSS_SELECTOR, "#code-cat1 button[data-value='5']").click()
        wait_for(driver, f"explorer.paints > {before} && !explorer.pending()")
        body = driver.execute_script("return explorer.timings.at(-1).body;")
        assert body["codes"]["cat1"] == 5
        shown = blob_bytes(driver, driver.find_element(By.ID, "download-grid").get_attribute("href"))
        assert shown == requests.post(f"{server['url']}/generate", json=body, timeout=30).content
        # The page paints the model's colours: its channels differ as much as the PNG's do.
        png = Image.open(io.BytesIO(shown))
        painted = element_png(driver.find_element(By.ID, "grid"))
        assert png.mode == "RGB" and channel_spread(png) > 0
        assert channel_spread(painted) >= max(1, channel_spread(png) // 2), "the grid was painted without colour"
    finally:
        driver.quit()


def channel_spread(image) -> int:
    """How far a picture is from grey: the largest gap between two of its colour channels."""
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int(max(np.abs(pixels[..., a] - pixels[..., b]).max() for a, b in ((0, 1), (1, 2), (0, 2))))


def test_lsun_lmdb_export_prepares_and_trains_a_step(tmp_path, monkeypatch):
    """The `lsun` loader on a tiny LSUN-format lmdb (key -> encoded image), as LSUN's export
    tool writes it: prepare, then one training epoch at 64x64."""
    import io

    lmdb = pytest.importorskip("lmdb", reason="the optional `lsun` extra (pip install -e '.[lsun]')")
    from PIL import Image

    root = tmp_path / "lsun"
    (root / "bedroom_train_lmdb").mkdir(parents=True)
    env = lmdb.open(str(root / "bedroom_train_lmdb"), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, png in enumerate(sorted((FIXTURE / emoji.IMAGE_DIR).iterdir())[:12]):
            buf = io.BytesIO()
            Image.open(png).convert("RGB").resize((96, 80)).save(buf, format="JPEG")
            txn.put(f"{i:08d}".encode(), buf.getvalue())
    env.close()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(epochs=1, batch_size=4, log_every=1, progress_bar=False, snapshot_epochs=[], device="cpu",
                           eval_each_epoch=False)
    params["experiments"] = {"lsun_bedroom": {
        "data": {"dataset": "lsun", "image_size": 64, "local_dirs": [str(root)], "num_workers": 0},
        "model": {"arch": "dcgan64"}, "latent": {"noise_dim": 16, "categorical": [4], "continuous": 1}}}
    params["pipeline"]["select"]["experiments"] = ["lsun_bedroom"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)  # torchvision's LSUN keeps a key cache in the working folder
    assert cli.prepare(experiment="lsun_bedroom")["train_count"] == 12
    summary = cli.train(experiment="lsun_bedroom")
    assert summary["epochs"] == 1 and summary["images_seen"] == 12


def test_the_commented_emoji_experiment_in_params_yaml_is_valid(tmp_path):
    """The opt-in block must not rot while commented out: uncommented, it validates."""
    from infogan.params import config_from_dict

    lines, block = (ROOT / "params.yaml").read_text().splitlines(), []
    start = next(i for i, line in enumerate(lines) if line.startswith("#  emoji:"))
    for line in lines[start:]:
        if not (line.startswith("#  emoji:") or line.startswith("#    ")):
            break
        block.append(line[1:])
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["experiments"]["emoji"] = yaml.safe_load("\n".join(block))["emoji"]
    cfg = config_from_dict(raw, "emoji", [])
    assert (cfg.data.dataset, cfg.model.arch, cfg.latent.categorical) == ("emoji", "dcgan64", [10, 7])
    assert cfg.train.augment.background == 1.0

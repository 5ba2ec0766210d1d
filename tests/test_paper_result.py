"""The paper's MNIST result with the default settings (slow: ~minutes per epoch on 2 cores).

    make test-all            # or: pytest -m slow tests/test_paper_result.py
"""
import pytest
import yaml

from infogan import cli

from .conftest import ROOT, SHARED


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_mnist_reaches_95_percent(tmp_path, monkeypatch, seed):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["local_dirs"] = [str(SHARED / "{dataset_dir}")]
    params["train"]["progress_bar"] = False
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    cli.prepare(experiment="mnist")
    cli.train(experiment="mnist", overrides=[f"train.seed={seed}"])
    metrics = cli.evaluate(experiment="mnist", overrides=[f"train.seed={seed}", "evaluate.fid=false"])
    assert metrics["accuracy"] >= 0.95
    assert metrics["mi_cat"] >= 0.9 * metrics["h_cat"]

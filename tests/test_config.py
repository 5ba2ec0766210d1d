import pytest
import yaml

from infogan import cli
from infogan.config import ConfigError, config_from_dict, load_config

from .conftest import ROOT


def test_project_params_are_valid_for_every_experiment():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in raw["experiments"]:
        cfg = load_config(ROOT / "params.yaml", name)
        assert cfg.latent.categorical == [10] or cfg.data.dataset in ("image_folder", "lsun")
    mnist = load_config(ROOT / "params.yaml", "mnist")
    assert mnist.train.lr_d == 2e-4 and mnist.train.lr_g == 1e-3 and mnist.train.beta1 == 0.5
    assert mnist.train.lambda_cat == 1.0 and mnist.train.lambda_cont == 0.1


@pytest.mark.parametrize("raw, key, allowed", [
    ({"train": {"lr_d": -0.1}}, "train.lr_d", "greater than 0"),
    ({"latent": {"categorical": [10, 1]}}, "latent.categorical.1", "greater than or equal to 2"),
    ({"data": {"dataset": "cifar"}}, "data.dataset", "'mnist', 'fashion_mnist', 'image_folder' or 'lsun'"),
    ({"train": {"epoch": 3}}, "train.epoch", "unknown key"),
    ({"trian": {"epochs": 3}}, "trian", "unknown key"),
    ({"train": {"info_grad": "both"}}, "train.info_grad", "'shared' or 'q_head'"),
    ({"train": {"roles_slant_by": "skew"}}, "train.roles_slant_by", "'shear', 'rotation' or 'axis'"),
    ({"data": {"dataset": "mnist", "image_size": 64}, "model": {"arch": "dcgan64"}}, "data",
     "image_size must be 28"),
    ({"train": {"real_cont_roles": 1.0}, "latent": {"continuous": 0}}, "train.real_cont_roles",
     "latent.continuous >= 2"),
    ({"train": {"cont_purity": 1.0}, "latent": {"continuous": 1}}, "train.cont_purity", "latent.continuous >= 2"),
    ({"train": {"cont_purity": 1.0, "batch_size": 6, "nproc": 2}}, "train.cont_purity", "batch_size // train.nproc = 3"),
    ({"train": {"slant_turn_charge": 1.0}}, "train.slant_turn_charge", "train.cont_purity is 0"),
    ({"train": {"slant_turn_charge": -1.0}}, "train.slant_turn_charge", "greater than or equal to 0"),
    ({"train": {"cont_purity": 1.0, "cont_purity_from_epoch": 3, "slant_turn_charge": 1.0, "slant_turn_from_epoch": 2}},
     "train.slant_turn_from_epoch", "cont_purity_from_epoch or later"),
])
def test_bad_params_name_the_key_and_what_is_allowed(raw, key, allowed):
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    message = str(info.value)
    assert key in message and allowed in message, message


def test_experiment_overrides_and_cli_overrides(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 4},
                                    "experiments": {"a": {"train": {"seed": 3}}, "b": {"enabled": False}}}))
    cfg = load_config(path, "a", ["train.epochs=2", "latent.categorical=[5, 5]"])
    assert (cfg.train.epochs, cfg.train.seed, cfg.latent.categorical) == (2, 3, [5, 5])
    with pytest.raises(ConfigError, match="unknown experiment 'c'.*defined: \\['a', 'b'\\]"):
        load_config(path, "c")
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(path, "a", ["train.epochs=0"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, "a", ["train.epochs"])


def test_cli_reports_bad_params_without_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("train:\n  lr_g: -1\n")
    assert cli.main(["train"]) == 2
    err = capsys.readouterr().err
    assert "train.lr_g" in err and "greater than 0" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()

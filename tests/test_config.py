import pytest
import yaml

from infogan import cli
from infogan.config import ConfigError
from infogan.params import config_from_dict, load_config

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
    ({"data": {"dataset": "cifar"}}, "data.dataset", "'mnist', 'fashion_mnist', 'emoji', 'image_folder' or 'lsun'"),
    ({"train": {"epoch": 3}}, "train.epoch", "unknown key"),
    ({"trian": {"epochs": 3}}, "trian", "unknown key"),
    ({"train": {"info_grad": "both"}}, "train.info_grad", "'shared' or 'q_head'"),
    ({"latent": {"categorical": [10, 1]}}, "latent.categorical", "2-1000 values"),
    ({"data": {"dataset": "mnist", "image_size": 64}, "model": {"arch": "dcgan64"}}, "data",
     "image_size must be 28"),
    ({"train": {"objective": {"real_inf": {"weight": 1}}}}, "train.objective",
     "unknown objective term 'real_inf'; allowed: real_info, warped_info, digit_roles, role_purity"),
    ({"train": {"objective": {"real_info": {"wieght": 1}}}}, "train.objective", "real_info.wieght: Extra inputs"),
    ({"train": {"objective": {"real_info": {"weight": -1}}}}, "train.objective",
     "real_info.weight: Input should be greater than or equal to 0"),
    ({"train": {"objective": {"digit_roles": {"weight": 1.0}}}, "latent": {"continuous": 0}}, "digit_roles",
     "latent.continuous >= 2"),
    ({"train": {"objective": {"role_purity": {"weight": 1.0}}}, "latent": {"continuous": 1}}, "role_purity",
     "latent.continuous >= 2"),
    ({"train": {"objective": {"role_purity": {"weight": 1.0}}, "batch_size": 6, "nproc": 2}}, "role_purity",
     "batch_size // train.nproc = 3"),
    ({"train": {"objective": {"slant_turn": {"weight": 1.0}}}}, "slant_turn", "switch role_purity on"),
    ({"train": {"objective": {"role_purity": {"weight": 1, "from_epoch": 3}, "slant_turn": {"weight": 1, "from_epoch": 2}}}},
     "slant_turn.from_epoch", "is before role_purity.from_epoch"),
    ({"train": {"objective": {"role_purity": {"weight": 1, "every": 4}, "slant_turn": {"weight": 1}}}},
     "slant_turn.every", "differs from role_purity.every"),
    ({"train": {"objective": {"role_purity": {"weight": 1, "batch": 0.5}, "slant_turn": {"weight": 1}}}},
     "slant_turn.batch", "differs from role_purity.batch"),
    ({"train": {"objective": {"role_purity": {"weight": 1.0, "batch": 0.02}}, "batch_size": 128}}, "role_purity",
     "of which it sees batch = 0.02"),
    ({"train": {"objective": {"warped_info": {"weight": 1, "every": 0}}}}, "train.objective",
     "warped_info.every: Input should be greater than or equal to 1"),
    ({"evaluate": {"attributes": "faces"}}, "evaluate.attributes", "allowed: image, digits"),
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


def test_a_term_that_is_off_or_whose_lambda_is_zero_is_not_built():
    from infogan.latent import LatentSpec
    from infogan.objective import Objective

    cfg = load_config(ROOT / "params.yaml", "mnist")
    spec = LatentSpec.from_config(cfg.latent)
    assert [t.name for t in Objective(cfg.train, spec).terms] == [
        "real_info", "warped_info", "digit_roles", "role_purity", "slant_turn"]
    ablation = load_config(ROOT / "params.yaml", "mnist", ["train.lambda_cont=0", "train.objective.warped_info.weight=0"])
    assert [t.name for t in Objective(ablation.train, spec).terms] == ["real_info"]
    plain = load_config(ROOT / "params.yaml", "mnist", ["train.objective={}"])
    assert Objective(plain.train, spec).terms == []

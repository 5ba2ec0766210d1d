"""Training, resume, evaluation and traversal on a few hundred real MNIST images."""
import json
import subprocess
import sys

import pytest
import torch

from infogan import cli
from infogan.checkpoint import rebuild_generator
from infogan.params import load_config
from infogan.train import Trainer


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_two_steps_on_real_subset_update_every_part(tiny_project):
    cli.prepare()
    cfg = load_config("params.yaml", "mnist")
    trainer = Trainer(cfg, tiny_project / "runs" / "steps")
    before = {k: v.clone() for k, v in list(trainer.G.state_dict().items()) + [
        ("D." + k, v) for k, v in trainer.D.state_dict().items()]}
    real = next(trainer.batches.epoch(torch.Generator().manual_seed(0)))
    assert real.shape == (64, 1, 28, 28) and -1 <= float(real.min()) and float(real.max()) <= 1
    for _ in range(2):
        stats = trainer.train_step(real)
    assert all(torch.isfinite(v) for v in stats.values())
    after = dict(list(trainer.G.state_dict().items()) + [("D." + k, v) for k, v in trainer.D.state_dict().items()])
    for prefix in ("fc.0.weight", "D.body.0.weight", "D.d_head.weight", "D.q_head.3.weight"):
        assert not torch.equal(before[prefix], after[prefix]), f"{prefix} was not trained"


@pytest.mark.parametrize("lam, q_reaches_g", [(0.0, False), (1.0, True)])
def test_information_term_reaches_g_only_when_lambda_positive(tiny_project, lam, q_reaches_g):
    """lambda = 0 is a plain GAN for G (the paper's ablation) while Q still learns from G's
    samples: two runs that differ only in Q's weights must then give the same G. The label-free
    additions stay switched on: lambda = 0 must switch them off with it."""
    cli.prepare()
    cfg = load_config("params.yaml", "mnist", [f"train.lambda_cat={lam}", f"train.lambda_cont={lam / 10}",
                                               "train.objective.role_purity.from_epoch=1",
                                               "train.objective.slant_turn.from_epoch=1"])
    a, b = Trainer(cfg, tiny_project / "a"), Trainer(cfg, tiny_project / "b")
    b.D.load_state_dict(a.D.state_dict())
    b.G.load_state_dict(a.G.state_dict())
    with torch.no_grad():
        b.D.q_head[3].weight.mul_(-3.0)
    real = next(a.batches.epoch(torch.Generator().manual_seed(0)))
    q_before = a.D.q_head[3].weight.clone()
    for trainer in (a, b):
        torch.manual_seed(5)
        trainer.train_step(real)
    assert not torch.equal(q_before, a.D.q_head[3].weight), "Q must learn in both cases"
    same_g = all(torch.equal(x, y) for x, y in zip(a.G.parameters(), b.G.parameters()))
    assert same_g is not q_reaches_g


def test_a_term_waits_for_its_epoch_and_then_reaches_g(tiny_project):
    """role_purity from epoch 1 in both runs, slant_turn from epoch 2 in one of them: one step in
    epoch 1 leaves the two G's equal, one step in epoch 2 does not."""
    cli.prepare()
    purity = ["train.objective.role_purity.from_epoch=1"]
    plain = Trainer(load_config("params.yaml", "mnist", purity + ["train.objective.slant_turn.weight=0"]),
                    tiny_project / "plain")
    charged = Trainer(load_config("params.yaml", "mnist", purity + ["train.objective.slant_turn.from_epoch=2"]),
                      tiny_project / "charged")
    real = next(plain.batches.epoch(torch.Generator().manual_seed(0)))
    for epoch, equal in ((0, True), (1, False)):  # Trainer.epoch is 0-based
        charged.G.load_state_dict(plain.G.state_dict())
        charged.D.load_state_dict(plain.D.state_dict())
        for trainer in (plain, charged):
            trainer.epoch = epoch
            torch.manual_seed(5)
            trainer.train_step(real)
        same_g = all(torch.equal(x, y) for x, y in zip(plain.G.parameters(), charged.G.parameters()))
        assert same_g is equal, f"epoch {epoch + 1}: the term must {'wait' if equal else 'reach G'}"


def _body_calls_per_step(trainer, real) -> int:
    calls = []
    handle = trainer.D.body.register_forward_hook(lambda *_: calls.append(1))
    trainer.train_step(real)
    handle.remove()
    return len(calls)


def test_a_term_that_is_off_costs_no_forward_pass(tiny_project):
    """The paper's step passes D's body three times (real and generated in D's step, generated in
    G's); each term that is on adds its own passes, and one that is off (weight 0, its lambda 0,
    or before its epoch) adds none."""
    cli.prepare()

    def calls(*overrides, epoch=4):  # every term of the mnist preset is active from epoch 5 on
        trainer = Trainer(load_config("params.yaml", "mnist", list(overrides)), tiny_project / "calls")
        trainer.epoch = epoch
        return _body_calls_per_step(trainer, next(trainer.batches.epoch(torch.Generator().manual_seed(0))))

    assert calls("train.objective={}") == 3
    assert calls() == 3 + 1 + 1 + 1  # real_info's augmented pair, warped_info, digit_roles
    assert calls("train.objective.real_info.pairs=false") == 5
    assert calls("train.objective.warped_info.weight=0", "train.objective.digit_roles.weight=0") == 4
    assert calls("train.lambda_cont=0", "train.objective.real_info.weight=0",
                 "train.objective.warped_info.weight=0") == 3
    assert calls("train.objective.real_info.from_epoch=2", epoch=0) == 5


def test_a_lazy_term_joins_every_nth_step_weighted_n_times(tiny_project):
    """``every: 3`` computes warped_info on steps 0 and 3 only, each time weighted 3 times: from one
    state and one RNG stream, its step equals the term at weight 3 on the steps it joins, and
    the term switched off on the steps it skips."""
    cli.prepare()

    def trainer(name, warped):
        objective = "train.objective={warped_info: {" + warped + "}}"
        return Trainer(load_config("params.yaml", "mnist", [objective]), tiny_project / name)

    lazy = trainer("lazy", "weight: 1.0, every: 3")
    real = next(lazy.batches.epoch(torch.Generator().manual_seed(0)))
    calls = []
    for step in range(4):
        lazy.step = step
        calls.append(_body_calls_per_step(lazy, real))
    assert calls == [4, 3, 3, 4]
    for step, twin in ((0, trainer("every_step", "weight: 3.0")), (1, trainer("off", "weight: 0.0"))):
        lazy = trainer("lazy", "weight: 1.0, every: 3")
        twin.G.load_state_dict(lazy.G.state_dict())
        twin.D.load_state_dict(lazy.D.state_dict())
        lazy.step = twin.step = step
        for t in (lazy, twin):
            torch.manual_seed(5)
            stats = t.train_step(real)
        assert ("warped_info" in stats) is (step == 0)
        assert all(torch.equal(x, y) for x, y in zip(lazy.G.parameters(), twin.G.parameters())), f"step {step}"


def test_a_term_with_a_sub_batch_sees_its_share_of_the_step(tiny_project):
    """``batch: 0.25`` of a 64-image step: real_info's augmented pairs and warped_info's warped
    samples pass D's body as 16 images, the paper's three passes stay whole."""
    cli.prepare()
    cfg = load_config("params.yaml", "mnist", ["train.objective={real_info: {weight: 1.0, pairs: true, batch: 0.25}, "
                                               "warped_info: {weight: 1.0, batch: 0.25}}"])
    trainer = Trainer(cfg, tiny_project / "sub_batch")
    sizes = []
    handle = trainer.D.body.register_forward_hook(lambda _m, args, _out: sizes.append(args[0].shape[0]))
    trainer.train_step(next(trainer.batches.epoch(torch.Generator().manual_seed(0))))
    handle.remove()
    assert sizes == [64, 64, 16, 64, 16]


def test_digit_roles_trains_q_and_d_body_only(tiny_project):
    """The real-image roles term: a finite squared error whose gradient reaches Q's head and
    D's body (it is part of D's step), never G."""
    cli.prepare()
    trainer = Trainer(load_config("params.yaml", "mnist"), tiny_project / "real_roles")
    real = next(trainer.batches.epoch(torch.Generator().manual_seed(0)))
    term = next(t for t in trainer.objective.terms if t.name == "digit_roles")
    ctx = trainer.context(real)
    loss = term.loss(ctx)
    assert torch.isfinite(loss) and loss.item() >= 0
    loss.backward()
    assert trainer.D.q_head[3].weight.grad.abs().sum() > 0
    assert trainer.D.body[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in trainer.G.parameters())


@pytest.mark.parametrize("overrides", [[], ["train.objective.real_info.every=3", "train.objective.warped_info.every=3"]],
                         ids=["every-step", "lazy"])
def test_train_resume_equals_uninterrupted(tiny_project, overrides):
    """Also with lazy terms whose cycle crosses the epoch boundary (4 steps per epoch, every 3rd
    step): the cycle follows the global step count, which the checkpoint carries."""
    cli.prepare()
    cli.train(experiment="mnist", runs_dir="straight", overrides=overrides)
    cli.train(experiment="mnist", runs_dir="split", stop_after_epochs=1, overrides=overrides)
    first = _state("split/mnist/checkpoint.pt")
    assert first["epoch"] == 1
    cli.train(experiment="mnist", runs_dir="split", resume=True, overrides=overrides)
    a, b = _state("straight/mnist/checkpoint.pt"), _state("split/mnist/checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"]
    for key in a["generator"]:
        assert torch.equal(a["generator"][key], b["generator"][key]), key
    for key in a["discriminator"]:
        assert torch.equal(a["discriminator"][key], b["discriminator"][key]), key
    steps_a = (tiny_project / "straight/mnist/logs/steps.tsv").read_text()
    steps_b = (tiny_project / "split/mnist/logs/steps.tsv").read_text()
    assert steps_a == steps_b
    assert not list((tiny_project / "split").rglob("*.tmp"))


def test_labels_only_score_scrambled_labels_give_bit_identical_weights(tiny_project):
    """No label reaches training: the same run on data whose labels (train and test) are
    scrambled ends with the same G, D (Q's head included) and optimizer states, bit for bit;
    only the per-epoch scores, which read the test labels, change."""
    cli.prepare()
    clean = cli.train(experiment="mnist", runs_dir="clean", overrides=["train.epochs=1"])
    scramble = torch.Generator().manual_seed(1)
    for split in ("train", "test"):
        path = tiny_project / "data/prepared/mnist" / f"{split}.pt"
        blob = torch.load(path, weights_only=True)
        blob["labels"] = torch.randint(0, 10, blob["labels"].shape, generator=scramble)
        torch.save(blob, path)
    scrambled = cli.train(experiment="mnist", runs_dir="scrambled", overrides=["train.epochs=1"])
    a, b = _state("clean/mnist/checkpoint.pt"), _state("scrambled/mnist/checkpoint.pt")
    for part in ("generator", "discriminator"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    for part in ("opt_d", "opt_g", "opt_q"):
        for index, state in a[part]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, b[part]["state"][index][key]), (part, index, key)
    assert clean["history"][-1]["accuracy"] != scrambled["history"][-1]["accuracy"]  # the scores did read them


def test_resume_after_kill_mid_epoch(tiny_project):
    """A real SIGKILL during epoch 2: the checkpoint of epoch 1 is intact and resume finishes."""
    cli.prepare()
    code = ("import sys; from infogan import cli, train as t\n"
            "orig = t.Trainer.train_step\n"
            "def step(self, real):\n"
            "    if self.epoch == 1 and self.step == 6: import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return orig(self, real)\n"
            "t.Trainer.train_step = step\n"
            "cli.train(experiment='mnist')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert _state("runs/mnist/checkpoint.pt")["epoch"] == 1
    summary = cli.train(experiment="mnist", resume=True)
    assert summary["epochs"] == 2 and [h["epoch"] for h in summary["history"]] == [1, 2]


def test_full_chain_evaluate_and_traverse(tiny_project):
    cli.prepare()
    summary = cli.train(experiment="mnist")
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert 0.0 <= summary["history"][-1]["accuracy"] <= 1.0
    for record in summary["history"]:  # wall time so far beside the machine's peak, to compare machines by
        assert record["matmul_peak_gflops"] > 0 and record["device_name"] and record["elapsed_s"] >= record["seconds"]
    run = tiny_project / "runs" / "mnist"
    assert (run / "grids" / "epoch_001.png").exists() and (run / "progress.gif").exists()
    header = (run / "logs" / "steps.tsv").read_text().splitlines()[0].split("\t")
    assert header[:5] == ["step", "epoch", "images", "loss_d", "loss_g"]

    ckpt = _state(run / "checkpoint.pt")  # weights_only: no pickled code in checkpoints
    g = rebuild_generator(ckpt)  # no params.yaml needed
    with torch.no_grad():
        out = g(g.spec.assemble(g.spec.sample(4)))
    assert out.shape == (4, 1, 28, 28)

    metrics = cli.evaluate(experiment="mnist")
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["checkpoint"].endswith("checkpoint.pt") and len(saved["checkpoint_sha256"]) == 64
    assert saved["epoch"] == 2
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["nmi"] <= 1
    (paired,) = metrics["label_free"]["paired_information"]  # a toy's Q may read one value for every image: 0
    assert paired["code"] == "cat0" and 0 <= metrics["label_free"]["paired_information_fraction"] == paired["fraction"] <= 1
    assert metrics["time_to_accuracy"]["target"] == 0.95  # a 256-image toy does not get there
    assert metrics["time_to_accuracy"]["reached"] is False
    assert {"Q on real test images: BatchNorm calibration, label-free paired information",
            "Q on real test images (accuracy, NMI)", "L_I on generated samples",
            "FID and precision/recall"} <= set(metrics["phase_seconds"])
    assert metrics["h_cat"] == pytest.approx(2.302585, abs=1e-5) and metrics["mi_cat"] <= metrics["h_cat"] + 1e-6
    assert set(metrics["continuous"]) == {"cont0", "cont1"}
    assert set(metrics["continuous"]["cont0"]) == {"skew", "rotation", "thickness", "width"}
    assert metrics["continuous_roles"]["roles"] == {"cont0": "slant", "cont1": "width"} or metrics["continuous_roles"]["roles"] == {"cont1": "slant", "cont0": "width"}
    quality = metrics["image_quality"]
    assert quality["fid"] >= 0 and quality["fid_floor_train_vs_test"] >= 0
    assert quality["fid_floor_train_vs_test"] < quality["fid"]  # a 2-epoch toy G is far from real data

    manifest = cli.traverse(experiment="mnist")
    files = {f["file"] for f in manifest["files"]}
    assert {"images/cat0.png", "images/cont0.png", "images/cont1.png", "images/cat0_over_epochs.gif"} <= files
    from PIL import Image
    with Image.open(run / "traversals" / "images" / "cat0.png") as im:  # 3 rows x 10 values of 28px + 2px pads
        assert im.size == (10 * 30 + 2, 3 * 30 + 2)
    with Image.open(run / "traversals" / "images" / "cont0_over_epochs.gif") as im:
        assert im.n_frames == 2


def test_module_cli_help_and_errors(tiny_project):
    out = subprocess.run([sys.executable, "-m", "infogan", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("prepare", "train", "evaluate", "traverse"):
        assert command in out.stdout
    out = subprocess.run([sys.executable, "-m", "infogan", "evaluate"], capture_output=True, text=True)
    assert out.returncode == 4 and "run `python -m infogan train` first" in out.stderr
    assert "exit codes:" in subprocess.run([sys.executable, "-m", "infogan", "--help"], capture_output=True,
                                           text=True).stdout


def test_resume_refuses_a_checkpoint_trained_with_other_settings(tiny_project, capsys):
    cli.prepare()
    cli.train(experiment="mnist", stop_after_epochs=1)
    # More epochs: a true continuation.
    summary = cli.train(experiment="mnist", resume=True, overrides=["train.epochs=3"],
                        stop_after_epochs=1)
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    # Another learning rate: resuming would mix two runs, so it starts afresh and says why.
    summary = cli.train(experiment="mnist", resume=True, overrides=["train.lr_g=0.0005"], stop_after_epochs=1)
    assert [h["epoch"] for h in summary["history"]] == [1]
    assert "train.lr_g" in capsys.readouterr().out


def test_dcgan64_trains_on_an_image_folder(tmp_path, monkeypatch):
    """The LSUN-style 64x64 path end to end on a folder of (synthetic) colour images."""
    import numpy as np
    import yaml
    from PIL import Image

    from .conftest import tiny_params

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    params = tiny_params()
    params["experiments"]["lsun_bedroom"] = {
        "data": {"dataset": "image_folder", "image_size": 64, "local_dirs": [str(folder)]},
        "model": {"arch": "dcgan64", "base_channels": 8},
        "train": {"epochs": 1, "batch_size": 16, "snapshot_epochs": [1]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert cli.prepare(experiment="lsun_bedroom")["train_count"] == 40
    summary = cli.train(experiment="lsun_bedroom")
    assert summary["steps"] == 2
    g = rebuild_generator(_state(tmp_path / "runs/lsun_bedroom/checkpoint.pt"))
    with torch.no_grad():
        assert g(g.spec.assemble(g.spec.sample(2))).shape == (2, 3, 64, 64)
    metrics = cli.evaluate(experiment="lsun_bedroom")
    assert "accuracy" not in metrics and "image_quality" not in metrics  # no labels to score against
    assert metrics["mi_cat"] <= metrics["h_cat"] + 1e-6
    assert len(cli.traverse(experiment="lsun_bedroom")["files"]) >= 3

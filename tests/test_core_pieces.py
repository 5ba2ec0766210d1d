"""The general core's pieces on constructed cases: latent layout, the objective's losses, scores."""
import copy
import math

import numpy as np
import pytest
import torch

from infogan.attributes import within_row_correlation, within_row_correlation_interval
from infogan.latent import LatentBatch, LatentSpec
from infogan.metrics import hungarian_accuracy, normalized_mutual_info
from infogan.objective import d_loss, g_loss, info_nll, mutual_info_lower_bound


def test_spec_layout_and_entropy():
    spec = LatentSpec(noise_dim=62, categorical=(10, 3), continuous=2)
    assert spec.input_dim == 62 + 13 + 2
    assert spec.q_output_dim == 13 + 4
    assert spec.entropy_categorical == pytest.approx(math.log(10) + math.log(3))
    assert spec.entropy_continuous == pytest.approx(2 * math.log(2))
    names = [c["name"] for c in spec.describe()]
    assert names == ["cat0", "cat1", "cont0", "cont1"]


def test_sampling_shapes_ranges_and_seed():
    spec = LatentSpec(noise_dim=5, categorical=(10, 4), continuous=3)
    a = spec.sample(4000, torch.Generator().manual_seed(1))
    b = spec.sample(4000, torch.Generator().manual_seed(1))
    assert a.z.shape == (4000, 5) and a.cat.shape == (4000, 2) and a.cont.shape == (4000, 3)
    assert torch.equal(a.z, b.z) and torch.equal(a.cat, b.cat)
    assert a.cat[:, 0].min() == 0 and a.cat[:, 0].max() == 9 and a.cat[:, 1].max() == 3
    assert a.cont.min() >= -1 and a.cont.max() <= 1 and a.cont.abs().max() > 0.99
    counts = torch.bincount(a.cat[:, 0], minlength=10).float()
    assert (counts / 4000 - 0.1).abs().max() < 0.03  # uniform prior


def test_assemble_one_hot_and_split():
    spec = LatentSpec(noise_dim=2, categorical=(3,), continuous=1)
    batch = LatentBatch(torch.zeros(2, 2), torch.tensor([[2], [0]]), torch.tensor([[0.5], [-0.5]]))
    x = spec.assemble(batch)
    assert x.tolist() == [[0, 0, 0, 0, 1, 0.5], [0, 0, 1, 0, 0, -0.5]]
    q = torch.arange(5.0).unsqueeze(0)
    logits, mean, log_std = spec.split_q(q)
    assert logits[0].tolist() == [[0, 1, 2]] and mean.tolist() == [[3]] and log_std.tolist() == [[4]]


def test_spec_rejects_degenerate_codes():
    with pytest.raises(ValueError, match=">= 2 values"):
        LatentSpec(categorical=(1,))


def test_gan_losses_on_known_logits():
    zero = torch.zeros(8)
    assert float(d_loss(zero, zero)) == pytest.approx(2 * math.log(2))
    assert float(g_loss(zero)) == pytest.approx(math.log(2))
    assert float(g_loss(torch.full((4,), 20.0))) < 1e-6


def test_info_terms_known_values():
    spec = LatentSpec(noise_dim=0, categorical=(10,), continuous=2)
    codes = LatentBatch(torch.zeros(6, 0), torch.arange(6).unsqueeze(1), torch.tensor([[0.3, -0.2]] * 6))
    # Uniform logits: CE = ln 10, so L_I = 0. Mean = code, log-std = 0: NLL = 0.5 ln(2 pi) per code.
    q = torch.cat([torch.zeros(6, 10), codes.cont, torch.zeros(6, 2)], 1)
    terms = info_nll(spec, q, codes)
    assert float(terms.cat_nll) == pytest.approx(math.log(10), abs=1e-6)
    assert float(terms.cont_nll) == pytest.approx(2 * 0.5 * math.log(2 * math.pi), abs=1e-6)
    mi_cat, _ = mutual_info_lower_bound(spec, terms)
    assert mi_cat == pytest.approx(0.0, abs=1e-6)
    # A confident, correct Q recovers all of H(c).
    sure = torch.cat([torch.nn.functional.one_hot(codes.cat[:, 0], 10) * 50.0, torch.zeros(6, 4)], 1)
    assert mutual_info_lower_bound(spec, info_nll(spec, sure, codes))[0] == pytest.approx(
        math.log(10), abs=1e-4)
    # log-std = log 2 and an error of 2: 0.5 ln 2pi + ln 2 + 0.5 per code.
    off = torch.cat([torch.zeros(6, 10), codes.cont + 2, torch.full((6, 2), math.log(2))], 1)
    expect = 2 * (0.5 * math.log(2 * math.pi) + math.log(2) + 0.5)
    assert float(info_nll(spec, off, codes).cont_nll) == pytest.approx(expect, abs=1e-5)


def test_hungarian_accuracy_on_permutations():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 1000)
    perm = rng.permutation(10)
    acc, mapping = hungarian_accuracy(perm[labels], labels, 10, 10)
    assert acc == 1.0
    assert all(mapping[perm[k]] == k for k in range(10))
    noisy = perm[labels].copy()
    noisy[:100] = (noisy[:100] + 1) % 10
    assert hungarian_accuracy(noisy, labels, 10, 10)[0] == pytest.approx(0.9, abs=0.01)
    # 4 and 9 merged into one code value: that value matches the larger group, the smaller is lost.
    merged = np.where(labels == 9, 4, labels)
    smaller = min(np.mean(labels == 4), np.mean(labels == 9))
    assert hungarian_accuracy(merged, labels, 10, 10)[0] == pytest.approx(1 - smaller)


def test_nmi_bounds():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 5000)
    assert normalized_mutual_info((labels + 3) % 10, labels) == pytest.approx(1.0)
    assert normalized_mutual_info(rng.integers(0, 10, 5000), labels) < 0.02


def test_within_row_correlation_and_its_bootstrap_interval():
    """Rows with their own offsets: the offsets do not count; a weak true effect under noise
    gets an interval around its estimate that narrows with more rows; an unrelated attribute's
    interval straddles 0."""
    rng = np.random.default_rng(0)
    steps = np.linspace(-1, 1, 9)

    def sweep(rows, slope):
        values = np.tile(steps, rows)
        attribute = np.repeat(rng.normal(0, 10, rows), 9) + slope * values + rng.normal(0, 1, rows * 9)
        return values, attribute

    values, attribute = sweep(200, 0.0)
    assert abs(within_row_correlation(values, np.repeat(np.arange(200.0), 9) + 2 * values, 200) - 1) < 1e-9
    r = within_row_correlation(values, attribute, 200)
    lo, hi = within_row_correlation_interval(values, attribute, 200)
    assert lo < 0 < hi and lo <= r <= hi
    widths = []
    for rows in (200, 2000):
        values, attribute = sweep(rows, 0.5)
        r = within_row_correlation(values, attribute, rows)
        lo, hi = within_row_correlation_interval(values, attribute, rows)
        true_r = 0.5 * steps.std() / math.sqrt((0.5 * steps.std()) ** 2 + 8 / 9)  # noise left after centring
        assert lo <= r <= hi and lo < true_r < hi
        widths.append(hi - lo)
    assert widths[1] < 0.5 * widths[0]  # ~ 1/sqrt(rows)
    assert within_row_correlation_interval(values, attribute, 2000) == within_row_correlation_interval(values, attribute, 2000)


def test_frechet_distance_and_prdc_known_values():
    from infogan.features import frechet_distance, prdc

    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 4))
    b = rng.normal(size=(2000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, mean shifted by 3 in one dimension: FD = 9 (up to sampling noise).
    assert frechet_distance(a, b + np.array([3.0, 0, 0, 0])) == pytest.approx(9.0, rel=0.05)
    same = prdc(a[:500], b[:500], k=5)
    assert same["precision"] > 0.8 and same["recall"] > 0.8
    far = prdc(a[:500], b[:500] + 10.0, k=5)
    assert far["precision"] == 0.0 and far["recall"] == 0.0 and far["coverage"] == 0.0


def test_random_warp_is_identity_at_zero_and_keeps_background():
    from infogan.augment import random_affine, random_stroke

    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert torch.allclose(random_affine(x, 0, 0, 0), x, atol=1e-5)
    blank = -torch.ones(2, 1, 28, 28)
    assert torch.allclose(random_affine(blank, 25, 0.1, 0.08), blank, atol=1e-5)
    assert torch.equal(random_stroke(blank), blank)


def test_paired_code_information_gap_known_values():
    from infogan.objective.real_info import paired_code_information_gap

    spec = LatentSpec(noise_dim=2, categorical=(4,), continuous=0)
    confident = torch.full((8, 4), -30.0)
    confident[torch.arange(8), torch.arange(8) % 4] = 30.0  # balanced, confident
    assert abs(paired_code_information_gap(spec, confident, confident).item()) < 1e-4
    # Confident, but the warped copy reads the next value: the symmetrised joint keeps ln 2 of ln 4.
    shifted = confident.roll(1, dims=0)
    assert abs(paired_code_information_gap(spec, confident, shifted).item() - math.log(2)) < 1e-4
    # Uninformative predictions: the gap is the whole of H(c) = ln 4.
    flat = torch.zeros(8, 4)
    assert abs(paired_code_information_gap(spec, flat, flat).item() - math.log(4)) < 1e-4


def test_bn_calibrated_reads_a_batch_as_training_mode_would_and_leaves_d_alone():
    """The evaluate stage's Q readings use D's BatchNorm statistics of the images' own kind:
    calibrated on one batch, eval mode reads that batch as training mode (batch statistics)
    does, while D's own running statistics read it differently and stay untouched."""
    from infogan.metrics import bn_calibrated
    from infogan.nets import Discriminator

    torch.manual_seed(0)
    latent = {"noise_dim": 8, "categorical": [10], "continuous": 2}
    d = Discriminator("mnist", latent)
    with torch.no_grad():
        d.train()
        for _ in range(3):  # running statistics of another kind of image
            d(torch.rand(64, 1, 28, 28) * 2 - 1)
        d.eval()
        before = {k: v.clone() for k, v in d.state_dict().items()}
        batch = torch.rand(256, 1, 28, 28) * 0.5 - 1  # darker, narrower range
        as_trained = copy.deepcopy(d).train()(batch)[1]
        calibrated = bn_calibrated(d, [batch])
        assert not calibrated.training
        assert torch.allclose(calibrated(batch)[1], as_trained, atol=1e-2)  # running var is unbiased
        assert (d(batch)[1] - as_trained).abs().max() > 0.1
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())


def test_categorical_scores_on_a_q_whose_answers_are_known():
    """Q reads a permutation of the labels on 90 % of the images and garbage on the rest: the
    Hungarian accuracy is 0.9, the mapping undoes the permutation and the confusions name where
    the garbage went; a Q that reads the label of another image scores about chance."""
    from infogan.metrics import categorical_scores

    spec = LatentSpec(noise_dim=2, categorical=(10,), continuous=0)
    labels = torch.arange(1000) % 10
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    answer = perm[labels].clone()
    answer[:100] = (answer[:100] + 1) % 10
    images = answer.to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 28, 28).contiguous()

    class ReadsThePixel(torch.nn.Module):  # D's interface: (d_logit, q_out)
        def forward(self, x):
            value = ((x[:, 0, 0, 0] + 1) * 127.5).round().long()
            return x.new_zeros(len(x)), torch.nn.functional.one_hot(value, 10).float() * 10

    (score,) = categorical_scores(spec, ReadsThePixel(), images, labels, "cpu", batch_size=128)
    assert score["accuracy"] == pytest.approx(0.9) and score["used_values"] == 10
    assert all(score["mapping"][int(perm[k])] == k for k in range(10))
    # each label's garbage tenth lands on the value next to its own, which stands for another label
    stands_for = {int(perm[k]): k for k in range(10)}
    assert len(score["confusions"]) == 5 and sum(map(sum, score["value_by_label"])) == 1000
    for c in score["confusions"]:
        assert c["images"] == 10 and c["read_as"] == str(stands_for[(int(perm[int(c["label"])]) + 1) % 10])
    shuffled = labels[torch.randperm(1000, generator=torch.Generator().manual_seed(1))]
    (chance,) = categorical_scores(spec, ReadsThePixel(), images, shuffled, "cpu")
    assert chance["accuracy"] < 0.2


def test_paired_code_information_is_one_for_a_warp_proof_q_and_zero_when_the_copy_is_another_image():
    """The label-free figure select ranks on: a Q that reads one pixel confidently, over balanced
    values, keeps its reading under a warp that leaves the pixel alone (fraction near 1); when
    the "copy" is another image, the two readings are independent (near 0)."""
    from infogan.metrics import paired_code_information

    spec = LatentSpec(noise_dim=2, categorical=(10,), continuous=0)
    images = (torch.arange(2000) % 10).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()

    class ReadsThePixel(torch.nn.Module):
        def forward(self, x):
            value = ((x[:, 0, 0, 0] + 1) * 127.5).round().long()
            return x.new_zeros(len(x)), torch.nn.functional.one_hot(value, 10).float() * 20

    def another_image(x):
        return x[torch.randperm(len(x))]

    (kept,) = paired_code_information(spec, ReadsThePixel(), images, lambda x: x.flip(3), "cpu", seed=0)
    (lost,) = paired_code_information(spec, ReadsThePixel(), images, another_image, "cpu", seed=0)
    assert kept["fraction"] == pytest.approx(1.0, abs=1e-3) and kept["nats"] == pytest.approx(2.302585, abs=3e-3)
    assert lost["fraction"] < 0.01


def test_the_resume_check_blocks_what_shapes_the_model_and_nothing_else():
    from infogan.checkpoint import changed_settings
    from infogan.config import InfoGANConfig

    saved = InfoGANConfig().model_dump(mode="json")

    def changed(section, key, value, drop=False):
        current = copy.deepcopy(saved)
        current[section][key] = value
        old = copy.deepcopy(saved)
        if drop:  # a checkpoint older than the key
            del old[section][key]
        return changed_settings(old, current)

    for key, value in (("seed", 3), ("lambda_cat", 0.5), ("lambda_cont", 0.0), ("lr_g", 1e-4), ("batch_size", 64)):
        assert changed("train", key, value) == [f"train.{key}"], key
    assert changed("train", "objective", {"real_info": {"weight": 1.0, "from_epoch": 1, "pairs": False}}) == [
        "train.objective.real_info"]
    assert changed("latent", "noise_dim", 10) == ["latent.noise_dim"]
    for key, value in (("epochs", 9), ("progress_bar", False), ("log_every", 7), ("threads", 1)):
        assert changed("train", key, value) == [], key
    assert changed("evaluate", "n_samples", 500) == [] and changed("tracking", "wandb", {}) == []
    assert changed("train", "amp", True, drop=True) == []  # older than the key, at its default
    assert changed("train", "amp", False, drop=True) == ["train.amp"]


def test_time_to_accuracy_is_the_first_epoch_at_the_target():
    from infogan.evaluate import time_to_accuracy

    history = [{"epoch": 1, "accuracy": 0.81, "images_seen": 100, "elapsed_s": 10.0, "matmul_peak_gflops": 90.0},
               {"epoch": 2, "accuracy": 0.95, "images_seen": 200, "elapsed_s": 21.5, "matmul_peak_gflops": 90.0},
               {"epoch": 3, "accuracy": 0.97, "images_seen": 300, "elapsed_s": 33.0, "matmul_peak_gflops": 90.0}]
    reached = time_to_accuracy(history, 0.95)
    assert (reached["reached"], reached["epoch"], reached["images_seen"], reached["elapsed_s"]) == (True, 2, 200, 21.5)
    assert time_to_accuracy(history, 0.98) == {"target": 0.98, "reached": False}
    assert time_to_accuracy([{"epoch": 1}], 0.5)["reached"] is False  # trained without per-epoch scores


def test_matmul_peak_uses_no_random_state():
    from infogan.machine import matmul_peak_gflops

    before = torch.get_rng_state()
    assert matmul_peak_gflops(n=256, reps=2) > 0
    assert torch.equal(before, torch.get_rng_state())  # training that measures it stays bit-identical


def test_factor_scores_set_a_code_against_kmeans_on_pixels_for_every_factor():
    from infogan.factors import factor_scores, kmeans

    gen = torch.Generator().manual_seed(0)
    shade = torch.arange(120) % 3  # three brightness levels k-means finds; a second factor it cannot see
    images = (shade.view(-1, 1, 1, 1) * 100 + torch.randint(0, 20, (120, 1, 4, 4), generator=gen)).to(torch.uint8)
    hidden = (torch.arange(120) // 3) % 2
    assert normalized_mutual_info(kmeans(images.flatten(1).float(), 3, seed=1), shade.numpy()) == pytest.approx(1.0)
    scores = factor_scores([3, 2], [shade.numpy(), hidden.numpy()], {"shade": shade.numpy(), "hidden": hidden.numpy()},
                           images, seed=0)
    by_code = {row["code"]: row for row in scores["hidden"]}
    assert by_code["cat1"]["accuracy"] == 1.0 and by_code["cat1"]["kmeans_accuracy"] < 0.75
    assert by_code["cat1"]["nmi_margin_interval95"]["lo"] > 0.5  # the code reads what pixels do not
    assert scores["shade"][0]["kmeans_nmi"] == pytest.approx(1.0) and scores["shade"][0]["nmi_margin"] == pytest.approx(0.0)
